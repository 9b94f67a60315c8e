"""MeanOnlyBatchNorm: batch mean in training, running mean in eval, learned bias, no scale."""

from __future__ import annotations

import copy

import pytest
import torch

from wnrl.nn import MeanOnlyBatchNorm

# input shape and the dims the mean is taken over: features (2-D), channels (3-D, 4-D)
SHAPES = {"2d": ((16, 5), (0,)), "3d": ((8, 5, 7), (0, 2)), "4d": ((6, 5, 4, 3), (0, 2, 3))}


def _layer_with_bias(c: int = 5) -> MeanOnlyBatchNorm:
    layer = MeanOnlyBatchNorm(c)
    with torch.no_grad():
        layer.bias.copy_(torch.linspace(-1.0, 1.0, c))
    return layer


def _view(t: torch.Tensor, ndim: int) -> torch.Tensor:
    return t.view(1, -1, *[1] * (ndim - 2))


@pytest.mark.parametrize("shape,dims", SHAPES.values(), ids=SHAPES)
def test_train_subtracts_batch_mean_adds_bias_no_scale(shape: tuple, dims: tuple) -> None:
    torch.manual_seed(0)
    layer = _layer_with_bias()
    x = torch.randn(shape) * 3 + 2
    y = layer(x)
    expected = x - x.mean(dim=dims, keepdim=True) + _view(layer.bias, x.dim())
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(y.mean(dim=dims), layer.bias.detach())
    torch.testing.assert_close(y.std(dim=dims), x.std(dim=dims))  # no division by the std
    assert y.shape == x.shape and y.dtype == x.dtype


@pytest.mark.parametrize("shape,dims", SHAPES.values(), ids=SHAPES)
def test_running_mean_after_several_batches_and_eval(shape: tuple, dims: tuple) -> None:
    torch.manual_seed(1)
    layer = _layer_with_bias()
    assert layer.momentum == 0.1
    running = torch.zeros(5)
    for i in range(6):
        x = torch.randn(shape) + i
        layer(x)
        running = 0.9 * running + 0.1 * x.mean(dim=dims)
    torch.testing.assert_close(layer.running_mean, running)
    layer.eval()
    x = torch.randn(shape)
    y = layer(x)
    torch.testing.assert_close(y, x - _view(running, x.dim()) + _view(layer.bias, x.dim()))
    torch.testing.assert_close(layer.running_mean, running)  # eval does not update it
    # in eval each example's output is its own business
    torch.testing.assert_close(layer(x[:1]), y[:1])


def test_train_mode_depends_on_the_batch_eval_does_not() -> None:
    torch.manual_seed(2)
    layer = MeanOnlyBatchNorm(3)
    x, others = torch.randn(1, 3), torch.randn(7, 3) + 5
    in_batch = layer(torch.cat([x, others]))[:1]
    assert not torch.allclose(layer(torch.cat([x, others * 2]))[:1], in_batch)
    layer.eval()
    torch.testing.assert_close(layer(torch.cat([x, others]))[:1], layer(x))


def test_gradients_bias_and_input() -> None:
    torch.manual_seed(3)
    layer = MeanOnlyBatchNorm(4)
    x = torch.randn(6, 4, 3, 3, requires_grad=True)
    grad_out = torch.randn(6, 4, 3, 3)
    layer(x).backward(grad_out)
    torch.testing.assert_close(layer.bias.grad, grad_out.sum(dim=(0, 2, 3)))
    # d(x - mean(x))/dx: the output gradient minus its own per-channel mean
    torch.testing.assert_close(x.grad, grad_out - grad_out.mean(dim=(0, 2, 3), keepdim=True))


def test_state_dict_deepcopy_and_validation() -> None:
    layer = _layer_with_bias()
    layer(torch.randn(4, 5) + 1)
    assert sorted(layer.state_dict()) == ["bias", "running_mean"]
    fresh = MeanOnlyBatchNorm(5)
    fresh.load_state_dict(layer.state_dict())
    clone = copy.deepcopy(layer)
    for other in (fresh, clone):
        torch.testing.assert_close(other.running_mean, layer.running_mean)
        torch.testing.assert_close(other.bias, layer.bias)
    clone.running_mean.add_(1)
    assert not torch.equal(clone.running_mean, layer.running_mean)
    with pytest.raises(ValueError, match="expects input"):
        layer(torch.randn(4, 6))
    with pytest.raises(ValueError, match="momentum"):
        MeanOnlyBatchNorm(5, momentum=0.0)
    layer.reset_parameters()
    assert not layer.running_mean.any() and not layer.bias.any()
