"""A package attribute that is both an API function and the submodule of the same name.

``sciml_zoo.train``, ``.evaluate`` and ``.compare`` are submodules, and
``sz.train(...)``, ``sz.evaluate(...)``, ``sz.compare(...)`` are the Python API
(:mod:`sciml_zoo.api`). Python sets a submodule as its package's attribute on
its first import, which would replace the function; :class:`CallableModule`
stands in for both.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable
from typing import Any

__all__ = ["CallableModule"]


class CallableModule(types.ModuleType):
    """``sz.train``, ``sz.evaluate``, ``sz.compare``: the API function, and the submodule of that name.

    The package has submodules ``sciml_zoo.train``, ``.evaluate`` and ``.compare``;
    Python sets a submodule as its package's attribute on first import, which
    would replace the function. This stand-in is both: calling it calls the
    function; any other attribute (read, set, deleted) is the real submodule's,
    imported on first use, so ``import sciml_zoo.train.loop as loop`` and
    ``monkeypatch.setattr("sciml_zoo.compare.X", ...)`` keep working.
    """

    def __init__(self, name: str, func: Callable[..., Any]) -> None:
        super().__init__(name, func.__doc__)
        for attr in ("__package__", "__loader__", "__spec__"):  # the real submodule's, through __getattr__
            del self.__dict__[attr]
        self.__dict__["__wrapped__"] = func  # inspect.signature(sz.train) is the function's
        self.__dict__["_func"] = func

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__dict__["_func"](*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self.__name__), attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        setattr(importlib.import_module(self.__name__), attr, value)

    def __delattr__(self, attr: str) -> None:
        delattr(importlib.import_module(self.__name__), attr)

    def __repr__(self) -> str:
        return f"<sciml_zoo API function {self.__name__.rpartition('.')[2]}() and module {self.__name__!r}>"
