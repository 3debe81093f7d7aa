"""Compatibility re-export: the config dataclasses live in :mod:`sciml_zoo.config`."""

from __future__ import annotations

from sciml_zoo.config import EXECUTORS, METHODS, ModelConfig, RunConfig, TrainConfig, curriculum_stages

__all__ = ["ModelConfig", "TrainConfig", "RunConfig", "METHODS", "EXECUTORS", "curriculum_stages"]
