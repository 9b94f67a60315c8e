"""Actor worker: one Ray actor process that plays with a fixed Ape-X epsilon.

A worker wraps the ordinary `wnrl.actor.Actor` around its own vector env (N envs,
one Ray CPU, one env thread unless `env.num_threads` says otherwise) and answers
`collect(num_steps, weights, version)` with a `Chunk`: `num_steps` vector steps of
rows for the replay. In a run the driver calls `push(...)` instead: the worker
collects a chunk and hands it to its replay shard itself, in order, so the shard
never waits for a chunk still being collected while the learner samples from it.
Every env of worker `i` explores with the same fixed epsilon
`eps_i = 0.4 ** (1 + 7 * i / (A - 1))` (`wnrl.schedules.apex_epsilons`).

With prioritized replay the worker also computes the rows' initial priorities
(Ape-X): `|R_n + discount * max_a Q(s_{t+m}, a) - Q(s_t, a_t)|` with its own folded
network, over a small mirror `ReplayBuffer` of its latest rows, so n-step returns and
episode boundaries follow exactly the replay's rules. Rows whose n-step window ends
after the chunk get no initial priority (the replay gives them its maximum).

A worker that Ray restarts after a crash is a fresh process: it gets a new
`incarnation` id and new game seeds, and the replay shard closes the dead
incarnation's episodes before storing the new rows (see `wnrl.distributed.shard`).
Chunks are numbered (`seq`) within an incarnation, so the shard sees lost ones.
Every request names the current weights and their version; a worker loads them when
the version is newer than its own, so a fresh incarnation (version -1) always acts
and computes priorities with the learner's current weights, never its random ones.
"""

from __future__ import annotations

import os
import time
import uuid
import warnings
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np
import torch

from wnrl.actor import Actor
from wnrl.config import Config
from wnrl.envs import make_env
from wnrl.replay import ReplayBuffer, Transition
from wnrl.seeds import EVAL_SEED_BASE
from wnrl.training.parts import network_for


class Chunk(NamedTuple):
    """Worker -> replay shard: T vector steps of N envs (T = `distributed.chunk_steps`).

    frames: the newest frame of each obs, uint8[T, N, 84, 84], or whole vector obs
    float32[T, N, D]; action int64[T, N]; reward float32[T, N]; terminal, truncated,
    valid bool[T, N] (as in `Transition`); last_frame: like one row of frames, the obs
    after the chunk (closes the stream if this incarnation dies); priority:
    float32[T, N], NaN where the worker left it to the replay (None: uniform replay).
    """

    worker: int
    incarnation: str
    seq: int  # 0, 1, 2, ... within the incarnation
    frames: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    terminal: np.ndarray
    truncated: np.ndarray
    valid: np.ndarray
    last_frame: np.ndarray
    priority: np.ndarray | None
    episodes: list[tuple[float, int]]  # (raw return, length in env steps) of finished games
    seconds: float  # wall time spent stepping
    node_id: str  # Ray node the worker runs on


def newest_frames(obs: np.ndarray, stacked: bool) -> np.ndarray:
    """obs [N, C, H, W] -> its newest frames [N, H, W]; vector obs [N, D] unchanged."""
    return obs[:, -1] if stacked else obs


