"""Atomic checkpoint writing and safe loading.

File format: a `torch.save` file holding
`{"format": "wnrl-checkpoint", "version": 1, "sha256": <hex>, "payload": uint8[n]}`
where `payload` is the bytes of a second `torch.save` of the real contents
(networks, optimizer, counters, RNG states, config, optionally the replay).
Both levels load with `torch.load(weights_only=True)`: a file crafted to run
code on unpickling is refused before anything runs. The checksum catches
truncated or bit-flipped files that the zip container alone might let through.

Writes go through `wnrl.atomic` (temporary file in the same directory,
fsync, rename, directory fsync): a crash at any moment leaves either the old
checkpoint set or the new one, never a partial file under a checkpoint name.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wnrl import atomic

FORMAT = "wnrl-checkpoint"
VERSION = 1
_NAME = re.compile(r"^ckpt_(\d{12})\.pt$")
UNREADABLE_SUFFIX = ".unreadable"  # a checkpoint pruning found unreadable, set aside
SkipHandler = Callable[[Path, str], None]  # (checkpoint skipped, one-line reason)


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, foreign or incompatible (one-line message)."""


def checkpoint_name(step: int) -> str:
    return f"ckpt_{step:012d}.pt"


def _encode(obj: Any) -> Any:
    """NumPy arrays and scalars to tensors / Python numbers (weights_only loads no NumPy)."""
    if isinstance(obj, np.ndarray):  # a read-only array (from Ray's object store) is copied
        arr = np.ascontiguousarray(obj)
        return {"__ndarray__": torch.from_numpy(arr if arr.flags.writeable else arr.copy())}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_encode(v) for v in obj)
    return obj


def _decode(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__ndarray__"}:
            return obj["__ndarray__"].numpy()
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_decode(v) for v in obj)
    return obj


def _serialize(payload: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def save(path: str | os.PathLike, payload: dict[str, Any]) -> int:
    """Atomically write `payload` (tensors, numpy-free containers, scalars) to `path`.

    Returns the number of bytes written. Checks free disk space first and
    raises CheckpointError (leaving every existing file untouched) if it is short.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inner = _serialize(_encode(payload))
    outer = {
        "format": FORMAT,
        "version": VERSION,
        "sha256": hashlib.sha256(inner).hexdigest(),
        "payload": torch.frombuffer(bytearray(inner), dtype=torch.uint8),
    }
    data = _serialize(outer)
    del inner
    free = shutil.disk_usage(path.parent).free
    if free < len(data) + (64 << 20):
        raise CheckpointError(
            f"not enough disk space for checkpoint {path}: need {len(data)} bytes "
            f"plus 64 MiB margin, {free} free"
        )
    return atomic.write_bytes(path, data)


def _reason(exc: BaseException) -> str:
    """Why a read failed, in one sentence: the first line of `exc` up to its first full
    stop (never cut mid-sentence); with the exception's type when the text says nothing."""
    text = " ".join(next((ln for ln in str(exc).splitlines() if ln.strip()), "").split())
    head, dot, _ = text.partition(". ")
    text = head + "." if dot else text
    if not any(c.isalpha() for c in text):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text


def _verified_payload(path: Path) -> bytes:
    """The inner payload of checkpoint file `path` after the header and checksum checks."""
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty")
    try:
        outer = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch raise many classes
        reason = _reason(exc)
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            reason = "it contains objects that are not plain data (refused for safety)"
        raise CheckpointError(f"cannot read checkpoint {path}: {reason}") from None
    if not isinstance(outer, dict) or outer.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a wnrl checkpoint (no '{FORMAT}' header)")
    if outer.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {outer.get('version')!r}; "
            f"this wnrl reads version {VERSION}"
        )
    blob = outer.get("payload")
    if not isinstance(blob, torch.Tensor) or blob.dtype != torch.uint8:
        raise CheckpointError(f"checkpoint {path} has no payload")
    inner = blob.numpy().tobytes()
    if hashlib.sha256(inner).hexdigest() != outer.get("sha256"):
        raise CheckpointError(f"checkpoint {path} is corrupt (checksum mismatch)")
    return inner


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu",
         on_skip: SkipHandler | None = None) -> dict[str, Any]:
    """Load and verify a checkpoint file; raise CheckpointError with a one-line reason.

    A directory (a run or its `checkpoints/`) loads its newest readable checkpoint,
    as `load_latest_valid` does (`on_skip` hears of each unreadable one skipped)."""
    path = Path(path)
    if path.is_dir():
        return load_latest_valid(path, map_location, on_skip)[1]
    inner = _verified_payload(path)
    try:
        return _decode(torch.load(io.BytesIO(inner), map_location=map_location, weights_only=True))
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path} payload: {_reason(exc)}") from None


def unreadable_reason(path: str | os.PathLike) -> str | None:
    """Why checkpoint file `path` cannot be loaded (one line), or None if its header and
    checksum verify (the payload is not unpickled: cheaper than `load`)."""
    try:
        _verified_payload(Path(path))
    except CheckpointError as exc:
        return str(exc)
    return None


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Checkpoint files in `directory`, oldest step first (temporary files excluded)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_or_ckpt_dir: str | os.PathLike) -> Path | None:
    """Newest checkpoint in a run directory (its `checkpoints/`) or a checkpoint directory."""
    d = Path(run_or_ckpt_dir)
    if (d / "checkpoints").is_dir():
        d = d / "checkpoints"
    found = list_checkpoints(d)
    return found[-1] if found else None


def load_latest_valid(run_dir: str | os.PathLike, map_location: str = "cpu",
                      on_skip: SkipHandler | None = None) -> tuple[Path, dict]:
    """The newest checkpoint of a run that loads and verifies, skipping damaged ones;
    `on_skip(path, reason)` is called for each one skipped (to say so in one line)."""
    d = Path(run_dir)
    ckpt_dir = d / "checkpoints" if (d / "checkpoints").is_dir() else d
    errors = []
    for p in reversed(list_checkpoints(ckpt_dir)):
        try:
            return p, load(p, map_location)
        except CheckpointError as exc:
            errors.append(str(exc))
            if on_skip is not None:
                on_skip(p, str(exc))
    if not errors:
        raise CheckpointError(f"no checkpoint found in {ckpt_dir}")
    raise CheckpointError(f"no loadable checkpoint in {ckpt_dir} ({errors[0]})")


def prune(directory: str | os.PathLike, keep: int,
          readable: Callable[[Path], bool] | None = None) -> list[Path]:
    """Keep the newest `keep` readable checkpoints and delete the older ones; set aside
    (rename to `<name>.unreadable`, out of every listing, never deleted) an unreadable one
    met among the newest, so pruning never deletes a readable checkpoint while it keeps an
    unreadable one. Removes stale temporary files. Returns the paths set aside.

    `readable(path)` says whether a file loads (default: `unreadable_reason` is None);
    the trainer's `Checkpointer` caches it, so each file is read at most once.
    """
    directory = Path(directory)
    readable = readable or (lambda p: unreadable_reason(p) is None)
    kept, aside = 0, []
    for p in reversed(list_checkpoints(directory)):
        if kept >= keep:
            p.unlink(missing_ok=True)
        elif readable(p):
            kept += 1
        else:
            dest = p.with_name(p.name + UNREADABLE_SUFFIX)
            os.replace(p, dest)
            aside.append(dest)
    for p in directory.glob(".ckpt_*.tmp"):
        p.unlink(missing_ok=True)
    return aside
