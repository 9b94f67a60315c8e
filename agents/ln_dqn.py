"""DQN on a layer-normalized Q-network (Ba et al. 2016).

Every hidden conv/linear layer (no bias) is followed by a layer norm (`norm="layer"`):
`GroupNorm(1, C)` after a conv, i.e. a LayerNorm over the whole (C, H, W) activation of
one example with a per-channel scale and shift, and `LayerNorm` after a linear layer. Each
state is normalized over its own units only, so, like weight norm and unlike batch norm,
a state's Q-value does not depend on the minibatch it is in (in training or in eval
mode). This is the normalization that recent value-based work without target networks
or replay relies on (PQN, Gallici et al. 2024); here it is a fifth point of the
comparison: batch-independent like weight norm, but normalizing activations at every
step rather than reparameterizing weights. No data-dependent init (the norm layers
standardize each example at every forward); hyperparameters are the standard network's.
"""

from wnrl.recipe import AgentRecipe

RECIPE = AgentRecipe(
    name="ln_dqn",
    norm="layer",
    data_dependent_init=False,
    summary="layer norm after each hidden layer (batch-independent, as in PQN)",
)
