"""A kernel library cut short in TorchInductor's cache (a compile killed by Ctrl-C) never
ends a run: the learner removes it and compiles again, or falls back to eager in one line.

The cache is private (`TORCHINDUCTOR_CACHE_DIR` in a tmp dir), filled once by a child
process (as a first, interrupted run would have), so this process has never loaded its
libraries and has to read them from disk."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from wnrl import compile_cache
from wnrl.config import LearnerConfig
from wnrl.learner import Learner
from wnrl.networks import make_q_network
from wnrl.replay import Batch

FILL = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(int(sys.argv[1]))  # the kernels Inductor writes depend on it
    from tests.test_compile_cache import tiny_learner, batch
    print(tiny_learner("true").update(batch()).loss)
""")


def tiny_learner(compile_: str) -> Learner:
    """The smallest network the learner tests use, seeded."""
    torch.manual_seed(0)
    net = make_q_network((6,), 3, norm="none", hidden_sizes=(32, 32))
    return Learner(net, LearnerConfig(device="cpu", lr=1e-3, compile=compile_,
                                      precision="fp32"))


def batch(b: int = 16) -> Batch:
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((2, b, 6)).astype(np.float32)
    return Batch(obs=obs[0], action=rng.integers(3, size=b),
                 reward=rng.standard_normal(b).astype(np.float32),
                 discount=np.full(b, 0.99, np.float32), next_obs=obs[1],
                 weight=np.ones(b, np.float32), index=np.arange(b))


@pytest.fixture(scope="module")
def filled_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("inductor")
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", FILL, str(torch.get_num_threads())], env=env,
                   cwd=root, check=True, capture_output=True, timeout=300)
    assert kernels(cache)
    return cache


@pytest.fixture()
def private_cache(filled_cache: Path, monkeypatch: pytest.MonkeyPatch):
    from torch._inductor.utils import clear_caches

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(filled_cache))
    clear_caches()
    yield filled_cache
    clear_caches()


def kernels(cache: Path) -> list[Path]:
    return sorted(cache.rglob("*.main.so"))


def cut(path: Path, keep: int) -> None:
    """Leave the first `keep` bytes, in a new file (a library this process mapped stays
    intact under its old inode)."""
    head = path.read_bytes()[:keep]
    path.unlink()
    path.write_bytes(head)


def test_broken_library_detection(tmp_path: Path) -> None:
    lib = next(Path(torch.__file__).parent.joinpath("lib").glob("libc10.so*"))
    whole = tmp_path / "whole.so"
    whole.write_bytes(lib.read_bytes())
    assert not compile_cache.is_broken_library(whole)
    size = whole.stat().st_size
    for keep in (0, 40, size // 2, size - 1):
        cut_copy = tmp_path / f"cut{keep}.so"
        cut_copy.write_bytes(whole.read_bytes()[:keep])
        assert compile_cache.is_broken_library(cut_copy), keep
    (tmp_path / "macho.so").write_bytes(b"\xcf\xfa\xed\xfe" + bytes(60))
    assert not compile_cache.is_broken_library(tmp_path / "macho.so")
    removed = compile_cache.remove_broken_libraries(tmp_path)
    assert {p.name for p in removed} == {"cut0.so", "cut40.so", f"cut{size // 2}.so",
                                         f"cut{size - 1}.so"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["macho.so", "whole.so"]


def test_file_too_short_falls_back_to_eager_in_one_line(private_cache: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The reported failure, reproduced: with the removal and the fresh cache disabled, the
    empty library fails to load (`file too short`); the run goes on eagerly and says why."""
    cut(kernels(private_cache)[0], 0)
    monkeypatch.setattr(compile_cache, "remove_broken_libraries", lambda root=None: [])
    monkeypatch.setattr(compile_cache, "use_fresh_cache", lambda: private_cache)
    learner = tiny_learner("true")
    m = learner.update(batch())
    eager = tiny_learner("false")
    assert m.loss == eager.update(batch()).loss
    assert not learner.compiled and learner.mode == "eager fp32"
    events = learner.pop_events()
    assert len(events) == 1 and "\n" not in events[0]
    assert "file too short" in events[0] and events[0].endswith("running eagerly")
    assert learner.update(batch()).loss == eager.update(batch()).loss


def test_cut_libraries_are_removed_and_compiled_again(private_cache: Path) -> None:
    """Libraries cut short, empty or with their ELF header kept (loading that one would
    kill the process with a bus error), are removed before the compile; the update then
    compiles and takes eager's step."""
    libs = kernels(private_cache)
    cut(libs[0], 0)
    cut(libs[-1], 4096)
    learner = tiny_learner("true")
    m = learner.update(batch())
    assert learner.compiled
    events = learner.pop_events()
    assert len(events) == 1 and events[0].startswith("removed 2 broken kernel libraries")
    assert not any(compile_cache.is_broken_library(p) for p in kernels(private_cache))
    eager = tiny_learner("false")
    assert m.loss == pytest.approx(eager.update(batch()).loss, rel=1e-6)
    for a, b in zip(learner.online.parameters(), eager.online.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_fresh_cache_is_a_new_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from torch._inductor.utils import clear_caches

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    fresh = compile_cache.use_fresh_cache()
    try:
        assert fresh != tmp_path and fresh.is_dir() and not any(fresh.iterdir())
        assert compile_cache.inductor_cache_dir() == fresh
    finally:
        fresh.rmdir()
        clear_caches()


def test_other_errors_are_not_taken_for_compile_failures() -> None:
    try:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")
    except RuntimeError as exc:
        assert not compile_cache.is_compile_failure(exc)
    try:
        try:
            raise ImportError("/c/x.main.so: file too short")
        except ImportError as inner:
            raise RuntimeError("backend raised") from inner
    except RuntimeError as exc:
        assert compile_cache.is_compile_failure(exc)
        assert compile_cache.failure_line(exc) == "ImportError: /c/x.main.so: file too short"
