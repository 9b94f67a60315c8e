"""DQN with the standard parameterization (Mnih et al. 2015).

The paper's comparison baseline. Hyperparameters live in the YAML configs:
`configs/atari_dqn.yaml` follows the paper (Adamax with beta1 0.5, learning
rate 1e-4 — best of {1e-4, 3e-4, 1e-3, 3e-3} for the standard network —
minibatch 64); `pong_dqn.yaml` and `cartpole_dqn.yaml` use modern defaults.
"""

from wnrl.recipe import AgentRecipe

RECIPE = AgentRecipe(
    name="dqn",
    norm="none",
    data_dependent_init=False,
    summary="Nature DQN network, standard parameterization",
)
