"""Evaluation seeds kept apart from training seeds, so an evaluation never replays a training game.

An ALE env takes an int32 seed, and a vector env reset with seed s seeds env i
with s + i. A training run with `seed` s seeds its envs s + i at the start,
and its periodic evaluations s + 10000 + step + i. For any run seed and step
count below about 2**30, all of these stay below `EVAL_SEED_BASE` = 2**30.
Training seeds stay in [0, 2**30): the reseed after a checkpoint cut or a
resume is `(s * 1000003 + step) % EVAL_SEED_BASE`
(`wnrl.training.streams.reset_seed`), and the distributed actors' hashed
seeds are wrapped below `EVAL_SEED_BASE - 2**16` (`wnrl.distributed.workers`).

`scripts/evaluate.py --seed k` uses `evaluation_seeds(k)`. It is a separate
stream: `numpy.random.SeedSequence(k, spawn_key=(EVAL_STREAM,))`. Its first word
puts the env seed in [2**30, 2**31 - 2**16), leaving room for 65,536 envs
above it, so env seeds never coincide with the seeds above. Its second and
third words seed the exploration RNG of the scored games and of the filmed
game. Different k give unrelated seeds; the same k gives the same games.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

EVAL_SEED_BASE = 2**30  # evaluation env seeds start here; training's stay below
MAX_ENVS = 2**16  # env seeds up to env_seed + MAX_ENVS - 1 stay below 2**31
EVAL_STREAM = 0x6576616C  # spawn key of the evaluation stream ("eval")


@dataclass(frozen=True)
class EvalSeeds:
    """The seeds of one checkpoint evaluation.

    seed:        what the user gave (`--seed`)
    env:         vector env seed: env i plays seed env + i, in [2**30, 2**31 - 2**16)
    actor:       exploration RNG of the scored games
    video_actor: exploration RNG of the filmed game (played on seed `env`)
    """

    seed: int
    env: int
    actor: int
    video_actor: int

    def to_dict(self, num_envs: int) -> dict:
        return asdict(self) | {"env_seeds": [self.env + i for i in range(num_envs)],
                               "scheme": "wnrl.seeds.evaluation_seeds"}


def evaluation_seeds(seed: int) -> EvalSeeds:
    """The evaluation seeds for user seed `seed >= 0` (see the module doc)."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    words = np.random.SeedSequence(seed, spawn_key=(EVAL_STREAM,)).generate_state(3, np.uint64)
    span = 2**31 - MAX_ENVS - EVAL_SEED_BASE
    return EvalSeeds(seed=seed, env=EVAL_SEED_BASE + int(words[0]) % span,
                     actor=int(words[1]), video_actor=int(words[2]))
