"""Correction networks (``torch.nn.Module``), kept apart from solvers."""

from sciml_zoo.nn.networks import (
    ACTIVATIONS,
    ARCHS,
    PADDING_MODES,
    CorrectionNet,
    Normalization,
    ResidualBlock,
    build_body,
    sol_cnn,
    sol_resnet,
)

__all__ = [
    "ACTIVATIONS",
    "ARCHS",
    "PADDING_MODES",
    "CorrectionNet",
    "Normalization",
    "ResidualBlock",
    "build_body",
    "sol_cnn",
    "sol_resnet",
]
