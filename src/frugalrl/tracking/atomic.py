"""Atomic writes: a reader, or a run resumed after a kill, sees the old content or the new, never half.

Files are written to a temporary sibling and renamed over the target (`os.replace` is atomic on POSIX and
Windows). Directories (checkpoints) are built in a temporary sibling `.NAME.tmp`, marked committed, and
renamed into place; only a directory holding the commit marker counts as complete (`is_committed`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

COMMIT_MARKER = ".committed"
"""Empty file written into a directory by `atomic_directory` just before it is renamed into place."""


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write `data` to `path` atomically (temporary sibling, fsync, rename), creating parent directories."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of our own rather than tempfile.mkstemp: mkstemp creates mode 0600, which the rename would give
    # to the final file; open(..., "xb") honours the umask like an ordinary write.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path | str, text: str, *, encoding: str = "utf-8") -> None:
    """Write `text` to `path` atomically; see `atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode(encoding))


def temp_sibling(final_path: Path | str) -> Path:
    """The temporary directory `atomic_directory` builds `final_path` in: `.NAME.tmp` beside it."""
    final = Path(final_path)
    return final.with_name(f".{final.name}.tmp")


def is_committed(path: Path | str) -> bool:
    """True if `path` is a directory that `atomic_directory` committed (it holds the commit marker)."""
    path = Path(path)
    return path.is_dir() and (path / COMMIT_MARKER).is_file()


@contextlib.contextmanager
def atomic_directory(final_path: Path | str, *, durable: bool = True) -> Iterator[Path]:
    """Build a directory in a temporary sibling and rename it to `final_path` if the block succeeds.

    Usage::

        with atomic_directory(run.checkpoint_dir(step)) as tmp:
            save_file(weights, tmp / "model.safetensors")
            ...

    On success the commit marker is written, the tree is fsynced (`durable=True`; skip it only for
    throwaway data) and the directory is renamed into place, replacing an existing `final_path`. On an
    exception the temporary directory is removed and the exception propagates. A temporary directory left
    by a killed process under the same name is removed first.
    """
    final = Path(final_path)
    tmp = temp_sibling(final)
    if tmp.exists():
        _remove(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        (tmp / COMMIT_MARKER).touch()
        if durable:
            _fsync_tree(tmp)
        _replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if durable:
        _fsync_dir(final.parent)


def _replace_dir(src: Path, dst: Path) -> None:
    # os.replace cannot rename over a non-empty directory, so an existing one is moved aside first. A kill
    # between the two renames leaves no `dst` (only `.NAME.old`): the run resumes from the previous
    # checkpoint, which loses at most this step, as promised.
    if not dst.exists():
        os.replace(src, dst)
        return
    old = dst.with_name(f".{dst.name}.old")
    if old.exists():
        _remove(old)
    os.replace(dst, old)
    os.replace(src, dst)
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    # Makes a rename or a new entry durable across power loss. Not supported on every platform or file
    # system (Windows cannot open a directory); the rename itself is already atomic there.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
