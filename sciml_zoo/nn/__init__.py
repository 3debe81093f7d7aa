"""Correction networks (``torch.nn.Module``), kept apart from solvers."""

from sciml_zoo.nn.emulator import StepEmulator
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
    "StepEmulator",
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
