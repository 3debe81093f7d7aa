"""Which dataset file a comparison uses: one cache with ``generate``, checked by hash.

``sciml-zoo generate`` writes ``data/<name>.h5`` by default. A comparison uses
that file when its ``hash`` is the recipe's
:func:`~sciml_zoo.data.generate.dataset_key` (same recipe, solver and adapter
code), so the data is not generated again for every output folder; otherwise it
uses its own ``<out>/data/<name>.h5``, generated, or regenerated when stale. A
shared file that does not match is never overwritten by a comparison: other
results may have been made from it.
"""

from __future__ import annotations

from pathlib import Path

from sciml_zoo.data.generate import dataset_key, generate_dataset, stored_key
from sciml_zoo.data.loading import Dataset, load_dataset
from sciml_zoo.data.recipe import DatasetRecipe
from sciml_zoo.errors import DataError
from sciml_zoo.paths import safe_child

__all__ = ["dataset_for"]


def dataset_for(
    recipe: DatasetRecipe, own_dir: str | Path, *, shared_dir: str | Path | None = "data", progress: bool = True
) -> tuple[Path, Dataset]:
    """The dataset of ``recipe``, made by exactly this recipe and adapter code (its hash is checked).

    Args:
        recipe: the recipe.
        own_dir: the caller's own data folder (e.g. ``<out>/data``), used when
            ``shared_dir`` holds no matching file.
        shared_dir: where ``sciml-zoo generate`` writes (relative to the working
            directory), or ``None`` to use ``own_dir`` only.
        progress: show generation's progress bar.

    Returns:
        The file used and the loaded dataset.

    Raises:
        DataError: the file changed to another hash while it was being loaded.
    """
    key = dataset_key(recipe)
    if shared_dir is not None:
        shared = safe_child(shared_dir, recipe.name, what="recipe name", suffix=".h5")
        if stored_key(shared) == key:
            data = load_dataset(shared)
            if data.hash == key:  # not replaced in between
                return shared, data
    path = safe_child(own_dir, recipe.name, what="recipe name", suffix=".h5")
    path = generate_dataset(recipe, path, progress=progress)  # regenerates a stale file
    data = load_dataset(path)
    if data.hash != key:
        raise DataError(
            f"dataset {str(path)!r} has hash {data.hash}, not its recipe's {key}: it changed while it was "
            "being used; rerun"
        )
    return path, data
