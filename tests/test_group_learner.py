"""The grouped Q-network and learner: each member is its solo network and learner, and no
member's numbers depend on another member's minibatch (every norm)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from wnrl.config import LearnerConfig
from wnrl.core.types import Batch
from wnrl.group.learner import GroupLearner
from wnrl.group.network import GroupedForward, fold_stacked, folded_template, stack_members
from wnrl.learner import Learner
from wnrl.networks import make_q_network
from wnrl.nn import data_dependent_init
from wnrl.recipe import NORMS

SHAPES = pytest.mark.parametrize("obs_shape", [(6,), (2, 4, 10, 10), (4, 36, 36)],
                                 ids=["mlp", "minatar", "nature_cnn"])
K, A = 3, 4


def _obs(obs_shape: tuple, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if len(obs_shape) == 4:
        return (rng.random((n, *obs_shape)) < 0.3).astype(np.uint8)
    if len(obs_shape) == 3:
        return rng.integers(0, 256, (n, *obs_shape), dtype=np.uint8)
    return rng.normal(size=(n, *obs_shape)).astype(np.float32)


def _batch(obs_shape: tuple, seed: int, n: int = 16) -> Batch:
    rng = np.random.default_rng(seed + 1)
    return Batch(_obs(obs_shape, n, seed), rng.integers(0, A, n), rng.normal(size=n).astype(
        np.float32), np.full(n, 0.99, np.float32), _obs(obs_shape, n, seed + 7),
        (rng.random(n) + 0.5).astype(np.float32), np.arange(n))


def _nets(obs_shape: tuple, norm: str) -> list:
    nets = []
    for k in range(K):
        torch.manual_seed(k)
        net = make_q_network(obs_shape, A, norm=norm, dueling=norm == "layer")
        if "weight" in norm:
            data_dependent_init(net, _obs(obs_shape, 16, 50 + k))
        nets.append(net)
    return nets


def _cfg(**kw: object) -> LearnerConfig:
    return LearnerConfig(device="cpu", compile="false", precision="fp32", cuda_graph="false",
                         target_update_period=3, max_grad_norm=1.0, **kw)


@SHAPES
@pytest.mark.parametrize("norm", NORMS)
def test_grouped_forward_is_each_members_solo_network(obs_shape: tuple, norm: str) -> None:
    """Q-values in train and eval mode, running statistics, and the folded (acting) form."""
    nets = _nets(obs_shape, norm)
    params, buffers = stack_members(nets)
    tensors = {**params, **buffers}
    forward = GroupedForward(nets[0], K)
    obs = torch.as_tensor(np.stack([_obs(obs_shape, 8, 10 + k) for k in range(K)]))
    with torch.no_grad():
        for training in (True, False):
            q = forward(tensors, obs, training)
            assert q.shape == (K, 8, A)
            for k, net in enumerate(nets):
                torch.testing.assert_close(q[k], net.train(training)(obs[k]), rtol=1e-5,
                                           atol=1e-5)
                for name, t in net.state_dict().items():  # running stats moved alike
                    torch.testing.assert_close(tensors[name][k], t, rtol=1e-5, atol=1e-6)
        folded = GroupedForward(folded_template(nets[0]), K)
        torch.testing.assert_close(folded({**fold_stacked(nets[0], params), **buffers}, obs,
                                          False), forward(tensors, obs, False),
                                   rtol=1e-5, atol=1e-5)


@SHAPES
@pytest.mark.parametrize("norm", NORMS)
def test_no_member_depends_on_another_members_batch(obs_shape: tuple, norm: str) -> None:
    """Change member 1's minibatch: members 0 and 2 get bit-identical losses, TD errors,
    gradient norms, Q-values and weights after the update; member 1's change."""
    nets = _nets(obs_shape, norm)
    batches = [_batch(obs_shape, 100 + k) for k in range(K)]
    other = list(batches)
    other[1] = _batch(obs_shape, 999)
    runs = []
    for bs in (batches, other):
        learner = GroupLearner([copy.deepcopy(n) for n in nets], _cfg(double_dqn=True),
                               [1e-3] * K)
        metrics = learner.update(bs)
        probe = torch.as_tensor(np.stack([_obs(obs_shape, 5, 7)] * K))
        with torch.no_grad():
            q = learner.forward({**learner.params, **learner.buffers}, probe, training=False)
        runs.append((metrics, q, {n: p.detach().clone() for n, p in learner.params.items()}))
    (m_a, q_a, w_a), (m_b, q_b, w_b) = runs
    for k in (0, 2):
        assert m_a[k].loss == m_b[k].loss and m_a[k].grad_norm == m_b[k].grad_norm
        np.testing.assert_array_equal(m_a[k].td_abs, m_b[k].td_abs)
        assert torch.equal(q_a[k], q_b[k])
        assert all(torch.equal(w_a[n][k], w_b[n][k]) for n in w_a)
    assert m_a[1].loss != m_b[1].loss
    assert not all(torch.equal(w_a[n][1], w_b[n][1]) for n in w_a)


