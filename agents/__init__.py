"""Agent recipes, installed as `wnrl.agents`, found through one registry table."""

from __future__ import annotations

import difflib

from wnrl.agents import bn_dqn, dqn, ln_dqn, wn_dqn, wn_mobn_dqn

from wnrl.errors import ConfigError
from wnrl.recipe import AgentRecipe

AGENTS: dict[str, AgentRecipe] = {
    r.name: r for r in (dqn.RECIPE, wn_dqn.RECIPE, bn_dqn.RECIPE, wn_mobn_dqn.RECIPE,
                        ln_dqn.RECIPE)
}


def get_agent(name: str) -> AgentRecipe:
    """The recipe registered under `name`; a one-line ConfigError otherwise."""
    if name not in AGENTS:
        close = difflib.get_close_matches(name, AGENTS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(
            f"unknown agent '{name}'{hint}; available: {', '.join(sorted(AGENTS))}"
        )
    return AGENTS[name]
