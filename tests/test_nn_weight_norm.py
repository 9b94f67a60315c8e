"""WNLinear / WNConv2d: the paper's formulas, torch's weight norm, copies, and folding."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as torch_weight_norm

from wnrl.nn import MeanOnlyBatchNorm, WNConv2d, WNLinear, fold_weight_norm, is_weight_normalized

# (WN layer, equivalent plain layer, input shape): linear, conv with stride+padding, grouped conv
LAYERS = {
    "linear": (lambda **kw: WNLinear(7, 5, **kw), lambda **kw: nn.Linear(7, 5, **kw), (6, 7)),
    "conv": (lambda **kw: WNConv2d(3, 4, 3, stride=2, padding=1, **kw),
             lambda **kw: nn.Conv2d(3, 4, 3, stride=2, padding=1, **kw), (2, 3, 9, 9)),
    "conv_grouped": (lambda **kw: WNConv2d(4, 6, (3, 2), dilation=2, groups=2, **kw),
                     lambda **kw: nn.Conv2d(4, 6, (3, 2), dilation=2, groups=2, **kw),
                     (2, 4, 8, 8)),
}


def _random_layer(name: str, dtype: torch.dtype = torch.float64, bias: bool = True) -> nn.Module:
    make, _, _ = LAYERS[name]
    layer = make(bias=bias, dtype=dtype)
    with torch.no_grad():
        layer.v.normal_()
        layer.g.uniform_(0.5, 2.0)
        if bias:
            layer.bias.normal_()
    return layer


def _input(name: str, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(LAYERS[name][2], dtype=dtype)


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1)


@pytest.mark.parametrize("name", LAYERS)
def test_parameters_shapes_and_plain_layer_shapes(name: str) -> None:
    make, make_plain, shape = LAYERS[name]
    layer, plain = make(), make_plain()
    assert layer.v.shape == plain.weight.shape
    assert layer.g.shape == (plain.weight.shape[0],)
    assert layer.bias.shape == plain.bias.shape
    assert make(bias=False).bias is None
    x = torch.randn(shape)
    assert layer(x).shape == plain(x).shape
    assert sorted(layer.state_dict()) == ["bias", "g", "v"]
    # default init is the plain layer's: w == v at construction
    torch.testing.assert_close(layer.weight, layer.v)


@pytest.mark.parametrize("name", LAYERS)
def test_weight_norm_is_g_and_forward_uses_it(name: str) -> None:
    layer, x = _random_layer(name), _input(name)
    torch.testing.assert_close(_flat_norm(layer.weight), layer.g)
    w = layer.g.view(-1, *[1] * (layer.v.dim() - 1)) * layer.v / _flat_norm(layer.v).view(
        -1, *[1] * (layer.v.dim() - 1))
    torch.testing.assert_close(layer.weight, w)
    plain = layer.to_plain()
    torch.testing.assert_close(layer(x), plain(x))


@pytest.mark.parametrize("name", LAYERS)
def test_paper_gradient_formulas_match_autograd(name: str) -> None:
    torch.manual_seed(1)
    layer, x = _random_layer(name), _input(name)
    target = torch.randn_like(layer(x))
    loss_of = lambda out: ((out - target) ** 2 * torch.arange(out.numel()).view_as(out)).sum()  # noqa: E731
    grad_v, grad_g = torch.autograd.grad(loss_of(layer(x)), [layer.v, layer.g])
    # grad_w of the same loss on the plain layer with the materialized weight
    plain = layer.to_plain()
    (grad_w,) = torch.autograd.grad(loss_of(plain(x)), [plain.weight])

    v, g = layer.v.detach().flatten(1), layer.g.detach()
    gw = grad_w.flatten(1)
    norm = v.norm(dim=1)
    paper_grad_g = (gw * v).sum(1) / norm
    paper_grad_v = (g / norm)[:, None] * gw - (g * paper_grad_g / norm**2)[:, None] * v
    torch.testing.assert_close(grad_g, paper_grad_g)
    torch.testing.assert_close(grad_v.flatten(1), paper_grad_v)
    # grad_v is orthogonal to w (and to v), per output unit
    w = layer.weight.detach().flatten(1)
    cos = (grad_v.flatten(1) * w).sum(1) / (grad_v.flatten(1).norm(dim=1) * w.norm(dim=1))
    assert cos.abs().max() < 1e-10


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name", LAYERS)
def test_same_outputs_and_gradients_as_torch_weight_norm(name: str, bias: bool) -> None:
    torch.manual_seed(2)
    _, make_plain, _ = LAYERS[name]
    ours, x = _random_layer(name, torch.float32, bias), _input(name, torch.float32)
    theirs = torch_weight_norm(make_plain(bias=bias))
    with torch.no_grad():
        pw = theirs.parametrizations.weight
        pw.original0.copy_(ours.g.view_as(pw.original0))
        pw.original1.copy_(ours.v)
        if bias:
            theirs.bias.copy_(ours.bias)
    out_ours, out_theirs = ours(x), theirs(x)
    torch.testing.assert_close(out_ours, out_theirs)
    grad_out = torch.randn_like(out_ours)
    out_ours.backward(grad_out)
    out_theirs.backward(grad_out)
    torch.testing.assert_close(ours.g.grad, pw.original0.grad.flatten())
    torch.testing.assert_close(ours.v.grad, pw.original1.grad)
    if bias:
        torch.testing.assert_close(ours.bias.grad, theirs.bias.grad)


@pytest.mark.parametrize("name", LAYERS)
def test_deepcopy_is_equal_and_independent(name: str) -> None:
    layer, x = _random_layer(name), _input(name)
    clone = copy.deepcopy(layer)
    torch.testing.assert_close(clone(x), layer(x), rtol=0, atol=0)
    with torch.no_grad():
        clone.g.mul_(2)
    assert not torch.allclose(clone(x), layer(x))


@pytest.mark.parametrize("name", LAYERS)
def test_state_dict_round_trip_through_bytes(name: str) -> None:
    layer, x = _random_layer(name), _input(name)
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    fresh = LAYERS[name][0](dtype=torch.float64)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    torch.testing.assert_close(fresh(x), layer(x), rtol=0, atol=0)


def _mixed_model() -> nn.Sequential:
    """WN conv with and without bias, mean-only BN, batch norm, plain layers, WN linear."""
    return nn.Sequential(
        WNConv2d(3, 8, 3, padding=1), nn.ReLU(),
        WNConv2d(8, 8, 3, stride=2, bias=False), MeanOnlyBatchNorm(8), nn.ReLU(),
        nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4), nn.Flatten(),
        nn.Sequential(WNLinear(4 * 4 * 4, 16), nn.ReLU(), WNLinear(16, 3)),
    )


def test_fold_gives_identical_outputs_plain_layers_and_leaves_source_untouched() -> None:
    torch.manual_seed(3)
    model = _mixed_model()
    x = torch.randn(5, 3, 10, 10)
    model(x)  # move the BN running stats away from their init
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_weight_norm(model)
    torch.testing.assert_close(folded(x), model(x), rtol=0, atol=0)
    assert not any(is_weight_normalized(m) for m in folded.modules())
    assert sum(is_weight_normalized(m) for m in model.modules()) == 4
    assert all(type(a) is type(b) or is_weight_normalized(a)
               for a, b in zip(model.modules(), folded.modules()))
    assert isinstance(folded[0], nn.Conv2d) and folded[2].bias is None
    assert isinstance(folded[8][2], nn.Linear)
    assert not folded.training and not folded[0].training
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the copy shares no storage with the source
    with torch.no_grad():
        for p in folded.parameters():
            p.add_(1.0)
    assert all(torch.equal(before[k], model.state_dict()[k]) for k in before)
    # a fresh fold of a model built alike loads the state dict (what actors do)
    torch.manual_seed(4)
    other = fold_weight_norm(_mixed_model()).eval()
    other.load_state_dict(fold_weight_norm(model).state_dict())
    torch.testing.assert_close(other(x), model(x), rtol=0, atol=0)


def test_fold_of_a_single_layer_and_training_mode() -> None:
    layer = _random_layer("linear", torch.float32)
    plain = fold_weight_norm(layer)
    assert type(plain) is nn.Linear and plain.training
    x = torch.randn(4, 7)
    torch.testing.assert_close(plain(x), layer(x), rtol=0, atol=0)
    torch.testing.assert_close(F.linear(x, layer.weight, layer.bias), layer(x))