@pytest.mark.parametrize("optimizer", ["adam", "adamax", "rmsprop"])
@pytest.mark.parametrize("norm", NORMS)
def test_members_follow_solo_learners_with_their_rates(norm: str, optimizer: str) -> None:
    """Ten updates (target syncs, clipping, per-member rates): every member within 1e-5 of
    a solo Learner fed its batches; its state dict loads into that solo learner."""
    obs_shape, lrs = (6,), [1e-3, 3e-4, 1e-4]
    nets = _nets(obs_shape, norm)
    group = GroupLearner([copy.deepcopy(n) for n in nets], _cfg(optimizer=optimizer), lrs)
    solos = [Learner(copy.deepcopy(n), _cfg(optimizer=optimizer, lr=lr))
             for n, lr in zip(nets, lrs)]
    for i in range(10):
        bs = [_batch(obs_shape, 10 * i + k) for k in range(K)]
        for solo, b, m in zip(solos, bs, group.update(bs)):
            assert m.loss == pytest.approx(solo.update(b).loss, rel=1e-5, abs=1e-7)
    for k, solo in enumerate(solos):
        mine, theirs = group.member_state_dict(k), solo.state_dict()
        assert mine["num_updates"] == theirs["num_updates"] == 10
        for part in ("online", "target"):
            assert list(mine[part]) == list(theirs[part])
            for name, t in theirs[part].items():
                torch.testing.assert_close(mine[part][name], t, rtol=1e-5, atol=1e-6)
        assert mine["optimizer"]["param_groups"][0]["lr"] == lrs[k]
        solo.load_state_dict(mine)  # a member's checkpoint is a solo learner's


def test_a_solo_state_loads_into_one_member_only() -> None:
    nets = _nets((6,), "weight")
    group = GroupLearner([copy.deepcopy(n) for n in nets], _cfg(), [1e-3] * K)
    solo = Learner(copy.deepcopy(nets[2]), _cfg())
    for i in range(3):
        solo.update(_batch((6,), i))
    group.load_member_state_dict(0, solo.state_dict())
    with pytest.raises(ValueError, match="update together"):
        group.load_member_state_dict(1, Learner(copy.deepcopy(nets[1]), _cfg()).state_dict())
    state = group.member_state_dict(0)
    for name, t in solo.state_dict()["online"].items():
        assert torch.equal(state["online"][name], t)
    assert torch.equal(group.member_state_dict(1)["online"]["torso.0.v"],
                       nets[1].state_dict()["torso.0.v"])


@pytest.mark.parametrize("norm", ["weight", "weight+mean_only"])
def test_data_dependent_init_on_each_members_own_batch(norm: str) -> None:
    obs_shape = (2, 4, 10, 10)
    nets = [make_q_network(obs_shape, A, norm=norm) for _ in range(K)]
    group = GroupLearner([copy.deepcopy(n) for n in nets], _cfg(), [1e-3] * K)
    for k in range(K):
        x = torch.as_tensor(_obs(obs_shape, 64, k))
        group.data_dependent_init(k, x, generator=torch.Generator().manual_seed(k))
        data_dependent_init(nets[k], x, generator=torch.Generator().manual_seed(k))
    for k in range(K):
        for name, t in nets[k].state_dict().items():
            assert torch.equal(group.member_state_dict(k)["online"][name], t), (k, name)
            assert torch.equal(group.member_state_dict(k)["target"][name], t), (k, name)


