"""Learner: target sync (parameters and buffers), optimizers, weighting, clipping, state."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
from torch import nn

from wnrl.config import LearnerConfig
from wnrl.accel import resolve_device
from wnrl.learner import Learner, UpdateMetrics
from wnrl.losses import make_loss
from wnrl.networks import make_q_network
from wnrl.nn import fold_weight_norm
from wnrl.replay import Batch

OBS_DIM, NUM_ACTIONS = 4, 2


def bn_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(OBS_DIM, 16), nn.BatchNorm1d(16), nn.ReLU(),
                         nn.Linear(16, NUM_ACTIONS))


def make_batch(b: int = 8, seed: int = 0, weight: np.ndarray | None = None,
               obs_shape: tuple[int, ...] = (OBS_DIM,), num_actions: int = NUM_ACTIONS) -> Batch:
    rng = np.random.default_rng(seed)
    if len(obs_shape) == 3:
        obs = rng.integers(0, 256, (2, b, *obs_shape), dtype=np.uint8)
    else:
        obs = rng.standard_normal((2, b, *obs_shape)).astype(np.float32)
    return Batch(obs=obs[0], action=rng.integers(num_actions, size=b),
                 reward=rng.standard_normal(b).astype(np.float32),
                 discount=np.full(b, 0.99, np.float32), next_obs=obs[1],
                 weight=np.ones(b, np.float32) if weight is None else weight.astype(np.float32),
                 index=np.arange(b))


def cfg(**kw: object) -> LearnerConfig:
    return LearnerConfig(**{"device": "cpu", "lr": 1e-2, **kw})


def states_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def all_eval(m: nn.Module) -> bool:
    return not any(mod.training for mod in m.modules())


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_target_synced_exactly_every_c_updates_with_buffers() -> None:
    c = 3
    learner = Learner(bn_net(), cfg(target_update_period=c))
    assert states_equal(learner.target, learner.online) and all_eval(learner.target)
    last_sync = copy.deepcopy(learner.target)
    for k in range(1, 8):
        learner.update(make_batch(seed=k))
        assert learner.num_updates == k
        assert all_eval(learner.target) and learner.online.training
        if k % c == 0:
            assert states_equal(learner.target, learner.online)  # running stats included
            last_sync = copy.deepcopy(learner.target)
        else:
            assert states_equal(learner.target, last_sync)
            assert not states_equal(learner.target, learner.online)
    bn_online, bn_target = learner.online[1], learner.target[1]
    assert int(bn_online.num_batches_tracked) == 7 and int(bn_target.num_batches_tracked) == 6


def test_target_returns_to_eval_if_switched_to_train() -> None:
    learner = Learner(bn_net(), cfg(target_update_period=1))
    learner.target.train()
    learner.update(make_batch())
    assert all_eval(learner.target)


@pytest.mark.parametrize(
    ("name", "cls", "expected"),
    [("adam", torch.optim.Adam, {"betas": (0.5, 0.95), "eps": 1e-5, "fused": True}),
     ("adamax", torch.optim.Adamax, {"betas": (0.5, 0.95), "eps": 1e-5}),
     ("rmsprop", torch.optim.RMSprop, {"alpha": 0.95, "eps": 1e-5, "centered": False})],
)
def test_optimizer_table(name: str, cls: type, expected: dict) -> None:
    learner = Learner(bn_net(), cfg(optimizer=name, lr=3e-4, beta1=0.5, beta2=0.95, eps=1e-5))
    opt = learner.optimizer
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert group["lr"] == 3e-4
    for key, value in expected.items():
        assert group[key] == value, key
    assert learner.update(make_batch()).loss > 0


@pytest.mark.parametrize("optimizer", ["adam", "adamax", "rmsprop"])
def test_update_decreases_loss_on_fixed_batch(optimizer: str) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(OBS_DIM, 32), nn.ReLU(), nn.Linear(32, NUM_ACTIONS))
    learner = Learner(net, cfg(optimizer=optimizer, lr=1e-2, target_update_period=10**6))
    batch = make_batch(b=16)
    first = learner.update(batch).loss
    for _ in range(100):
        last = learner.update(batch).loss
    assert last < 0.2 * first


def test_metrics_match_manual_computation() -> None:
    learner = Learner(bn_net(), cfg(loss="huber"))
    batch = make_batch(b=8, weight=np.linspace(0.1, 2.0, 8))
    online, target = copy.deepcopy(learner.online), copy.deepcopy(learner.target)
    tb = learner.to_tensors(batch)
    out = make_loss(learner.cfg)(online, target, tb)
    m = learner.update(batch)
    assert isinstance(m, UpdateMetrics)
    assert m.loss == pytest.approx(float((tb.weight * out.loss).mean().detach()), rel=1e-5)
    assert m.q_mean == pytest.approx(float(out.q.mean()), rel=1e-5, abs=1e-6)
    assert m.td_abs.dtype == np.float32 and m.td_abs.shape == (8,)
    np.testing.assert_allclose(m.td_abs, out.td_error.abs().numpy(), rtol=1e-5, atol=1e-6)
    assert set(m.scalars()) == {"loss", "q_mean", "grad_norm"}
    assert all(np.isfinite(v) for v in m.scalars().values())


def test_zero_importance_weights_leave_the_network_unchanged() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(OBS_DIM, 8), nn.ReLU(), nn.Linear(8, NUM_ACTIONS))
    learner = Learner(net, cfg())
    before = copy.deepcopy(learner.online)
    m = learner.update(make_batch(weight=np.zeros(8)))
    assert m.loss == 0.0 and m.grad_norm == 0.0 and m.td_abs.max() > 0
    assert states_equal(before, learner.online)


@pytest.mark.parametrize("max_grad_norm", [None, 1e-3])
def test_grad_norm_reported_before_clipping(max_grad_norm: float | None) -> None:
    learner = Learner(bn_net(), cfg(max_grad_norm=max_grad_norm))
    batch = make_batch()
    probe = Learner(copy.deepcopy(learner.online), cfg(max_grad_norm=None))
    tb = probe.to_tensors(batch)
    (tb.weight * make_loss(probe.cfg)(probe.online, probe.target, tb).loss).mean().backward()
    unclipped = float(torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for p in probe.online.parameters()])))
    m = learner.update(batch)
    assert m.grad_norm == pytest.approx(unclipped, rel=1e-5)
    applied = float(torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for p in learner.online.parameters()])))
    expected = unclipped if max_grad_norm is None else max_grad_norm
    assert applied == pytest.approx(expected, rel=1e-4)


def test_weights_are_the_folded_online_network_on_cpu_without_sharing() -> None:
    learner = Learner(bn_net(), cfg())
    learner.update(make_batch())
    w = learner.weights()
    ref = fold_weight_norm(learner.online).state_dict()
    assert w.keys() == ref.keys()
    for k in w:
        assert w[k].device.type == "cpu" and torch.equal(w[k], ref[k])
        w[k].zero_()
    assert not torch.equal(learner.online[0].weight, torch.zeros_like(learner.online[0].weight))


def test_state_dict_round_trip_continues_identically() -> None:
    a = Learner(bn_net(0), cfg(optimizer="adamax", target_update_period=2))
    for k in range(3):
        a.update(make_batch(seed=k))
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = Learner(bn_net(1), cfg(optimizer="adamax", target_update_period=2))
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert b.num_updates == 3 and all_eval(b.target)
    for k in range(3, 5):
        ma, mb = a.update(make_batch(seed=k)), b.update(make_batch(seed=k))
        assert ma.scalars() == mb.scalars()
    assert states_equal(a.online, b.online) and states_equal(a.target, b.target)


@pytest.mark.parametrize("double_dqn", [False, True])
@pytest.mark.parametrize("norm", ["none", "weight", "batch", "weight+mean_only"])
@pytest.mark.parametrize("obs_shape", [(4,), (4, 84, 84)], ids=["mlp", "atari"])
def test_real_networks_update_and_fold(norm: str, obs_shape: tuple[int, ...],
                                       double_dqn: bool) -> None:
    torch.manual_seed(0)
    net = make_q_network(obs_shape, 3, norm=norm)
    learner = Learner(net, cfg(lr=1e-4, double_dqn=double_dqn, target_update_period=1))
    batch = make_batch(b=4, obs_shape=obs_shape, num_actions=3)
    m = learner.update(batch)
    assert np.isfinite(list(m.scalars().values())).all() and m.td_abs.shape == (4,)
    acting = fold_weight_norm(make_q_network(obs_shape, 3, norm=norm)).eval()
    acting.load_state_dict(learner.weights())
    obs = torch.from_numpy(batch.obs)
    with torch.no_grad():
        torch.testing.assert_close(acting(obs), learner.online.eval()(obs), rtol=1e-4, atol=1e-5)
