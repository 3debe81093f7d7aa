"""Correction networks (``torch.nn.Module``), kept apart from solvers."""

from sciml_zoo.nn.networks import (
    CorrectionNet,
    Normalization,
    ResidualBlock,
    build_body,
    sol_cnn,
    sol_resnet,
)

__all__ = ["CorrectionNet", "Normalization", "ResidualBlock", "build_body", "sol_cnn", "sol_resnet"]
