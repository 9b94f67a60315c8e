"""A checkpoint written by wnrl before the training/replay restructure (commit c9ee20e)
still evaluates and resumes: tests/data/cartpole_wn_dqn_c9ee20e is a CartPole WN-DQN run
of 1,200 env steps (2 envs, replay not saved: the CartPole configs' default), made with
`scripts/train.py --config configs/cartpole_wn_dqn.yaml train.total_steps=1200
train.learning_starts=400 replay.capacity=1500 env.num_envs=2 ...` at that commit."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from wnrl import checkpoint as ckpt
from wnrl.evaluate import evaluate_network, load_policy
from wnrl.training.runner import resume_run

LEGACY = Path(__file__).parent / "data" / "cartpole_wn_dqn_c9ee20e"


def test_legacy_checkpoint_evaluates(tmp_path: Path) -> None:
    cfg, net, state = load_policy(LEGACY)
    assert cfg.agent == "wn_dqn" and state["env_steps"] == 1200
    res = evaluate_network(net, cfg, episodes=2, seed=0)
    assert len(res.returns) == 2 and np.isfinite(res.returns).all()


def test_legacy_checkpoint_resumes(tmp_path: Path) -> None:
    run = tmp_path / "cartpole_v1"
    shutil.copytree(LEGACY, run)
    assert resume_run(str(run), ["train.total_steps=1700"], progress=False) == 0
    path, state = ckpt.load_latest_valid(run)
    # the replay refills for learning_starts (400) env steps, then learning goes on
    assert state["env_steps"] == 1700 and state["learner"]["num_updates"] > 401
    assert path.name == ckpt.checkpoint_name(1700)
