"""DQN on a batch-normalized Q-network: the noisy baseline of the paper's argument.

Every hidden conv/linear layer (no bias) is followed by `BatchNorm2d`/`BatchNorm1d`
(`norm="batch"`). Salimans & Kingma (2016) could not make batch norm work for DQN
"without an impractically large minibatch size": the minibatch mean and variance
make each state's Q-value depend on the states it is batched with, which adds
noise to both the Q-estimates and the gradients. This recipe exists to show and
measure that noise (`wnrl.noise`, `scripts/compare.py`); it is not a recommended agent.

Where batch statistics are used, and why each default is what it is:

- **Learner, online forward: train mode** (batch statistics). That is what batch
  norm is; it is also where its minibatch noise enters the TD loss and the
  gradients, the effect under study. The running statistics (momentum 0.1) are
  updated here.
- **Acting: eval mode** (running statistics) by default, `network.actor_batch_stats=false`.
  The N envs' states are a tiny, highly correlated batch (often 4-8 frames of
  similar games); normalizing over it would make an env's action depend on
  what the other envs happen to see and, with one env, would be undefined.
  `network.actor_batch_stats=true` acts in train mode over the N envs, for
  studying exactly that dependence.
- **Target network: always eval mode**, with the running statistics copied from
  the online network together with the weights at every target update
  (`Learner.sync_target` loads the full state dict, buffers included). A target
  in train mode would normalize the next states by their own minibatch, so the
  bootstrapped targets would depend on batch composition too (the "TD-target
  noise" of `wnrl.noise`), and the target would drift between syncs as its
  statistics moved.

Hyperparameters are the standard network's (no data-dependent init: batch norm
normalizes at every step instead).
"""

from wnrl.recipe import AgentRecipe

RECIPE = AgentRecipe(
    name="bn_dqn",
    norm="batch",
    data_dependent_init=False,
    summary="Nature DQN network with batch norm (learner: batch statistics; actor, target: "
            "running statistics)",
)