class ActorWorker:
    """Body of a Ray actor (`ray.remote(ActorWorker)`); also usable in-process for tests.

    Args:
        cfg: the run's config (env, network, actor, replay settings).
        index: worker number i in 0..A-1 (names its epsilon and seeds).
        epsilon: this worker's fixed exploration rate.
        shard: handle of the replay shard `push` stores chunks in (Ray runs only).
        start_step: the run's env step when the worker starts (a resume's): its games and
            exploration are seeded from it, so a resumed run plays new games.
    """

    def __init__(self, cfg: Config, index: int, epsilon: float, shard: Any = None,
                 start_step: int = 0) -> None:
        torch.set_num_threads(1)
        self.index, self.epsilon, self.shard = index, float(epsilon), shard
        self.timeout = cfg.distributed.call_timeout_s
        self.incarnation, self.seq = uuid.uuid4().hex, 0
        self.weights_version = -1  # none loaded: the network is untrained
        entropy = [cfg.seed, index] + ([start_step] if start_step else [])
        seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
        if _reconstructed():  # a restart plays new games
            seed = int.from_bytes(os.urandom(4), "little")
        seed %= EVAL_SEED_BASE - 2**16  # env i gets seed + i: below evaluation's seeds
        env_cfg = replace(cfg.env, num_threads=cfg.env.num_threads or 1)
        self.env = make_env(env_cfg, seed=seed, training=True)
        net = network_for(cfg, self.env.obs_shape, self.env.num_actions)
        actor_cfg = replace(cfg.actor, fixed_epsilons=(self.epsilon,) * self.env.num_envs)
        self.actor = Actor(self.env, net, actor_cfg, total_steps=cfg.train.schedule_horizon,
                           clip_rewards=cfg.env.clip_rewards,
                           terminal_on_life_loss=cfg.env.terminal_on_life_loss, seed=seed,
                           batch_stats=cfg.network.actor_batch_stats)
        self.stacked = len(self.env.obs_shape) > 1
        self.mirror: ReplayBuffer | None = None
        if cfg.replay.prioritized:
            n, rows = self.env.num_envs, cfg.distributed.chunk_steps + cfg.replay.n_step
            stack = self.env.obs_shape[0] if self.stacked else 1
            self.mirror = ReplayBuffer(n * (rows + stack + 2), self.env.obs_shape,
                                       self.env.obs_dtype, n, frame_stack=stack,
                                       n_step=cfg.replay.n_step, gamma=cfg.learner.gamma)
        self.node = _node_id()

    def load_weights(self, weights: Any, version: int | None = None) -> None:
        """Load `weights` (a folded state dict, or a list holding an ObjectRef of one, which
        Ray leaves unfetched) if `version` is newer than the loaded one (None: always)."""
        if version is not None and version <= self.weights_version:
            return
        if isinstance(weights, list):
            import ray

            weights = weights[0]
            if isinstance(weights, ray.ObjectRef):
                weights = ray.get(weights, timeout=self.timeout)
        self.actor.set_weights(weights)
        self.weights_version = self.weights_version if version is None else version

    def push(self, num_steps: int, weights: Any, version: int) -> dict[str, Any]:
        """`collect`, then store the chunk in this worker's shard; returns the shard's
        report once it is stored (the worker's chunks reach the shard in order)."""
        import ray

        chunk = self.collect(num_steps, weights, version)
        return ray.get(self.shard.add_chunk.remote(chunk), timeout=self.timeout)

    def collect(self, num_steps: int, weights: Any = None, version: int | None = None) -> Chunk:
        """Load `weights` (see `load_weights`) if given, then play `num_steps` vector steps."""
        if weights is not None:
            self.load_weights(weights, version)
        start = time.perf_counter()
        rows: list[Transition] = []
        episodes: list[tuple[float, int]] = []
        for _ in range(num_steps):
            tr, done = self.actor.step()
            rows.append(tr)
            episodes += [(ep.ret, ep.length) for ep in done]
        first_row = self.mirror.steps_added if self.mirror is not None else 0
        priority = self._priorities(rows, first_row) if self.mirror is not None else None
        self.seq += 1
        return Chunk(
            worker=self.index, incarnation=self.incarnation, seq=self.seq - 1,
            frames=np.stack([newest_frames(r.obs, self.stacked) for r in rows]),
            action=np.stack([r.action for r in rows]), reward=np.stack([r.reward for r in rows]),
            terminal=np.stack([r.terminal for r in rows]),
            truncated=np.stack([r.truncated for r in rows]),
            valid=np.stack([r.valid for r in rows]),
            last_frame=newest_frames(self.actor.obs, self.stacked).copy(), priority=priority,
            episodes=episodes, seconds=time.perf_counter() - start, node_id=self.node)

    @torch.inference_mode()
    def _priorities(self, rows: list[Transition], first_row: int) -> np.ndarray:
        """float32[T, N]: |TD error| of each row whose n-step window is complete, else NaN."""
        assert self.mirror is not None
        for r in rows:
            self.mirror.add(r)
        n = self.env.num_envs
        ids = self.mirror.sampleable_indices()
        ids = ids[ids >= first_row * n]
        out = np.full((len(rows), n), np.nan, dtype=np.float32)
        if len(ids) == 0:
            return out
        b = self.mirror.get(ids)
        net, dev = self.actor.net, self.actor.device
        q = net(torch.as_tensor(b.obs, device=dev)).gather(
            1, torch.as_tensor(b.action, device=dev)[:, None])[:, 0]
        bootstrap = net(torch.as_tensor(b.next_obs, device=dev)).max(dim=1).values
        target = torch.as_tensor(b.reward) + torch.as_tensor(b.discount) * bootstrap.cpu()
        row, stream = np.divmod(ids, n)
        out[row - first_row, stream] = (target - q.cpu()).abs().numpy()
        return out

    def node_id(self) -> str:
        """The Ray node this worker runs on."""
        return self.node

    def pid(self) -> int:
        return os.getpid()


def _reconstructed() -> bool:
    try:
        import ray

        if not ray.is_initialized():
            return False
        with warnings.catch_warnings():  # Ray warns about its own internal use of actor_id
            warnings.simplefilter("ignore")
            return bool(ray.get_runtime_context().was_current_actor_reconstructed)
    except Exception:  # not inside a Ray actor
        return False


def _node_id() -> str:
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id()) if ray.is_initialized() else "local"
    except Exception:
        return "local"
