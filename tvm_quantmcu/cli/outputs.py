"""Outputs of the commands appear whole or not at all: each is written to a temporary sibling
and moved into place only when the command succeeded, so no error or interrupt leaves a
half-written --out behind (an earlier output stays as it was)."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from . import UserError

# a directory a deploy may replace: empty, or one a deploy wrote
_OURS = ("project/project.json", "app/project.json", "model/model.json", "memory.md")


def _parent(path: Path, option: str) -> Path:
    parent = path.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"{option} {path}: a part of its parent path is a file; choose a path "
                        "inside a directory") from None
    except OSError as e:
        raise UserError(f"{option} {path}: cannot create its parent directory "
                        f"({e.strerror}); choose a writable place") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: {parent} is not writable; choose a writable place")
    return parent


def check_dir(out, option: str = "--out") -> Path:
    """Refuse, before any work, a directory output that cannot be written or replaced."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{option} {out} is a file; give a directory")
    if out.is_dir() and any(out.iterdir()) and not any((out / m).exists() for m in _OURS):
        raise UserError(f"{option} {out} exists and holds other files; give a new or empty "
                        "directory (or one an earlier deploy wrote)")
    _parent(out, option)
    return out


@contextmanager
def atomic_dir(out, option: str = "--out"):
    """Yields a fresh temporary directory next to `out`; when the block succeeds it replaces
    `out`, when it fails (or is interrupted) it is removed and `out` is left untouched."""
    out = check_dir(out, option)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial",
                                dir=out.resolve().parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = tmp.with_suffix(".old")
        os.rename(out, old)
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_file(path, option: str):
    """Yields a temporary file path next to `path`, moved onto `path` when the block
    succeeds and removed when it fails."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path} is a directory; give a file name")
    parent = _parent(path, option)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial" + path.suffix,
                               dir=parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def relocate(value, old: Path, new: Path):
    """`value` (a result dict) with paths under `old` pointing under `new` instead."""
    if isinstance(value, str):
        return value.replace(str(old), str(new))
    if isinstance(value, dict):
        return {k: relocate(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [relocate(v, old, new) for v in value]
    return value
