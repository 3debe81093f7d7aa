"""Malformed dataset files (issue 21 finding 9): one line naming the problem and exit 2, never a traceback
or a solver fault count."""

from __future__ import annotations

import json
import re
import shutil

import h5py
import numpy as np
import pytest

from sciml_zoo.cli import main
from sciml_zoo.registry import _RUNTIME, register
from sciml_zoo_solvers.toy_diffusion import ToyDiffusion


def _int_recipe(f: h5py.File) -> None:
    f.attrs["recipe"] = 5


def _json_int_recipe(f: h5py.File) -> None:
    f.attrs["recipe"] = "5"


def _recipe_bad_field(f: h5py.File) -> None:
    f.attrs["recipe"] = json.dumps({**json.loads(f.attrs["recipe"]), "num_frames": "many"})


def _mask_size(f: h5py.File) -> None:
    del f["valid_mask"]
    f["valid_mask"] = np.ones((1, 4, 4), dtype=bool)


def _no_spatial_axis(f: h5py.File) -> None:
    state = f["state"][...]
    del f["state"]
    f["state"] = state[:, :, 0, 0]


def _params_rows(f: h5py.File) -> None:
    params = f["params"][...]
    del f["params"]
    f["params"] = params[:2]


@pytest.mark.parametrize(
    ("corrupt", "match"),
    [
        (_int_recipe, r"'recipe' attribute holds int64 .*not JSON text"),
        (_json_int_recipe, r"'recipe' attribute '5' is not a JSON table"),
        (_recipe_bad_field, r"corrupt 'recipe' attribute: invalid value in recipe"),
        (_mask_size, r"valid_mask has shape \(1, 4, 4\), but a state frame has shape \(1, 8, 8\)"),
        (_no_spatial_axis, r"state has shape \(5, 30, 8\)"),
        (_params_rows, r"params have shape \(2, 1\), not \(5 simulations"),
    ],
)
def test_a_malformed_file_is_one_line_and_exit_2(tmp_path, toy_dataset, capsys, corrupt, match):
    path = tmp_path / "bad.h5"
    shutil.copy(toy_dataset, path)
    with h5py.File(path, "r+") as f:
        corrupt(f)
    for argv in (
        ["train", "--data", str(path), "--out", str(tmp_path / "run"), "--quiet", "--set", "train.iterations=1"],
        ["evaluate", "--data", str(path)],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert "is malformed" in err or "corrupt" in err
        assert re.search(match, err), err


class _TwoChannels(ToyDiffusion):
    """The toy solver claiming two channels: a 2-channel adapter put on 1-channel data."""

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (2, *super().state_shape[1:])


def test_a_solver_of_another_state_shape_is_refused_before_any_query(tmp_path, toy_dataset, capsys):
    register("two-channel-toy", lambda **kw: _TwoChannels(**kw))
    try:
        code = main(
            ["train", "--data", str(toy_dataset), "--out", str(tmp_path / "run"), "--quiet"]
            + ["--solver", "two-channel-toy", "--set", "train.method=non", "--set", "train.iterations=2"]
        )
    finally:
        _RUNTIME.pop("two-channel-toy")
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "has states of shape (2, 8, 8)" in err and "frames of shape (1, 8, 8)" in err
    assert not (tmp_path / "run" / "summary.json").exists()
