"""A group member seen as a solo run's parts: what a `Trainer` needs of its learner.

`MemberLearner(group, k)` gives member k of a `GroupLearner` the solo `Learner`'s face:
`online` / `target` networks (solo modules, copied out for evaluation and the noise
diagnostics), `weights()`, `state_dict()` / `load_state_dict()` in the solo format,
`num_updates`, `device` and `mode`. With it (and a `MemberActor`) each member's
`wnrl.training.trainer.Trainer` logs, evaluates, measures noise, checkpoints, restores
and finishes exactly as a solo run's, while the group does the acting and learning.

`MemberRng` keeps member k's own torch generator state: a solo run draws from the global
torch generator (network init, data-dependent init) and saves it in its checkpoints, so
each member's draws and saved state are swapped in around its own work.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from wnrl.group.learner import GroupLearner
from wnrl.networks import QNetwork
from wnrl.nn import folded_state_dict


class MemberLearner:
    """Member k of `group` with the solo `wnrl.learner.Learner` interface (see module doc)."""

    compiled = False
    warming_up = False
    compile_note = ""

    def __init__(self, group: GroupLearner, k: int) -> None:
        self.group, self.k = group, k
        self.device = group.device
        self.cfg = group.cfg
        self.graphed = group.graphed

    @property
    def mode(self) -> str:
        return f"{self.group.mode} (member {self.k + 1} of a group of {self.group.k})"

    @property
    def num_updates(self) -> int:
        return self.group.num_updates

    @property
    def online(self) -> QNetwork:
        """A copy of the member's online network (training mode)."""
        return self.group.member_network(self.k)

    @property
    def target(self) -> QNetwork:
        """A copy of the member's (unfolded) target network (eval mode)."""
        return self.group.member_network(self.k, target=True)

    def weights(self, device: str | torch.device = "cpu", *,
                share: bool = False) -> dict[str, Tensor]:
        return {k: v.to(device) for k, v in folded_state_dict(self.online).items()}

    def state_dict(self) -> dict[str, Any]:
        return self.group.member_state_dict(self.k)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.group.load_member_state_dict(self.k, state)


class MemberRng:
    """Member k's torch generator state, swapped into the global generator by `with`."""

    def __init__(self, state: Tensor) -> None:
        self.state = state
        self._outside: Tensor | None = None

    def __enter__(self) -> MemberRng:
        self._outside = torch.get_rng_state()
        torch.set_rng_state(self.state)
        return self

    def __exit__(self, *exc: object) -> None:
        self.state = torch.get_rng_state()
        assert self._outside is not None
        torch.set_rng_state(self._outside)
