"""One method of a preset as a training run: ``sciml-zoo train --preset NAME --method KEY``.

A preset holds everything a run needs (the recipe, ``[model]``, ``[train]`` and
the method's own table); this turns one of its methods into a
:class:`~sciml_zoo.config.RunConfig` without copying tables into a new file. The
dataset is the one ``sciml-zoo generate`` writes (``data/<name>.h5``), reused
when its hash is the recipe's and (re)generated there otherwise, exactly as
``generate`` would.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sciml_zoo.config import RunConfig
from sciml_zoo.config_io import parse_override
from sciml_zoo.data.cache import dataset_for
from sciml_zoo.errors import ConfigError
from sciml_zoo.experiment import load_experiment

__all__ = ["preset_run_config"]


def _preset_overrides(key: str, overrides: Sequence[str]) -> tuple[list[str], str | None]:
    """Run-config overrides (``train.X=V``, ``model.X=V``, ``data=PATH``) as preset overrides, and ``data``."""
    out, data = [], None
    for text in overrides:
        keys, value = parse_override(text)
        raw = text.split("=", 1)[1]
        if keys == ["data"]:
            data = str(value)
        elif keys[0] == "train" and len(keys) > 1:  # into the method's own table, which wins over [train]
            out.append(f"methods.{key}.{'.'.join(keys[1:])}={raw}")
        elif keys[0] == "model" and len(keys) > 1:
            out.append(text)
        else:
            raise ConfigError(
                f"override {text!r}: with --preset, set train.KEY=VALUE, model.KEY=VALUE or data=PATH "
                "(the preset gives the rest)"
            )
    return out, data


def preset_run_config(
    preset: str,
    method: str | None,
    overrides: Sequence[str] = (),
    *,
    seed: int | None = None,
    data: str | Path | None = None,
    data_dir: str | Path = "data",
    progress: bool = True,
) -> RunConfig:
    """The run config of method ``method`` (a key of the preset's ``[methods]``) of ``preset``.

    Args:
        preset: a preset name (``ks_tiny``) or a preset ``.toml`` path.
        method: the method key, e.g. ``"zo-sol"`` or ``"zo-sol-identity"``.
        overrides: ``train.KEY=VALUE`` (applied to this method, over its own
            table), ``model.KEY=VALUE`` or ``data=PATH`` strings.
        seed: the training seed (default: the preset's).
        data: a dataset file to use instead of the preset's recipe.
        data_dir: where the preset's dataset is cached (``generate``'s default).
        progress: show generation's progress bar.

    Raises:
        ConfigError: no or an unknown method key, or an override the preset cannot take.
    """
    keys = sorted(load_experiment(preset).methods)  # a bad preset is refused here with its own message
    if not method:
        raise ConfigError(f"--preset needs --method KEY, one of this preset's methods: {', '.join(keys)}")
    if method not in keys:
        raise ConfigError(f"unknown method {method!r}; preset {preset!r} has {', '.join(keys)}")
    translated, data_override = _preset_overrides(method, overrides)
    if seed is not None:
        translated.append(f"methods.{method}.seed={int(seed)}")
    exp = load_experiment(preset, overrides=translated, only=[method])
    data = data_override or data
    if data is None:
        path, _ = dataset_for(exp.recipe, data_dir, shared_dir=data_dir, progress=progress)
        data = path
    return RunConfig(str(data), exp.model, exp.methods[method])
