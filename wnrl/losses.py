"""TD targets and Q-learning losses: pure functions of tensors, plus the loss callable.

The learner is agnostic to the algorithm: it calls a `LossFn` with the online
and target networks and a batch of tensors and minimizes the weighted mean of
the per-sample losses it returns. `make_loss(cfg)` builds the one a config
asks for (one-step or n-step, DQN or Double DQN, Huber or MSE); n-step,
termination and truncation live entirely in the batch's `reward` and
`discount` (the replay's business), so the same targets serve all of them.

Shapes: `B` minibatch size, `A` number of actions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wnrl.config import LearnerConfig


def q_learning_target(q_next_target: Tensor, reward: Tensor, discount: Tensor) -> Tensor:
    """`reward + discount * max_a Q_target(next_obs, a)` (Mnih et al. 2015).

    q_next_target: float[B, A]; reward, discount: float[B] -> float[B].
    `discount` is gamma**k for a k-step return, 0 when the window ended in a terminal.
    """
    return reward + discount * q_next_target.max(dim=-1).values


def double_q_target(
    q_next_online: Tensor, q_next_target: Tensor, reward: Tensor, discount: Tensor
) -> Tensor:
    """Double DQN target (van Hasselt et al. 2016): the online net picks, the target net values.

    q_next_online, q_next_target: float[B, A]; reward, discount: float[B] -> float[B].
    """
    best = q_next_online.argmax(dim=-1, keepdim=True)
    return reward + discount * q_next_target.gather(-1, best).squeeze(-1)


def huber(td_error: Tensor, delta: float = 1.0) -> Tensor:
    """Elementwise Huber loss: 0.5 x^2 for |x| <= delta, delta (|x| - delta/2) beyond.

    Same values and gradients as `F.huber_loss(x, 0, reduction="none")`.
    """
    return F.huber_loss(td_error, torch.zeros_like(td_error), reduction="none", delta=delta)


def mse(td_error: Tensor) -> Tensor:
    """Elementwise squared error x^2 (as `F.mse_loss(..., reduction="none")`)."""
    return td_error.square()


ELEMENTWISE_LOSSES: dict[str, Callable[[Tensor], Tensor]] = {"huber": huber, "mse": mse}


class TensorBatch(NamedTuple):
    """A replay `Batch` on the learner's device.

    obs, next_obs: uint8[B, C, H, W] (the network scales them) | float32[B, D];
    action: int64[B]; reward, discount, weight: float32[B].
    """

    obs: Tensor
    action: Tensor
    reward: Tensor
    discount: Tensor
    next_obs: Tensor
    weight: Tensor


class LossOutput(NamedTuple):
    """Per-sample results of a loss; all float[B], only `loss` carries gradients."""

    loss: Tensor  # unweighted per-sample loss (the learner applies batch.weight)
    q: Tensor  # Q_online(obs, action), detached
    td_error: Tensor  # target - q, detached (priorities use its absolute value)


class LossFn(Protocol):
    """What the learner minimizes: `(online, target, batch) -> LossOutput`.

    Called with `online` in train mode (its forward builds the graph) and
    `target` in eval mode.
    """

    def __call__(self, online: nn.Module, target: nn.Module, batch: TensorBatch) -> LossOutput:
        ...


class QLearningLoss:
    """One-step or n-step (Double) Q-learning loss with an elementwise penalty.

    Args:
        elementwise: penalty applied to the TD error, e.g. `huber` or `mse`.
        double: use Double DQN targets (one extra no-grad online forward on next_obs).
    """

    def __init__(self, elementwise: Callable[[Tensor], Tensor], double: bool = False) -> None:
        self.elementwise = elementwise
        self.double = double

    def __call__(self, online: nn.Module, target: nn.Module, batch: TensorBatch) -> LossOutput:
        q_all = online(batch.obs)  # float[B, A], with grad
        q = q_all.gather(1, batch.action.unsqueeze(1)).squeeze(1)
        with torch.no_grad():
            q_next_target = target(batch.next_obs)
            if self.double:
                y = double_q_target(online(batch.next_obs), q_next_target, batch.reward,
                                    batch.discount)
            else:
                y = q_learning_target(q_next_target, batch.reward, batch.discount)
        td = y.to(q.dtype) - q
        return LossOutput(self.elementwise(td), q.detach(), td.detach())

    def __repr__(self) -> str:
        name = getattr(self.elementwise, "__name__", repr(self.elementwise))
        return f"QLearningLoss({name}, double={self.double})"


def make_loss(cfg: LearnerConfig) -> LossFn:
    """The loss a learner config asks for (`cfg.loss`, `cfg.double_dqn`)."""
    return QLearningLoss(ELEMENTWISE_LOSSES[cfg.loss], double=cfg.double_dqn)
