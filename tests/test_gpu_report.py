"""scripts/gpu_report.py: the GPU check's test counts, training summary and Markdown."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from torch.utils.tensorboard import SummaryWriter

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_report.py"


@pytest.fixture(scope="module")
def report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_report", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0"
 failures="1" skipped="2" tests="5" time="3.1"><testcase classname="tests.test_cuda"
 name="test_fold_is_exact[weight-cuda]"><failure message="x"/></testcase><testcase
 classname="tests.test_cuda" name="test_updates_match_cpu[none-cuda]"/></testsuite></testsuites>
"""


def fake_run(run_dir: Path) -> None:
    """A run: learning starts at 200, logs every 100, stopped (checkpointed) at step 450."""
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "ckpt_000000000450.pt").write_bytes(b"")
    (run_dir / "config.yaml").write_text("train:\n  log_period: 100\n  learning_starts: 200\n")
    w = SummaryWriter(str(run_dir))
    for step, sps, ups in [(100, 10, 0), (200, 20, 0), (300, 30, 5), (400, 40, 7)]:
        w.add_scalar("perf/env_steps_per_s", sps, step)
        w.add_scalar("perf/updates_per_s", ups, step)
    for i, ret in enumerate([-21, -20, -19]):
        w.add_scalar("episode/return", ret, 150 + 100 * i)
    w.close()


def test_tests_counts_and_names_failures(report: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "t.xml").write_text(JUNIT)
    got = report.tests(tmp_path / "t.xml")
    assert (got["passed"], got["failures"], got["skipped"]) == (2, 1, 2)
    assert got["failed"] == ["tests.test_cuda.test_fold_is_exact[weight-cuda]"]
    assert report.tests(tmp_path / "missing.xml") is None


def test_train_summary_from_the_run_directory(report: ModuleType, tmp_path: Path) -> None:
    fake_run(tmp_path / "run")
    got = report.train(tmp_path / "run", seconds=9.0)
    assert got["env_steps"] == 450 and got["env_steps_per_s"] == pytest.approx(50.0)
    # only intervals wholly after the learning start: the points at 300 and 400
    assert got["learning_env_steps_per_s"] == pytest.approx(35.0)
    assert got["learning_updates_per_s"] == pytest.approx(6.0)
    assert got["episodes"] == 3 and got["last_returns"] == [-21, -20, -19]
    assert got["last10_mean"] == pytest.approx(-20.0)
    assert report.train(tmp_path / "nothing", seconds=9.0) is None


def test_markdown_reports_each_part(report: ModuleType, tmp_path: Path) -> None:
    fake_run(tmp_path / "run")
    (tmp_path / "t.xml").write_text(JUNIT)
    r = {"versions": {"torch": "2.11.0", "python": "3.12.3", "cores": 16, "gpu": None},
         "steps": [{"step": "tests", "rc": "1", "seconds": "40"}],
         "tests": report.tests(tmp_path / "t.xml"), "benchmark": None,
         "train": report.train(tmp_path / "run", seconds=9.0)}
    md = report.markdown(r)
    assert "no GPU; torch 2.11.0, Python 3.12.3, 16 cores" in md
    assert "| tests | 1 | 40 |" in md
    assert "2 passed, 1 failed, 2 skipped" in md and "failed: tests.test_cuda.test_fold" in md
    assert "no result (see benchmark.log)" in md
    assert "| 450 | 9 | 50 | 35 | 6 | 3 | -20.0 | -21 -20 -19 |" in md


def test_markdown_reports_the_group_step(report: ModuleType) -> None:
    """The group step's table when it ran; a pointer to its log when it failed; nothing
    when it did not run (CPU)."""
    group = {"setting": "pong", "env": "ALE/Pong-v5", "device": "cuda", "num_envs": 16,
             "k": 8, "updates_per_step": 0.25, "solo_env_steps_per_s": 1500.0,
             "group_env_steps_per_s": 6000.0, "ratio": 4.0, "ratios": [4.0, 4.1, 3.9],
             "graphed_env_steps_per_s": 12000.0, "graphed_ratio": 2.0,
             "rss_solo_mib": 100.0, "rss_per_member_mib": 90.0}
    base = {"versions": {}, "tests": None, "benchmark": None, "train": None}
    ran = report.markdown({**base, "steps": [{"step": "benchmark_group", "rc": "0",
                                              "seconds": "80"}],
                           "benchmark_group": {"cpu": 16, "results": [group]}})
    assert "## Benchmark: the many-runs group on the GPU" in ran
    assert "| 8 | 1500 | 6000 | 4.00x (4.00, 4.10, 3.90) | 12000 (2.00x) |" in ran
    failed = report.markdown({**base, "steps": [{"step": "benchmark_group", "rc": "124",
                                                 "seconds": "120"}]})
    assert "no result (see benchmark_group.log)" in failed
    assert "many-runs group" not in report.markdown({**base, "steps": []})
