"""wnrl.noise: batch dependence per norm kind and mode; the bn_dqn target network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from wnrl.agents import get_agent

from wnrl.config import LearnerConfig
from wnrl.learner import Learner
from wnrl.networks import make_q_network
from wnrl.noise import batch_dependence, noise_metrics, td_target_noise
from wnrl.replay import Batch
from wnrl.timing import median_time

SHAPES = pytest.mark.parametrize("obs_shape", [(6,), (4, 36, 36)], ids=["mlp", "cnn"])


def states(obs_shape: tuple[int, ...], n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if len(obs_shape) == 3:
        return torch.randint(0, 256, (n, *obs_shape), generator=g, dtype=torch.uint8)
    return torch.randn(n, *obs_shape, generator=g)


def trained_net(norm: str, obs_shape: tuple[int, ...]) -> nn.Module:
    """A network whose running statistics have moved off their initial values."""
    torch.manual_seed(0)
    net = make_q_network(obs_shape, 3, norm=norm, hidden_sizes=(32, 32))
    with torch.no_grad():
        for i in range(3):
            net.train()(states(obs_shape, 16, 100 + i))
    return net


@SHAPES
@pytest.mark.parametrize("norm", ["none", "weight"])
def test_no_batch_dependence_without_batch_statistics(norm: str, obs_shape: tuple) -> None:
    net = trained_net(norm, obs_shape)
    m = batch_dependence(net, states(obs_shape, 3, 1), states(obs_shape, 40, 2), batch_size=8,
                         draws=4)
    assert m["q_std"] == 0.0 and m["action_flip_frac"] == 0.0
    assert m["train_eval_gap"] == 0.0 and m["q_abs_mean"] > 0


@SHAPES
@pytest.mark.parametrize("norm", ["batch", "weight+mean_only"])
def test_batch_statistics_make_q_depend_on_the_batch(norm: str, obs_shape: tuple) -> None:
    net = trained_net(norm, obs_shape)
    probe, pool = states(obs_shape, 3, 1), states(obs_shape, 40, 2)
    train = batch_dependence(net, probe, pool, batch_size=8, draws=4)
    assert train["q_std"] > 1e-4 and train["q_std_rel"] > 1e-4 and train["train_eval_gap"] > 0
    evaluated = batch_dependence(net, probe, pool, batch_size=8, draws=4, train=False)
    assert evaluated["q_std"] == 0.0 and evaluated["train_eval_gap"] == 0.0


def test_noise_falls_with_minibatch_size() -> None:
    net = trained_net("batch", (6,))
    probe, pool = states((6,), 4, 1), states((6,), 600, 2)
    small = batch_dependence(net, probe, pool, batch_size=4, draws=8)["q_std"]
    large = batch_dependence(net, probe, pool, batch_size=512, draws=8)["q_std"]
    assert large < small / 3


def test_measuring_leaves_the_network_untouched() -> None:
    net = trained_net("batch", (6,)).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    noise_metrics(net, states((6,), 2, 1), states((6,), 20, 2), 8, target=net, draws=2)
    assert not net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_td_target_noise_is_zero_for_an_eval_target_only() -> None:
    target = trained_net("batch", (6,)).eval()
    m = td_target_noise(target, states((6,), 3, 1), states((6,), 40, 2), 8, gamma=0.9, draws=4)
    assert m["td_target_std"] == 0.0 and m["td_target_std_if_train"] > 1e-4


def test_batch_dependence_rejects_too_few_companions() -> None:
    with pytest.raises(ValueError, match="companion"):
        batch_dependence(trained_net("none", (6,)), states((6,), 2, 1), states((6,), 3, 2), 8)


def replay_batch(seed: int, b: int = 16) -> Batch:
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((2, b, 6)).astype(np.float32)
    return Batch(obs=obs[0], action=rng.integers(3, size=b),
                 reward=rng.standard_normal(b).astype(np.float32),
                 discount=np.full(b, 0.99, np.float32), next_obs=obs[1],
                 weight=np.ones(b, np.float32), index=np.arange(b))


def test_bn_dqn_target_is_eval_with_synced_running_statistics() -> None:
    torch.manual_seed(0)
    net = make_q_network((6,), 3, norm=get_agent("bn_dqn").norm, hidden_sizes=(16,))
    learner = Learner(net, LearnerConfig(device="cpu", lr=1e-3, target_update_period=3))
    bn = [k for k in learner.online.state_dict() if "running" in k]
    assert bn, "bn_dqn's network has batch-norm running statistics"
    for i in range(2):
        learner.update(replay_batch(i))
    tgt, onl = learner.target.state_dict(), learner.online.state_dict()
    assert all(not torch.equal(tgt[k], onl[k]) for k in bn)  # between syncs: stale
    learner.update(replay_batch(2))  # the 3rd update syncs
    tgt, onl = learner.target.state_dict(), learner.online.state_dict()
    assert not any(m.training for m in learner.target.modules())
    assert all(torch.equal(tgt[k], onl[k]) for k in tgt)
    assert learner.online.training


def test_median_time_counts_calls() -> None:
    calls: list[int] = []
    t = median_time(lambda: calls.append(1), repeats=5, warmup=2)
    assert len(calls) == 7 and t >= 0.0
