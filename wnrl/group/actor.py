"""The group's acting: every member's envs, one batched forward with folded weights.

Each member keeps a solo `wnrl.actor.Actor` (its own vector env, seeded as a solo run's,
its own exploration generator and epsilon schedule, its episode bookkeeping and state
dict) in the form of `MemberActor`, whose greedy actions come from the group's forward
instead of its own network. `GroupActor.prepare()` runs that forward once over every
member's current observations, float/uint8[K, N, *obs_shape] -> actions int64[K, N];
then each member's `step()` is the solo actor's step, drawing the same exploration
numbers in the same order, so a member acts exactly as its solo run would.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from wnrl.actor import Actor
from wnrl.group.network import GroupedForward, Tensors


class MemberActor(Actor):
    """A solo actor whose greedy actions are handed to it (`set_greedy`) by the group."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._greedy: np.ndarray | None = None
        self._greedy_for: np.ndarray | None = None

    def set_greedy(self, obs: np.ndarray, actions: np.ndarray) -> None:
        """The group forward's argmax actions int64[N] for `obs` (this actor's `obs`)."""
        self._greedy, self._greedy_for = actions, obs

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        if self._greedy is None or self._greedy_for is not obs:
            raise RuntimeError("a group member acted without the group's forward "
                               "(GroupActor.prepare must come before each step)")
        return self._greedy


class GroupActor:
    """One forward for K member actors (see the module doc).

    Args:
        actors: the members' actors, in member order.
        forward: the members' architecture with plain (folded) layers.
        device: where the forward runs.
        batch_stats: act in train mode (batch-norm nets: statistics over each member's envs).
    """

    def __init__(self, actors: list[MemberActor], forward: GroupedForward,
                 device: torch.device, batch_stats: bool = False) -> None:
        self.actors, self.forward, self.device = actors, forward, device
        self.batch_stats = batch_stats
        self.tensors: Tensors = {}

    def set_weights(self, tensors: Tensors) -> None:
        """Every member's folded weights and buffers, stacked (`GroupLearner.folded`)."""
        self.tensors = tensors

    def prepare(self) -> None:
        """Compute every member's greedy actions for its current observation (skipped while
        every member explores with epsilon 1: no greedy action can be taken then)."""
        obs = [a.obs for a in self.actors]
        if all(float(a.epsilons().min()) >= 1.0 for a in self.actors):
            for a, o in zip(self.actors, obs):
                a.set_greedy(o, np.zeros(len(o), np.int64))
            return
        actions = self.greedy(np.stack(obs))
        for a, o, act in zip(self.actors, obs, actions):
            a.set_greedy(o, act)

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """argmax_a Q_k(obs[k], a) for obs [K, N, *obs_shape] -> int64[K, N]."""
        with torch.inference_mode():
            q: Tensor = self.forward(self.tensors, torch.as_tensor(obs, device=self.device),
                                     training=self.batch_stats)
            return q.argmax(dim=-1).cpu().numpy().astype(np.int64, copy=False)