def test_target_syncs_and_member_loads_write_in_place() -> None:
    """A graphed group update reads the target tensors where they are, so a sync and a
    member load must write into them, not replace them (their storage is checked), and
    a sync still makes every target its online network."""
    obs_shape = (2, 4, 10, 10)
    group = GroupLearner(_nets(obs_shape, "weight"), _cfg(), [1e-3] * K)
    targets = {**group._target_params, **group._target_tensors}
    where = {n: t.data_ptr() for n, t in targets.items()}
    for i in range(3):  # the third update syncs (target_update_period=3)
        group.update([_batch(obs_shape, 10 * i + k) for k in range(K)])
    for n, t in group.params.items():
        assert torch.equal(group._target_params[n], t.detach()), n
    folded = fold_stacked(group.template, group.params)
    for n, t in folded.items():
        assert torch.equal(group._target_tensors[n], t), n
    group.load_member_state_dict(1, group.member_state_dict(1))
    now = {**group._target_params, **group._target_tensors}
    assert {n: t.data_ptr() for n, t in now.items()} == where


def test_cuda_graph_setting_on_a_cpu_group() -> None:
    from wnrl.config import ConfigError

    nets = _nets((6,), "none")
    auto = GroupLearner(copy.deepcopy(nets), LearnerConfig(device="cpu", cuda_graph="auto"),
                        [1e-3] * K)
    assert not auto.graphed and auto.mode == "eager fp32"
    with pytest.raises(ConfigError, match="learner.cuda_graph=true needs a CUDA device"):
        GroupLearner(nets, LearnerConfig(device="cpu", cuda_graph="true"), [1e-3] * K)


class _NoCuda:
    """Stand-ins for the CUDA stream and graph calls `GraphedUpdate` makes, so its warm-up
    and capture run eagerly on the CPU (the 'captured' updates are real updates here)."""

    class Stream:
        def __init__(self, device: object = None) -> None:
            pass

        def wait_stream(self, other: object) -> None:
            pass

    class CUDAGraph:
        def replay(self) -> None:
            pass

    @staticmethod
    def stream(s: object) -> object:
        import contextlib
        return contextlib.nullcontext()

    @staticmethod
    def graph(g: object, **kw: object) -> object:
        import contextlib
        return contextlib.nullcontext()

    @staticmethod
    def current_stream(device: object = None) -> _NoCuda.Stream:
        return _NoCuda.Stream()


@pytest.mark.parametrize("norm", ["weight", "batch", "weight+mean_only"])
def test_a_graph_capture_leaves_the_group_as_it_was(norm: str, monkeypatch) -> None:
    """`GraphedUpdate` runs 3 warm-up updates and the captured one, then puts back every
    tensor the group lists as changed by an update (`_state_tensors`). Run eagerly on the
    CPU (stand-in stream and graph calls), those 4 updates must leave no trace: weights,
    running statistics, optimizer state and the next update equal those of a group that
    never captured, at the first update (optimizer state made by the warm-up) and later."""
    from wnrl.cuda_graph import GraphedUpdate

    for name in ("Stream", "CUDAGraph", "stream", "graph", "current_stream"):
        monkeypatch.setattr(torch.cuda, name, getattr(_NoCuda, name))
    obs_shape = (2, 4, 10, 10)
    nets = _nets(obs_shape, norm)
    plain = GroupLearner(copy.deepcopy(nets), _cfg(), [1e-3, 3e-4, 2e-3])
    captured = GroupLearner(copy.deepcopy(nets), _cfg(), [1e-3, 3e-4, 2e-3])
    for i in range(4):
        batches = [_batch(obs_shape, 10 * i + k) for k in range(K)]
        GraphedUpdate(captured._step, [captured._stack(batches)], captured._state_tensors,
                      captured._zero_grad)
        for a, b in zip(plain.update(batches), captured.update(batches)):
            assert a.loss == b.loss and np.array_equal(a.td_abs, b.td_abs), i
        for n, t in {**plain.params, **plain.buffers}.items():
            assert torch.equal(t, {**captured.params, **captured.buffers}[n]), (i, n)
