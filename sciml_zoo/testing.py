"""Public test helpers: check that a solver adapter keeps the protocol's promises.

:func:`check_adapter` runs one adapter through every promise the library
relies on (shapes, dtypes, determinism, batch consistency, the black-box
guarantee, declared capabilities, conversions, data-generation hooks) and
reports each broken promise in plain words. Use it in your adapter's tests::

    from sciml_zoo.testing import check_adapter
    check_adapter(make_my_solver(resolution=(32, 32)))  # raises SolverError on failure
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from sciml_zoo.errors import SolverError
from sciml_zoo.solver import MAX_SPATIAL_DIMS, Capabilities, Solver, black_box, check_state

__all__ = ["AdapterReport", "check_adapter"]


@dataclass
class AdapterReport:
    """Outcome of :func:`check_adapter`: one line per check, passed or failed."""

    solver_name: str
    passed: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def expect(self, label: str, condition: bool, problem: str) -> None:
        """Record ``label`` as passed if ``condition`` holds, else ``label: problem``."""
        if condition:
            self.passed.append(label)
        else:
            self.failures.append(f"{label}: {problem}")

    @property
    def ok(self) -> bool:
        """True if no check failed."""
        return not self.failures

    def __str__(self) -> str:
        head = f"check_adapter({self.solver_name!r}): {len(self.passed)} passed, {len(self.failures)} failed"
        return "\n".join([head, *(f"  FAIL {m}" for m in self.failures), *(f"  ok   {m}" for m in self.passed)])


def _max_diff(a: Tensor, b: Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


def check_adapter(
    solver: Solver,
    *,
    params: Tensor | None = None,
    raise_on_failure: bool = True,
    seed: int = 0,
) -> AdapterReport:
    """Check that ``solver`` honours the adapter protocol.

    Args:
        solver: the adapter under test.
        params: ``(B, P)`` physical parameters valid for this solver, ``B >= 1``;
            a batch of two is used (the first row repeated if ``B == 1``).
            Defaults to rows of ones and of halves.
        raise_on_failure: raise :class:`SolverError` listing every failure.
        seed: seed of the test state (when the adapter has no ``initial_state``).

    Returns:
        An :class:`AdapterReport`; ``report.ok`` is ``True`` if every check passed.
    """
    name = str(getattr(solver, "name", type(solver).__name__))
    report = AdapterReport(name)

    def check(label: str, fn: Callable[[], str | None]) -> Any:
        """Run one check; a returned string or an exception is a failure."""
        try:
            problem = fn()
        except NotImplementedError:
            report.passed.append(f"{label}: not implemented (optional)")
            return
        except Exception as exc:  # noqa: BLE001 - every failure is reported, not raised
            problem = f"raised {type(exc).__name__}: {exc}"
        if problem:
            report.failures.append(f"{label}: {problem}")
        else:
            report.passed.append(label)

    # -- protocol attributes -----------------------------------------------------------
    shape = tuple(getattr(solver, "state_shape", ()))
    caps = getattr(solver, "capabilities", None)
    names = getattr(solver, "param_names", None)
    bad_attrs = []
    if not 2 <= len(shape) <= MAX_SPATIAL_DIMS + 1 or not all(isinstance(n, int) and n > 0 for n in shape):
        bad_attrs.append(
            f"state_shape must be a (C, *spatial) tuple of positive ints with 1 to {MAX_SPATIAL_DIMS} "
            f"spatial sizes, got {shape!r}"
        )
    if not isinstance(caps, Capabilities):
        bad_attrs.append(f"capabilities must be a sciml_zoo.solver.Capabilities, got {caps!r}")
    if not isinstance(names, tuple) or not all(isinstance(n, str) for n in names):
        bad_attrs.append(f"param_names must be a tuple of str, got {names!r}")
    if bad_attrs:
        report.failures.extend(f"protocol attributes: {m}" for m in bad_attrs)
        return _finish(report, raise_on_failure)
    report.passed.append("protocol attributes (name, state_shape, capabilities, param_names)")
    assert isinstance(caps, Capabilities) and isinstance(names, tuple)

    if params is None:
        params = torch.stack([torch.ones(len(names)), torch.full((len(names),), 0.5)])
    params = params.float()
    if len(params) == 1:
        params = params.repeat(2, 1)
    params = params[:2]
    if params.shape != (2, len(names)):
        raise ValueError(f"params must have shape (B, {len(names)}) for param_names {names}, got {tuple(params.shape)}")

    # -- a test state: initial_state() when available ----------------------------------
    state: Tensor | None = None
    init = getattr(solver, "initial_state", None)
    if callable(init):

        def _init() -> str | None:
            nonlocal state
            a, b = init(params, seed=seed), init(params, seed=seed)
            check_state(a, shape, who=f"{name}.initial_state", batch=2)
            state = a
            if not torch.equal(a, b):
                return "two calls with the same seed differ; draw from a generator seeded by `seed`"
            return None

        check("initial_state: shape (B,C,*spatial), finite, reproducible from the seed", _init)
    if state is None:
        gen = torch.Generator().manual_seed(seed)
        state = 0.1 * torch.randn((2, *shape), generator=gen)
    x: Tensor = state.float()

    # -- step outputs ---------------------------------------------------------------
    with torch.no_grad():
        try:
            x_before = x.clone()
            out = solver.step(x, params)
            check_state(out, shape, who=f"{name}.step", batch=2, dtype=x.dtype)
        except Exception as exc:  # noqa: BLE001
            report.failures.append(f"step: raised {type(exc).__name__}: {exc}")
            return _finish(report, raise_on_failure)
        report.passed.append("step: returns a finite (B,C,*spatial) float tensor")
        out_kept = out.clone()

        report.expect(
            "step: keeps the input dtype",
            out.dtype == x.dtype,
            f"input {x.dtype} came back as {out.dtype}; cast back with .to(state.dtype)",
        )
        report.expect(
            "step: leaves its input unchanged",
            torch.equal(x, x_before),
            f"the input state was modified in place (max change {_max_diff(x, x_before):.3g});"
            " work on a copy (state.clone()), black_box() callers share that memory",
        )

        def _determinism() -> str | None:
            again = solver.step(x, params)
            if torch.equal(again, out):
                return None
            return (
                f"two calls with the same input differ by up to {_max_diff(again, out):.3g}; "
                "fix the solver's random seed / remove hidden state carried between calls"
            )

        check("step: deterministic (same input twice gives the same output)", _determinism)
        report.expect(
            "step: returns a fresh tensor, not an internal buffer reused later",
            torch.equal(out, out_kept),
            "the output of an earlier call changed after a later call; return a copy",
        )

        def _batch() -> str | None:
            single = torch.cat([solver.step(x[i : i + 1], params[i : i + 1]) for i in range(2)])
            if torch.allclose(single, out, rtol=1e-5, atol=1e-6):
                return None
            return (
                f"a batch of two differs from two single calls by up to "
                f"{_max_diff(single, out):.3g}; batch members must not interact "
                "(no batch statistics, per-sample parameters)"
            )

        check("step: batch-consistent (a batch of two equals two single calls)", _batch)

    # -- black-box guarantee and declared capabilities --------------------------------
    def _black_box() -> str | None:
        leaf = x.clone().requires_grad_(True)
        upstream = leaf * 1.0
        y = black_box(solver)(upstream, params)
        if y.requires_grad or y.grad_fn is not None:
            return "black_box(solver) output carries an autograd graph"
        if not torch.equal(upstream.detach(), x):
            return "the solver modified the caller's tensor in place through black_box()"
        return None

    check("black_box: no gradient reaches upstream tensors, output has no grad_fn", _black_box)

    def _capabilities() -> str | None:
        leaf = x.clone().requires_grad_(True)
        y = solver.step(leaf, params)
        has_graph = isinstance(y, Tensor) and y.grad_fn is not None
        if not caps.differentiable:
            if has_graph:
                return (
                    "step output has a grad_fn although capabilities say differentiable=False "
                    "(a gradient leaks through the 'black box'); detach inside step or "
                    "declare differentiable=True"
                )
            return None
        if not has_graph:
            return (
                "capabilities say differentiable=True but step output has no grad_fn "
                "(the graph is cut, e.g. by .numpy() or .detach()); declare "
                "differentiable=False or keep the computation in torch"
            )
        (grad,) = torch.autograd.grad(y.pow(2).sum(), leaf, allow_unused=True)
        if grad is None or not bool(torch.isfinite(grad).all()) or float(grad.abs().sum()) == 0:
            return "declared differentiable, but the gradient w.r.t. the state is missing/zero/NaN"
        return None

    check(f"capabilities: differentiable={caps.differentiable} is honest", _capabilities)

    # -- conversions and data-generation hooks ------------------------------------------
    def _round_trip() -> str | None:
        back = solver.from_native(solver.to_native(x, params))  # type: ignore[attr-defined]
        same = isinstance(back, Tensor) and torch.equal(back.to(x.dtype), x)
        return None if same else "from_native(to_native(x)) does not give back x exactly"

    spatial = shape[1:]
    resolution = _resolution(solver, spatial)
    cell_centred = resolution == tuple(reversed(spatial))

    def _restrict() -> str | None:
        same = solver.restrict(x, resolution)  # type: ignore[attr-defined]
        if tuple(same.shape) != tuple(x.shape):
            return f"restrict(state, {resolution}) (its own resolution) gave {tuple(same.shape)}, want {tuple(x.shape)}"
        if all(n % 2 == 0 for n in resolution):
            half = tuple(n // 2 for n in resolution)
            small = solver.restrict(x, half)  # type: ignore[attr-defined]
            if cell_centred:
                want = (2, shape[0], *(n // 2 for n in spatial))
                if tuple(small.shape) != want:
                    return f"restrict(state, {half}) gave {tuple(small.shape)}, want {want}"
            elif tuple(small.shape[:2]) != (2, shape[0]) or small.dim() != x.dim() or small.numel() >= x.numel():
                return f"restrict(state, {half}) gave {tuple(small.shape)}, want a smaller (2, {shape[0]}, ...) state"
        return None

    def _mask() -> str | None:
        m = solver.valid_mask  # type: ignore[attr-defined]
        if m.dtype != torch.bool or tuple(m.shape) != shape:
            return f"must be a bool tensor of shape {shape}, got {m.dtype} {tuple(m.shape)}"
        return None

    if hasattr(solver, "to_native") and hasattr(solver, "from_native"):
        check("round trip: from_native(to_native(x)) == x", _round_trip)
    if hasattr(solver, "restrict"):
        check("restrict(state, resolution): shapes at the own and at half the resolution", _restrict)
    if hasattr(solver, "valid_mask"):
        check("valid_mask: bool (C,*spatial)", _mask)
    if hasattr(solver, "describe"):
        describe = solver.describe  # type: ignore[attr-defined]
        check("describe(): JSON-serialisable", lambda: json.dumps(describe()) and None)
    return _finish(report, raise_on_failure)


def _resolution(solver: Any, spatial: tuple[int, ...]) -> tuple[int, ...]:
    """The solver's own resolution ``(nx, ...)``: its ``resolution`` attribute, else the
    ``"resolution"`` of ``describe()``, else the cell-centred guess (the spatial sizes reversed)."""
    res = getattr(solver, "resolution", None)
    if res is None and callable(getattr(solver, "describe", None)):
        try:
            res = solver.describe().get("resolution")
        except Exception:  # noqa: BLE001 - describe() is checked on its own
            res = None
    if isinstance(res, (list, tuple)) and len(res) == len(spatial) and all(isinstance(n, int) for n in res):
        return tuple(res)
    return tuple(reversed(spatial))


def _finish(report: AdapterReport, raise_on_failure: bool) -> AdapterReport:
    if raise_on_failure and not report.ok:
        raise SolverError(str(report))
    return report
