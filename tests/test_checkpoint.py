"""Checkpoints: atomic writes, checksums, safe loading, clear errors."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from wnrl import checkpoint as ckpt


def _payload() -> dict:
    return {"w": torch.arange(6.0).reshape(2, 3), "n": 7, "arr": np.arange(5, dtype=np.uint8),
            "nested": {"rng": {"state": 2**70, "inc": 3}, "flags": np.array([True, False])},
            "none": None, "name": "x"}


def test_round_trip_with_numpy(tmp_path: Path) -> None:
    p = tmp_path / "ckpt_000000000010.pt"
    ckpt.save(p, _payload())
    got = ckpt.load(p)
    assert torch.equal(got["w"], _payload()["w"]) and got["n"] == 7 and got["none"] is None
    assert isinstance(got["arr"], np.ndarray) and got["arr"].dtype == np.uint8
    np.testing.assert_array_equal(got["nested"]["flags"], [True, False])
    assert got["nested"]["rng"]["state"] == 2**70
    # the outer file is a plain torch file that loads with weights_only=True
    outer = torch.load(p, weights_only=True)
    assert outer["format"] == ckpt.FORMAT and outer["version"] == ckpt.VERSION


def test_malicious_pickle_is_refused_and_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    p = tmp_path / "evil.pt"
    torch.save({"format": ckpt.FORMAT, "version": 1, "payload": Evil()}, p)
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.load(p)
    assert not marker.exists()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "flip", "foreign", "version"])
def test_damaged_files_give_one_line_errors(tmp_path: Path, damage: str) -> None:
    p = tmp_path / "ckpt_000000000001.pt"
    ckpt.save(p, _payload())
    data = p.read_bytes()
    if damage == "empty":
        p.write_bytes(b"")
    elif damage == "truncated":
        p.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        p.write_bytes(os.urandom(4096))
    elif damage == "flip":
        outer = torch.load(p, weights_only=True)
        outer["payload"][len(outer["payload"]) // 2] ^= 0xFF
        torch.save(outer, p)
    elif damage == "foreign":
        torch.save({"state_dict": {"w": torch.zeros(2)}}, p)
    elif damage == "version":
        outer = torch.load(p, weights_only=True)
        outer["version"] = 99
        torch.save(outer, p)
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.load(p)
    assert "\n" not in str(err.value) and str(p) in str(err.value)


def test_missing_file_and_dir(tmp_path: Path) -> None:
    with pytest.raises(ckpt.CheckpointError, match="not found"):
        ckpt.load(tmp_path / "nope.pt")
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint"):
        ckpt.load(tmp_path)


def test_latest_skips_damaged_and_ignores_temp_files(tmp_path: Path) -> None:
    d = tmp_path / "run" / "checkpoints"
    for step in (10, 20, 30):
        ckpt.save(d / ckpt.checkpoint_name(step), {"step": step})
    (d / ckpt.checkpoint_name(30)).write_bytes(b"partial")
    (d / ".ckpt_000000000040.pt.abc.tmp").write_bytes(b"half-written")
    skipped: list[tuple[Path, str]] = []
    path, state = ckpt.load_latest_valid(tmp_path / "run",
                                         on_skip=lambda p, r: skipped.append((p, r)))
    assert state["step"] == 20 and path.name == ckpt.checkpoint_name(20)
    assert [p.name for p, _ in skipped] == [ckpt.checkpoint_name(30)]
    assert str(d / ckpt.checkpoint_name(30)) in skipped[0][1] and "\n" not in skipped[0][1]
    # a run directory given to `load` (as evaluate does) loads the newest readable one too
    heard: list[Path] = []
    assert ckpt.load(tmp_path / "run", on_skip=lambda p, r: heard.append(p))["step"] == 20
    assert heard == [d / ckpt.checkpoint_name(30)]
    # pruning keeps the 2 newest *readable* ones and sets the unreadable one aside
    assert ckpt.prune(d, keep=2) == [d / (ckpt.checkpoint_name(30) + ckpt.UNREADABLE_SUFFIX)]
    assert [p.name for p in ckpt.list_checkpoints(d)] == [ckpt.checkpoint_name(s) for s in (10, 20)]
    assert (d / (ckpt.checkpoint_name(30) + ckpt.UNREADABLE_SUFFIX)).read_bytes() == b"partial"
    assert not list(d.glob("*.tmp"))


def test_prune_never_deletes_a_readable_checkpoint_while_keeping_an_unreadable_one(
        tmp_path: Path) -> None:
    """keep 1; the newest by step is cut in half, and a resumed run then saved a lower
    step: the old rule (newest steps) kept the cut file and deleted every readable one."""
    for step in (500, 1000, 1500):
        ckpt.save(tmp_path / ckpt.checkpoint_name(step), {"step": step})
    cut = tmp_path / ckpt.checkpoint_name(1500)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    ckpt.save(tmp_path / ckpt.checkpoint_name(1100), {"step": 1100})  # the resumed run's
    ckpt.prune(tmp_path, keep=1)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [ckpt.checkpoint_name(1100)]
    assert ckpt.load_latest_valid(tmp_path)[1]["step"] == 1100


def test_read_errors_are_whole_sentences(tmp_path: Path) -> None:
    """A zip error is one sentence plus advice that used to be cut at 200 characters."""
    p = tmp_path / ckpt.checkpoint_name(1)
    ckpt.save(p, _payload())
    p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.load(p)
    msg = str(err.value)
    assert msg.endswith(".") and "If you are seeing" not in msg, msg
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(ckpt.CheckpointError) as err:  # pickle's bare "101" gets its type
        ckpt.load(text)
    assert any(c.isalpha() for c in str(err.value).split(": ", 1)[1]), str(err.value)


def test_read_only_arrays_save_without_warning(tmp_path: Path) -> None:
    """Ape-X shards' state comes out of Ray's object store read-only; torch warned
    ("NumPy array is not writable") at every checkpoint."""
    arr = np.arange(6, dtype=np.uint8)
    arr.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ckpt.save(tmp_path / "c.pt", {"frames": arr})
    np.testing.assert_array_equal(ckpt.load(tmp_path / "c.pt")["frames"], np.arange(6))


def test_failed_write_leaves_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    p = tmp_path / "ckpt_000000000001.pt"
    ckpt.save(p, {"v": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        ckpt.save(p, {"v": 2})
    monkeypatch.undo()
    assert ckpt.load(p)["v"] == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_disk_space_checked_before_writing(tmp_path: Path, monkeypatch) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(1, 1, 10))
    with pytest.raises(ckpt.CheckpointError, match="disk space"):
        ckpt.save(tmp_path / "c.pt", {"x": torch.zeros(10)})
    assert not list(tmp_path.iterdir())
