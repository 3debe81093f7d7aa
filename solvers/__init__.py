"""Simulator adapters shipped with sciml-zoo.

Each module wraps one simulator and imports it lazily, so importing this
package never requires PhiFlow, py-pde or a compiler.
"""
