"""make_q_network: shapes, layers per norm kind, batch (in)dependence, copies, dueling head."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from wnrl.networks import NORM_KINDS, DuelingHead, make_q_network
from wnrl.nn import MeanOnlyBatchNorm, data_dependent_init, fold_weight_norm, is_weight_normalized
from wnrl.recipe import NORMS

IMAGE, VECTOR, MINATAR = (4, 84, 84), (6,), (2, 4, 10, 10)  # MinAtar: 2 stacked 4-channel grids
OBS = pytest.mark.parametrize("obs_shape", [IMAGE, VECTOR, MINATAR], ids=["cnn", "mlp", "minatar"])
GRIDS = pytest.mark.parametrize("obs_shape", [IMAGE, MINATAR], ids=["cnn", "minatar"])
NORM = pytest.mark.parametrize("norm", NORMS)
BATCH_DEPENDENT = {"none": False, "weight": False, "batch": True, "weight+mean_only": True,
                   "layer": False}
A = 5


def _obs(obs_shape: tuple[int, ...], n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if len(obs_shape) == 3:
        return torch.randint(0, 256, (n, *obs_shape), dtype=torch.uint8, generator=gen)
    if len(obs_shape) == 4:  # MinAtar grids: 0/1 bytes, sparse like real frames
        return (torch.rand((n, *obs_shape), generator=gen) < 0.2).to(torch.uint8)
    return torch.randn(n, *obs_shape, generator=gen)


def _net(obs_shape: tuple[int, ...], norm: str, dueling: bool = False, **kw) -> nn.Module:
    torch.manual_seed(0)
    net = make_q_network(obs_shape, A, norm=norm, dueling=dueling, **kw)
    if "weight" in norm:
        data_dependent_init(net, _obs(obs_shape, 8, seed=1))
    return net


def test_norm_table_covers_the_recipe_norms_and_rejects_others() -> None:
    assert tuple(NORM_KINDS) == NORMS
    with pytest.raises(ValueError, match="weight\\+mean_only"):
        make_q_network(IMAGE, A, norm="group")
    with pytest.raises(ValueError, match="obs_shape"):
        make_q_network((84, 84), A)
    with pytest.raises(ValueError, match="too small"):
        make_q_network((4, 20, 20), A)


@pytest.mark.parametrize("dueling", [False, True])
@NORM
@OBS
def test_output_shape_dtype_and_layers(obs_shape: tuple, norm: str, dueling: bool) -> None:
    net = _net(obs_shape, norm, dueling)
    q = net(_obs(obs_shape, 3))
    assert q.shape == (3, A) and q.dtype == torch.float32
    mods = list(net.modules())
    hidden = 4 if len(obs_shape) == 3 else 2  # Nature: 3 convs + fc; MinAtar: conv + fc
    heads = 2 if dueling else 1
    n_wn = sum(is_weight_normalized(m) for m in mods)
    n_plain = sum(type(m) in (nn.Linear, nn.Conv2d) for m in mods)
    n_bn = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in mods)
    n_mobn = sum(isinstance(m, MeanOnlyBatchNorm) for m in mods)
    n_ln = sum(isinstance(m, (nn.LayerNorm, nn.GroupNorm)) for m in mods)
    expected = {  # (WN layers, plain layers, batch norms, mean-only BNs, layer norms)
        "none": (0, hidden + heads, 0, 0, 0),
        "weight": (hidden + heads, 0, 0, 0, 0),
        "batch": (0, hidden + heads, hidden, 0, 0),
        "weight+mean_only": (hidden + heads, 0, 0, hidden, 0),
        "layer": (0, hidden + heads, 0, 0, hidden),
    }[norm]
    assert (n_wn, n_plain, n_bn, n_mobn, n_ln) == expected
    norms = (MeanOnlyBatchNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)
    if norm in ("batch", "weight+mean_only", "layer"):  # a layer followed by a norm: no bias
        assert [m.bias is None for m in mods if hasattr(m, "bias") and not
                isinstance(m, norms)] == [True] * hidden + [False] * heads


def test_image_scaling_and_stack_depth_and_mlp_sizes() -> None:
    net = make_q_network((2, 84, 84), A, norm="none")
    seen = {}
    net.torso[0].register_forward_pre_hook(lambda m, a: seen.update(x=a[0]))
    obs = torch.full((1, 2, 84, 84), 255, dtype=torch.uint8)
    q = net(obs)
    assert seen["x"].dtype == torch.float32 and seen["x"].max().item() == pytest.approx(1.0)
    torch.testing.assert_close(net(obs.float()), q)  # float obs hold the same 0..255 values
    mlp = make_q_network((3,), 2, norm="none", hidden_sizes=(7, 9, 11))
    assert [m.out_features for m in mlp.modules() if isinstance(m, nn.Linear)] == [7, 9, 11, 2]


@NORM
@OBS
def test_batch_independence_per_norm_kind(obs_shape: tuple, norm: str) -> None:
    """A state's Q-values within two different batches (and alone, where a norm allows it)."""
    net = _net(obs_shape, norm)
    state, others = _obs(obs_shape, 1, seed=2), _obs(obs_shape, 7, seed=3)
    with torch.no_grad():
        for training in (True, False):
            net.train(training)
            first = net(torch.cat([state, others]))[:1]
            last = net(torch.cat([others[:3] * 0.5, state]))[-1:]
            if BATCH_DEPENDENT[norm] and training:
                assert not torch.allclose(first, last, atol=1e-3, rtol=0), norm
            else:
                alone = net(state)
                torch.testing.assert_close(first, alone, atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(last, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dueling", [False, True])
@NORM
@GRIDS
def test_deepcopy_state_dict_and_fold_round_trips(obs_shape: tuple, norm: str,
                                                  dueling: bool) -> None:
    net = _net(obs_shape, norm, dueling)
    net(_obs(obs_shape, 8, seed=4))  # running statistics away from their init
    net.eval()
    x = _obs(obs_shape, 4, seed=5)
    with torch.no_grad():
        q = net(x)
        clone = copy.deepcopy(net)
        torch.testing.assert_close(clone(x), q, rtol=0, atol=0)
        next(clone.parameters()).add_(1.0)
        torch.testing.assert_close(net(x), q, rtol=0, atol=0)
        buf = io.BytesIO()
        torch.save(net.state_dict(), buf)
        buf.seek(0)
        torch.manual_seed(9)
        fresh = make_q_network(obs_shape, A, norm=norm, dueling=dueling).eval()
        fresh.load_state_dict(torch.load(buf, weights_only=True))
        torch.testing.assert_close(fresh(x), q, rtol=0, atol=0)
        folded = fold_weight_norm(net)
        assert not any(is_weight_normalized(m) for m in folded.modules())
        torch.testing.assert_close(folded(x), q, rtol=0, atol=0)


def test_minatar_network_shapes_and_unscaled_grids() -> None:
    """The MinAtar paper's network: conv 16x3x3 (S*C -> 16, 10x10 -> 8x8), fc 1024 -> 128, head;
    0/1 grids go in as they are (not divided by 255)."""
    net = make_q_network(MINATAR, A, norm="none")
    conv, fc, head = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride) == \
        (8, 16, (3, 3), (1, 1))
    assert (fc.in_features, fc.out_features, head.in_features, head.out_features) == \
        (16 * 8 * 8, 128, 128, A)
    assert sum(p.numel() for p in net.parameters()) == 8 * 16 * 9 + 16 + 1024 * 128 + 128 + 645
    seen = {}
    conv.register_forward_pre_hook(lambda m, a: seen.update(x=a[0]))
    obs = _obs(MINATAR, 3, seed=7)
    q = net(obs)
    assert seen["x"].shape == (3, 8, 10, 10) and seen["x"].max().item() == 1.0
    torch.testing.assert_close(seen["x"], obs.float().flatten(1, 2))
    torch.testing.assert_close(net(obs.float()), q)
    with pytest.raises(ValueError, match="smaller than"):
        make_q_network((1, 4, 2, 2), A)


@pytest.mark.parametrize("norm", ["weight", "weight+mean_only"])
def test_minatar_data_dependent_init_statistics(norm: str) -> None:
    """After init on a batch of grids every hidden unit's pre-activation (the WN layer's
    output, or the mean-only BN's after it) has mean 0 and std 1 on that batch (per channel
    for the conv); the head's Q-values have std 0.1."""
    torch.manual_seed(0)
    net = make_q_network(MINATAR, A, norm=norm)
    batch = _obs(MINATAR, 256, seed=8)
    data_dependent_init(net, batch)
    pre = [m for m in net.modules() if isinstance(m, MeanOnlyBatchNorm)] or \
        [m for m in net.modules() if is_weight_normalized(m)][:2]
    wn = [*pre, net.head]
    assert len(pre) == 2 and is_weight_normalized(net.head)
    out: dict[nn.Module, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda m, a, o: out.__setitem__(m, o.detach().clone()))
             for m in wn]
    with torch.no_grad():
        net.train()(batch)
    for h in hooks:
        h.remove()
    conv_t, fc_t, head_t = (out[m] for m in wn)
    for t, dims in ((conv_t, (0, 2, 3)), (fc_t, (0,))):
        torch.testing.assert_close(t.mean(dims), torch.zeros(t.shape[1]), atol=1e-4, rtol=0)
        torch.testing.assert_close(t.std(dims, correction=0), torch.ones(t.shape[1]),
                                   atol=1e-3, rtol=0)
    torch.testing.assert_close(head_t.std(0, correction=0), torch.full((A,), 0.1),
                               atol=1e-4, rtol=0)


@NORM
def test_channels_last_same_outputs_and_keys(norm: str) -> None:
    x = _obs(IMAGE, 4, seed=6)
    nets = [_net(IMAGE, norm, channels_last=cl).eval() for cl in (False, True)]
    assert nets[0].state_dict().keys() == nets[1].state_dict().keys()
    nets[1].load_state_dict(nets[0].state_dict())
    with torch.no_grad():
        torch.testing.assert_close(nets[1](x), nets[0](x), atol=1e-5, rtol=1e-5)


@NORM
def test_dueling_head_is_value_plus_centred_advantage(norm: str) -> None:
    net = _net(VECTOR, norm, dueling=True).eval()
    head = net.head
    assert isinstance(head, DuelingHead)
    with torch.no_grad():
        features = torch.relu(torch.randn(10, 128))
        q, value, adv = head(features), head.value(features), head.advantage(features)
    assert q.shape == (10, A) and value.shape == (10, 1) and adv.shape == (10, A)
    torch.testing.assert_close(q.mean(dim=1, keepdim=True), value)
    torch.testing.assert_close(q - value, adv - adv.mean(dim=1, keepdim=True))
