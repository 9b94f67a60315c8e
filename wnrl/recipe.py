"""What an agent recipe is: the few choices that distinguish one DQN agent from another.

Everything else (acting, replay, learning, logging) is shared and lives in
`wnrl`; a recipe only names its network normalization, whether the network
gets the paper's data-dependent initialization, and its default
hyperparameters (a mapping of config keys layered under the user's YAML).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NORMS = ("none", "weight", "batch", "weight+mean_only", "layer")


@dataclass(frozen=True)
class AgentRecipe:
    name: str
    norm: str  # one of NORMS, passed to wnrl.networks.make_q_network
    data_dependent_init: bool  # run wnrl.nn.data_dependent_init before learning starts
    defaults: dict[str, Any] = field(default_factory=dict)  # config layer, e.g. {"learner": {}}
    summary: str = ""

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"agent {self.name}: norm {self.norm!r} not in {NORMS}")
