"""Evaluating a checkpoint never replays a training game: its env seeds are apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wnrl.envs import VecEnv
from wnrl.evaluate import evaluate_checkpoint
from wnrl.seeds import EVAL_SEED_BASE, MAX_ENVS, evaluation_seeds
from wnrl.training.runner import start_run

ROOT = Path(__file__).parent.parent


def test_evaluation_seeds_are_a_stream_of_their_own() -> None:
    seeds = [evaluation_seeds(k) for k in range(2000)]
    envs = [s.env for s in seeds]
    assert all(e >= EVAL_SEED_BASE and e + MAX_ENVS <= 2**31 for e in envs)
    assert len(set(envs)) == len(envs)  # different --seed, different games
    assert evaluation_seeds(7) == seeds[7]  # the same --seed, the same games
    assert seeds[0].actor != seeds[0].video_actor
    with pytest.raises(ValueError):
        evaluation_seeds(-1)


def test_default_evaluation_seeds_differ_from_the_training_runs(tmp_path: Path,
                                                                monkeypatch) -> None:
    """Records every env seed of a training run (start, checkpoint cuts, its periodic
    evaluations) and of `evaluate_checkpoint` with the default --seed 0, through the one
    place all of them pass: VecEnv.reset (env i gets seed + i)."""
    seen: list[int] = []
    reset = VecEnv.reset

    def spy(self: VecEnv, seed: int | None = None):
        base = self.seed if seed is None else int(seed)
        seen.extend(range(base, base + self.num_envs))
        return reset(self, seed)

    monkeypatch.setattr(VecEnv, "reset", spy)
    rc = start_run(str(ROOT / "configs" / "cartpole_dqn.yaml"),
                   [f"train.runs_dir={tmp_path}", "train.run_name=r", "seed=0",
                    "train.total_steps=800", "train.learning_starts=200",
                    "train.checkpoint_period=200", "train.eval_period=400",
                    "train.noise_period=0", "eval.episodes=2"], progress=False)
    assert rc == 0
    training = set(seen)
    seen.clear()
    res, _ = evaluate_checkpoint(tmp_path / "r", episodes=5, json_path=str(tmp_path / "s.json"))
    evaluation = set(seen)
    assert {0, 1, 2, 3} <= training and len(res.returns) == 5
    assert evaluation and not training & evaluation
    recorded = json.loads((tmp_path / "s.json").read_text())["seeds"]
    assert recorded["seed"] == 0 and set(recorded["env_seeds"]) == evaluation
    assert recorded["env"] == evaluation_seeds(0).env
