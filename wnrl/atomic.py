"""Atomic, durable file writes: the one routine every file wnrl writes goes through
(checkpoints, config.yaml, JSON scores, summaries, figures, videos).

    with atomic_path(path) as tmp:   # fill `tmp` by name (any library)
        np.save(tmp, array)
    write_bytes(path, data); write_text(path, text)

Steps: a temporary file `.<name>.<random>.tmp` in the destination's directory
is written, fsynced, renamed over `path` (atomic on POSIX) and the directory
is fsynced, so the rename itself survives a power cut. A failure at any step
before the rename removes the temporary file and leaves `path` as it was; a
failure of the directory fsync leaves the new file in place and raises.
Readers therefore see the old file or the new one, never half a file.
Streams that grow (TensorBoard events, logs) are appended to, not written here.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()  # what open() would give a new file (mkstemp gives 0o600)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; on a clean exit it replaces `path`
    durably (fsync file, rename, fsync directory); on any exception it is removed.
    `keep_suffix`: the temporary name ends in `path`'s suffix too (`.tmp.mp4`), for
    writers that choose the format by the file name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".tmp" + (path.suffix if keep_suffix else "")
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, _MODE)
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_bytes(path: str | os.PathLike, data: bytes | bytearray | memoryview) -> int:
    """Atomically and durably write `data` to `path`; returns the number of bytes."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return len(data)


def write_text(path: str | os.PathLike, text: str) -> int:
    """Atomically and durably write `text` (UTF-8) to `path`; returns the number of bytes."""
    return write_bytes(path, text.encode("utf-8"))
