"""Paths from names: the one way a name read from a file or flag becomes a path.

A preset's method key becomes ``out/runs/<key>``, a recipe's ``name`` becomes
``data/<name>.h5`` and ``out/data/<name>.h5``, a preset's file name becomes
``results/<name>``. Such a name comes from a file someone else may have written,
so it must not be able to point anywhere else: :func:`check_name` accepts only a
plain file name (letters, digits, ``_``, ``-``, ``.``, ``+``; not starting with
``.`` or ``-``), and :func:`safe_child` joins it to its root and makes sure the
result, symlinks resolved, is still inside that root.

The tool writes :data:`MARKER` into every directory it creates
(:func:`make_tool_dir`); ``--force`` deletes a directory only if the marker is
there (:func:`remove_tool_dir`), so it never deletes a folder it did not make.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sciml_zoo.errors import ConfigError

__all__ = [
    "MARKER",
    "check_name",
    "safe_child",
    "next_to",
    "make_tool_dir",
    "is_tool_dir",
    "remove_tool_dir",
    "file_lock",
]

MARKER = ".sciml-zoo-dir"
"""Written into each directory the tool creates; ``--force`` deletes only directories holding it."""

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")


def check_name(name: object, *, what: str) -> str:
    """Return ``name`` if it is a plain file name, else raise :class:`ConfigError`.

    Args:
        name: the name as read (any type: a TOML value may be an int).
        what: the key it came from, for the message, e.g. ``"method key in [methods]"``.

    Raises:
        ConfigError: one line naming the value, ``what`` and the fix, for a
            non-string, empty, absolute, ``..``-holding or separator-holding
            name, or one with characters outside ``[A-Za-z0-9_.+-]``.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        why = (
            "an absolute path"
            if isinstance(name, str) and (name.startswith(("/", "\\", "~")) or re.match(r"[A-Za-z]:", name))
            else "a path"
            if isinstance(name, str) and ("/" in name or "\\" in name or ".." in name)
            else "empty"
            if name == ""
            else "not a plain name"
        )
        raise ConfigError(
            f"{what} {name!r} is {why}: it becomes a file or folder name, so use 1-128 letters, digits, "
            "'_', '-', '.' or '+' (not starting with '.' or '-'), e.g. 'zo-sol'"
        )
    return name


def safe_child(root: str | Path, name: object, *, what: str, suffix: str = "") -> Path:
    """``root / (name + suffix)``, refused unless it stays inside ``root``.

    ``name`` must pass :func:`check_name`; the joined path, with symlinks
    resolved (of ``root``, of the child if it exists), must lie inside the
    resolved ``root``: a planted ``out/runs/fo-sol -> /home/you`` is refused.

    Raises:
        ConfigError: one line naming the value, ``what`` and the fix.
    """
    check_name(name, what=what)
    root = Path(root)
    child = root / f"{name}{suffix}"
    real_root = root.resolve()
    real = child.resolve()
    if child.is_symlink() or real.parent != real_root:
        raise ConfigError(
            f"{what} {name!r}: {str(child)!r} is a symbolic link or leads outside {str(root)!r}; "
            "remove it, or choose another --out"
        )
    return child


def next_to(naming_file: str | Path, name: str, *, what: str) -> Path:
    """The path a file names: relative to that file's folder (absolute and ``~`` paths as given).

    One rule for every path read from a file (a preset's ``dataset``, a recipe's
    ``script.py:factory``): it does not depend on where the command runs. The
    named path may not be a symbolic link, so a file cannot reach elsewhere
    through a link planted beside it.

    Raises:
        ConfigError: the named path is a symbolic link.
    """
    path = Path(name).expanduser()
    path = path if path.is_absolute() else Path(naming_file).parent / path
    if path.is_symlink():
        raise ConfigError(
            f"{what} {name!r} in {str(naming_file)!r}: {str(path)!r} is a symbolic link; name the file it points to"
        )
    return path


def make_tool_dir(path: str | Path) -> Path:
    """Create directory ``path`` (and its parents) and mark it as the tool's own.

    The marker is written only when this call creates ``path``: a folder that
    already existed stays unmarked, so ``--force`` never deletes it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir()
    except FileExistsError:
        return path
    fd = os.open(path / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, b"created by sciml-zoo; --force may delete this folder\n")
    finally:
        os.close(fd)
    return path


def is_tool_dir(path: str | Path) -> bool:
    """Whether ``path`` is a real directory (not a symlink) holding the tool's marker."""
    path = Path(path)
    marker = path / MARKER
    return not path.is_symlink() and path.is_dir() and marker.is_file() and not marker.is_symlink()


def remove_tool_dir(path: str | Path, *, flag: str = "--force") -> None:
    """Delete ``path`` if the tool created it (:data:`MARKER`), else raise :class:`ConfigError`."""
    path = Path(path)
    if not is_tool_dir(path):
        raise ConfigError(
            f"{flag} refuses to delete {str(path)!r}: sciml-zoo did not create it (no {MARKER} marker); "
            "delete or move it yourself, or choose another --out"
        )
    shutil.rmtree(path)


@contextmanager
def file_lock(lock: str | Path, *, what: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on file ``lock`` while writing ``what``; a second writer gets one line.

    The kernel releases an ``flock`` when the process dies, even by ``kill -9``,
    so a crash never leaves ``what`` locked. The holder's PID is written into
    ``lock`` for the message. A ``lock`` that is a symbolic link (or not a
    regular file) is refused, never written through.

    Args:
        lock: the lock file (created if missing; its parent must exist).
        what: what the lock guards, for messages, e.g. ``"run directory 'runs/a'"``.

    Raises:
        ConfigError: ``lock`` is a symlink or not a regular file, cannot be
            created, or another process holds it.
    """
    lock = Path(lock)
    try:
        # O_NOFOLLOW: a planted symlink .lock -> ~/important must not get the PID written through it
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP or lock.is_symlink():
            raise ConfigError(
                f"{str(lock)!r} is a symbolic link; refusing to write through it: delete it, or choose another --out"
            ) from None
        raise ConfigError(f"cannot write {what} ({exc.strerror}); choose another --out") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"{str(lock)!r} is not a regular file; delete it, or choose another --out")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise ConfigError(
                f"{what} is being written by another process (pid {owner}); "
                "wait for it to finish or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock
