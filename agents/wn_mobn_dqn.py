"""DQN on a weight-normalized network with mean-only batch norm (paper, section 2.2).

Each hidden WN layer (no bias of its own) is followed by `MeanOnlyBatchNorm`:
the minibatch mean is subtracted in training (no division by the std, so far
less minibatch noise than full batch norm) and the running mean at test time.
Acting and the target network use the running mean (eval mode), so a
state's Q-value at act time does not depend on the other envs. Hyperparameters
live in the YAML configs (`atari_wn_mobn_dqn.yaml`: modern defaults).
"""

from wnrl.recipe import AgentRecipe

RECIPE = AgentRecipe(
    name="wn_mobn_dqn",
    norm="weight+mean_only",
    data_dependent_init=True,
    summary="weight norm + mean-only batch norm",
)
