"""The actor: epsilon-greedy acting in a vector env with a folded copy of the Q-network.

    actor = Actor(env, network, cfg.actor, total_steps=cfg.train.total_steps,
                  clip_rewards=cfg.env.clip_rewards,
                  terminal_on_life_loss=cfg.env.terminal_on_life_loss, seed=cfg.seed)
    transition, episodes = actor.step()      # one vector step: N env steps
    actor.set_weights(learner.weights())     # every K learner updates

Acting uses `fold_weight_norm(network)`: plain weights, no per-call norm cost,
one batched forward over the N envs. Exploration draws come from the actor's
own seeded NumPy generator, so a run is reproducible for a seed.

Episode returns are the raw game score (unclipped rewards summed over a whole
game, across life losses); lengths count env steps (agent decisions, not
frames). The env itself cannot be checkpointed, so a resumed run starts fresh
episodes: after `load_state_dict` the next `step()` resets the envs (or call
`reset_envs(seed)`), and `closing_rows(obs)` gives the replay the rows that end
the streams the checkpoint left open. `cut_episodes(seed)` does both at once
(for bit-exact resume: the uninterrupted run cuts its games at the same step).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from wnrl.accel import resolve_cuda_graph, resolve_device
from wnrl.config import ActorConfig
from wnrl.core.types import Episode, Transition
from wnrl.cuda_graph import GraphedGreedy
from wnrl.nn import fold_weight_norm
from wnrl.schedules import linear_epsilon


def closing_rows(obs: np.ndarray) -> Transition:
    """Rows that end the episodes in progress as a time limit would (truncation).

    `obs` (uint8[N, C, H, W] | float32[N, D]) is each env's current observation; the rows
    are autoreset rows (valid=False, reward 0, flags False), exactly what the env emits
    after a truncation, so the last real transitions of each stream bootstrap from it.
    """
    n = obs.shape[0]
    return Transition(obs=obs, action=np.zeros(n, np.int64), reward=np.zeros(n, np.float32),
                      terminal=np.zeros(n, bool), truncated=np.zeros(n, bool),
                      valid=np.zeros(n, bool))


class Actor:
    """Steps a vector env (`reset(seed) -> obs`, `step(actions) -> StepResult`, `num_envs`,
    `num_actions`) with epsilon-greedy actions and emits `Transition`s for the replay.

    Args:
        env: the vector env (N = env.num_envs).
        policy_net: the Q-network to act with; a folded copy is kept (the original is untouched).
        cfg: epsilon schedule or fixed per-env epsilons.
        total_steps: env steps of the whole run (the schedule decays over
            `cfg.eps_fraction * total_steps`).
        clip_rewards: store sign(reward) in transitions (episode returns stay raw).
        terminal_on_life_loss: mark a life loss as terminal (no bootstrap) in transitions.
        seed: seeds exploration and the env's first reset.
        batch_stats: act in train mode (batch-norm over the N envs) instead of eval mode.
        device: where the acting network runs (`cpu | cuda | auto`).
    """

    def __init__(self, env: Any, policy_net: nn.Module, cfg: ActorConfig, *, total_steps: int,
                 clip_rewards: bool, terminal_on_life_loss: bool, seed: int,
                 batch_stats: bool = False, device: str | torch.device = "cpu") -> None:
        self.env = env
        self.cfg = cfg
        self.total_steps = total_steps
        self.clip_rewards = clip_rewards
        self.terminal_on_life_loss = terminal_on_life_loss
        self.seed = seed
        self.device = resolve_device(device)
        self.num_envs: int = env.num_envs
        self.num_actions: int = env.num_actions
        self.net = fold_weight_norm(policy_net).to(self.device).requires_grad_(False)
        self.net.train(batch_stats)
        # `actor.cuda_graph`: the forward and argmax as one graph replay (eval mode only)
        self.graphed = resolve_cuda_graph(cfg.cuda_graph, self.device, "actor") \
            and not batch_stats
        self._graph: GraphedGreedy | None = None
        self.events: list[str] = []  # a capture that failed, for the run's log
        self._fixed: np.ndarray | None = None
        if cfg.fixed_epsilons is not None:
            if len(cfg.fixed_epsilons) != self.num_envs:
                raise ValueError(f"actor.fixed_epsilons has {len(cfg.fixed_epsilons)} values; "
                                 f"need one per env ({self.num_envs})")
            self._fixed = np.asarray(cfg.fixed_epsilons, dtype=np.float64)
        self._rng = np.random.default_rng(seed)
        self.env_steps = 0  # env steps taken (N per vector step)
        self.num_episodes = 0  # games finished
        self._obs: np.ndarray | None = None
        self._ep_return = np.zeros(self.num_envs, dtype=np.float64)
        self._ep_length = np.zeros(self.num_envs, dtype=np.int64)

    # ---- exploration --------------------------------------------------------------------
    def epsilons(self) -> np.ndarray:
        """float64[N]: each env's epsilon at the current env step."""
        if self._fixed is not None:
            return self._fixed
        eps = linear_epsilon(self.env_steps, self.total_steps, self.cfg.eps_start,
                             self.cfg.eps_end, self.cfg.eps_fraction)
        return np.full(self.num_envs, eps)

    @property
    def epsilon(self) -> float:
        """The current epsilon, for logging (the mean when epsilons are fixed per env)."""
        return float(self.epsilons().mean())

    def act(self, obs: np.ndarray, epsilon: np.ndarray | float) -> np.ndarray:
        """Epsilon-greedy actions, int64[N], for obs uint8[N, C, H, W] | float32[N, D].

        One batched forward pass under `torch.inference_mode` (skipped when every env
        explores). Each call draws the same amount of randomness whatever epsilon is.
        """
        n = obs.shape[0]
        eps = np.broadcast_to(np.asarray(epsilon, dtype=np.float64), (n,))
        explore = self._rng.random(n) < eps
        random_actions = self._rng.integers(self.num_actions, size=n, dtype=np.int64)
        if explore.all():
            return random_actions
        return np.where(explore, random_actions, self.greedy(obs))

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """argmax_a Q(obs, a), int64[N], in one forward pass (graphed: one replay)."""
        with torch.inference_mode():
            x = torch.as_tensor(obs, device=self.device)
            if self.graphed:
                best = self._graphed_argmax(x)
                if best is not None:
                    return best.cpu().numpy().astype(np.int64, copy=False)
            q = self.net(x)
            return q.argmax(dim=1).cpu().numpy().astype(np.int64, copy=False)

    def pop_events(self) -> list[str]:
        """What happened to the graphed forward since the last call (for the run's log)."""
        events, self.events = self.events, []
        return events

    def _graphed_argmax(self, x: Tensor) -> Tensor | None:
        """The graph's actions for `x` (captured now if none fits); None if the capture
        fails, which turns the graph off for good (one line in `events`)."""
        if self._graph is None or not self._graph.fits(x):
            try:
                self._graph = GraphedGreedy(self.net, x)
            except RuntimeError as exc:  # e.g. an op that cannot be captured
                self.graphed, self._graph = False, None
                text = str(exc).strip().splitlines()
                self.events.append(f"actor.cuda_graph: the capture failed "
                                   f"({text[0][:160] if text else type(exc).__name__}); "
                                   "acting eagerly")
                return None
        return self._graph(x)

    def set_weights(self, weights: dict[str, Tensor]) -> None:
        """Load a folded state dict (`Learner.weights()`) into the acting network."""
        self.net.load_state_dict(weights)

    # ---- stepping -----------------------------------------------------------------------
    @property
    def obs(self) -> np.ndarray:
        """The observation the next `step()` acts on (resets the env on first use)."""
        if self._obs is None:
            self.reset_envs()
        assert self._obs is not None
        return self._obs

    def reset_envs(self, seed: int | None = None) -> np.ndarray:
        """Reset every env and drop the episodes in progress (not reported).

        `seed` defaults to `self.seed + self.env_steps`, so a restored actor plays new games.
        """
        seed = self.seed + self.env_steps if seed is None else seed
        self._obs = self.env.reset(seed=seed)
        self._ep_return[:] = 0.0
        self._ep_length[:] = 0
        return self._obs

    def cut_episodes(self, seed: int | None = None) -> Transition:
        """End every episode in progress here, as a time limit would, and reset the envs.

        Returns `closing_rows(self.obs)` for the replay. Unfinished episodes are not
        reported. Used before checkpoints when `train.exact_resume` is on.
        """
        closing = closing_rows(self.obs)
        self.reset_envs(seed)
        return closing

    def step(self) -> tuple[Transition, list[Episode]]:
        """Act once in every env; return the step's transitions and the games that ended.

        Transition rows (N): obs acted on, action, reward (sign-clipped if configured),
        terminal = terminated | (life_lost & terminal_on_life_loss), truncated,
        valid = not the autoreset step.
        """
        obs = self.obs
        return self._advance(obs, self.act(obs, self.epsilons()))

    def replay_games(self, seed: int, actions: np.ndarray) -> np.ndarray:
        """Reset the envs with `seed`, then play `actions` (int64[T, N]) in them as `step`
        would, without exploration draws, env-step counts or episode reports: the games
        are then where they were when those actions were first taken (a resume under
        `train.exact_resume`). Returns the observation reached."""
        counts = self.env_steps, self.num_episodes
        self.reset_envs(seed)
        for a in np.asarray(actions, dtype=np.int64):
            self._advance(self.obs, a)
        self.env_steps, self.num_episodes = counts
        return self.obs

    def _advance(self, obs: np.ndarray, actions: np.ndarray) -> tuple[Transition, list[Episode]]:
        """Step every env with `actions` (int64[N]) taken at `obs`; see `step`."""
        res = self.env.step(actions)
        raw = np.asarray(res.reward, dtype=np.float32)
        valid = ~np.asarray(res.reset_step, dtype=bool)
        terminated = np.asarray(res.terminated, dtype=bool)
        truncated = np.asarray(res.truncated, dtype=bool)
        terminal = terminated | (np.asarray(res.life_lost, dtype=bool)
                                 & self.terminal_on_life_loss)
        transition = Transition(
            obs=obs, action=actions, reward=np.sign(raw) if self.clip_rewards else raw,
            terminal=terminal, truncated=truncated, valid=valid)

        self._ep_return += np.where(valid, raw, 0.0)
        self._ep_length += valid
        done = np.flatnonzero(valid & (terminated | truncated))
        episodes = [Episode(float(self._ep_return[i]), int(self._ep_length[i]), int(i))
                    for i in done]
        self._ep_return[done] = 0.0
        self._ep_length[done] = 0
        self.num_episodes += len(episodes)
        self._obs = res.obs
        self.env_steps += self.num_envs
        return transition, episodes

    # ---- checkpointing ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Counters and the exploration RNG (plain Python values; `weights_only`-loadable).

        Episodes in progress are not saved: the env cannot be checkpointed, so a
        restored actor resets it at its next step and starts new games.
        """
        return {"env_steps": self.env_steps, "num_episodes": self.num_episodes,
                "rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`; the next `step()` resets the env (new episodes)."""
        self.env_steps = int(state["env_steps"])
        self.num_episodes = int(state["num_episodes"])
        self._rng.bit_generator.state = state["rng"]
        self._obs = None
