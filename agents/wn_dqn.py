"""DQN on a weight-normalized Q-network (Salimans & Kingma 2016, section 5.4).

Every conv and linear layer is `w = g * v / ||v||`, initialized from data
(`wnrl.nn.data_dependent_init`) on a batch gathered before learning starts.
The paper's recipe is `configs/atari_wn_dqn.yaml`: Adamax with beta1 0.5,
learning rate 3e-4 (best for weight norm of {1e-4, 3e-4, 1e-3, 3e-3}),
minibatch 64; `pong_wn_dqn.yaml` and `cartpole_wn_dqn.yaml` use modern defaults.
"""

from wnrl.recipe import AgentRecipe

RECIPE = AgentRecipe(
    name="wn_dqn",
    norm="weight",
    data_dependent_init=True,
    summary="Nature DQN network, weight-normalized, data-dependent init",
)
