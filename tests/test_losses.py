"""TD targets and losses against hand-computed numbers and autograd."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wnrl.config import LearnerConfig
from wnrl.losses import (
    QLearningLoss,
    TensorBatch,
    double_q_target,
    huber,
    make_loss,
    mse,
    q_learning_target,
)

Q_NEXT_TARGET = torch.tensor([[1.0, 3.0], [2.0, -1.0]])
REWARD = torch.tensor([1.0, 0.5])
DISCOUNT = torch.tensor([0.9, 0.5])


def test_q_learning_target_by_hand() -> None:
    y = q_learning_target(Q_NEXT_TARGET, REWARD, DISCOUNT)
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.9 * 3.0, 0.5 + 0.5 * 2.0]))


def test_terminal_discount_zero_gives_reward() -> None:
    y = q_learning_target(Q_NEXT_TARGET, REWARD, torch.zeros(2))
    torch.testing.assert_close(y, REWARD)


def test_double_q_target_by_hand() -> None:
    q_next_online = torch.tensor([[5.0, 0.0], [0.0, 1.0]])  # picks actions 0 and 1
    y = double_q_target(q_next_online, Q_NEXT_TARGET, REWARD, DISCOUNT)
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.9 * 1.0, 0.5 + 0.5 * -1.0]))


def test_double_q_target_matches_manual_gather() -> None:
    g = torch.Generator().manual_seed(0)
    online, target = torch.randn(16, 5, generator=g), torch.randn(16, 5, generator=g)
    r, d = torch.randn(16, generator=g), torch.rand(16, generator=g)
    manual = torch.stack([r[i] + d[i] * target[i, online[i].argmax()] for i in range(16)])
    torch.testing.assert_close(double_q_target(online, target, r, d), manual)


def test_huber_by_hand_and_vs_torch() -> None:
    x = torch.tensor([0.5, -2.0, 3.0])
    torch.testing.assert_close(huber(x), torch.tensor([0.125, 1.5, 2.5]))
    x = (torch.randn(64, generator=torch.Generator().manual_seed(1)) * 3).requires_grad_()
    ours, = torch.autograd.grad(huber(x).sum(), x)
    ref_x = x.detach().clone().requires_grad_()
    ref = nn.HuberLoss(reduction="none")(ref_x, torch.zeros(64))
    ref_grad, = torch.autograd.grad(ref.sum(), ref_x)
    torch.testing.assert_close(huber(x), ref)
    torch.testing.assert_close(ours, ref_grad)


def test_mse_by_hand() -> None:
    x = torch.tensor([0.5, -2.0, 3.0])
    torch.testing.assert_close(mse(x), torch.tensor([0.25, 4.0, 9.0]))
    torch.testing.assert_close(mse(x), F.mse_loss(x, torch.zeros(3), reduction="none"))


def _linear(weight: list[list[float]]) -> nn.Linear:
    net = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor(weight))
    return net


@pytest.mark.parametrize("double", [False, True])
@pytest.mark.parametrize("loss", ["huber", "mse"])
def test_make_loss_by_hand(loss: str, double: bool) -> None:
    # Q(s) = W s with s one-hot, so Q rows are columns of W.
    online = _linear([[1.0, 0.0], [0.0, 4.0]])  # Q(e0) = [1, 0], Q(e1) = [0, 4]
    target = _linear([[2.0, 1.0], [3.0, -1.0]])  # Q(e0) = [2, 3], Q(e1) = [1, -1]
    batch = TensorBatch(
        obs=torch.tensor([[1.0, 0.0], [0.0, 1.0]]), action=torch.tensor([0, 1]),
        reward=torch.tensor([1.0, 0.0]), discount=torch.tensor([0.5, 0.9]),
        next_obs=torch.tensor([[0.0, 1.0], [1.0, 0.0]]), weight=torch.ones(2))
    out = make_loss(LearnerConfig(loss=loss, double_dqn=double))(online, target, batch)
    q = torch.tensor([1.0, 4.0])
    if double:  # online picks argmax of [0, 4] -> 1 and of [1, 0] -> 0
        y = torch.tensor([1.0 + 0.5 * -1.0, 0.0 + 0.9 * 2.0])
    else:
        y = torch.tensor([1.0 + 0.5 * 1.0, 0.0 + 0.9 * 3.0])
    td = y - q
    torch.testing.assert_close(out.q, q)
    torch.testing.assert_close(out.td_error, td)
    torch.testing.assert_close(out.loss, huber(td) if loss == "huber" else td**2)
    assert out.loss.requires_grad and not out.td_error.requires_grad and not out.q.requires_grad


def test_loss_gradient_flows_only_into_online() -> None:
    online, target = _linear([[1.0, 2.0], [3.0, 4.0]]), _linear([[1.0, 2.0], [3.0, 4.0]])
    x = torch.eye(2)
    batch = TensorBatch(x, torch.tensor([0, 1]), torch.ones(2), torch.ones(2), x, torch.ones(2))
    QLearningLoss(huber, double=True)(online, target, batch).loss.sum().backward()
    assert online.weight.grad is not None and target.weight.grad is None
