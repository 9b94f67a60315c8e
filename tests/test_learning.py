"""A learning test that fails if learning breaks: WN-DQN solves CartPole-v1."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wnrl.training.runner import start_run

from .test_train import _scalars

CONFIG = Path(__file__).parent.parent / "configs" / "cartpole_wn_dqn.yaml"


def test_wn_dqn_solves_cartpole_within_50k_steps(tmp_path: Path) -> None:
    """Mean raw return >= 195 over 20 consecutive episodes within 50k env steps (seed 0)."""
    overrides = [f"train.runs_dir={tmp_path}", "train.run_name=cp", "seed=0",
                 "train.total_steps=50000", "train.stop_return=195", "train.stop_window=20",
                 "train.noise_period=0"]
    assert start_run(str(CONFIG), overrides, progress=False) == 0
    points = _scalars(tmp_path / "cp", "episode/return")
    steps = np.array([s for s, _ in points])
    returns = np.array([r for _, r in points])
    rolling = np.convolve(returns, np.ones(20) / 20, mode="valid")
    assert rolling.max() >= 195, f"best 20-episode mean {rolling.max():.1f}"
    first = int(np.argmax(rolling >= 195)) + 19
    assert steps[first] <= 50_000
