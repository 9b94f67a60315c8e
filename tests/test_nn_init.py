"""data_dependent_init: per-unit statistics after init, heads, mean-only BN, side effects."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wnrl.networks import HEAD_INIT_SCALE, make_q_network
from wnrl.nn import (
    MeanOnlyBatchNorm,
    WNConv2d,
    WNLinear,
    data_dependent_init,
    is_weight_normalized,
)


def _record_outputs(model: nn.Module, batch: torch.Tensor) -> dict[nn.Module, torch.Tensor]:
    """Each module's output on `batch` (copied: in-place ReLUs follow)."""
    out: dict[nn.Module, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda m, a, o: out.__setitem__(m, o.detach().clone()))
             for m in model.modules() if is_weight_normalized(m)
             or isinstance(m, MeanOnlyBatchNorm)]
    with torch.no_grad():
        model(batch)
    for h in hooks:
        h.remove()
    return out


def _stats(t: torch.Tensor, channel_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    dims = [d for d in range(t.dim()) if d != channel_dim % t.dim()]
    return t.mean(dim=dims), t.std(dim=dims, correction=0)


def _stack() -> nn.Sequential:
    """A WN CNN + MLP at an arbitrary scale, far from unit statistics before init."""
    return nn.Sequential(
        WNConv2d(3, 6, 3, stride=2), nn.ReLU(), WNConv2d(6, 5, 3), nn.ReLU(), nn.Flatten(),
        WNLinear(5 * 3 * 3, 20), nn.Tanh(), WNLinear(20, 7))


def test_every_layer_has_zero_mean_unit_std_per_unit_and_channel() -> None:
    torch.manual_seed(0)
    model = _stack()
    batch = torch.rand(64, 3, 11, 11) * 40 + 3
    assert data_dependent_init(model, batch) is model
    outputs = _record_outputs(model, batch)
    assert len(outputs) == 4
    for layer, t in outputs.items():
        mean, std = _stats(t, layer.channel_dim)
        assert mean.shape == (layer.v.shape[0],)
        torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-5, rtol=0)
        torch.testing.assert_close(std, torch.ones_like(std), atol=1e-4, rtol=0)
        # v ~ N(0, 0.05); the weight's norm is g
        assert abs(layer.v.std().item() - 0.05) < 0.015 and abs(layer.v.mean().item()) < 0.01
        torch.testing.assert_close(layer.weight.flatten(1).norm(dim=1), layer.g)


def test_in_place_modes_restored_and_reproducible() -> None:
    torch.manual_seed(1)
    model = _stack().eval()
    params = list(model.parameters())
    batch = torch.rand(16, 3, 11, 11)
    gen = torch.Generator().manual_seed(5)
    data_dependent_init(model, batch, generator=gen)
    assert all(a is b for a, b in zip(params, model.parameters()))  # an optimizer stays valid
    assert not any(m.training for m in model.modules())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    data_dependent_init(model, batch.numpy(), generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_init_scale_layer_and_bias_free_layer_followed_by_mean_only_bn() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(WNLinear(10, 12, bias=False), MeanOnlyBatchNorm(12), nn.ReLU(),
                          WNLinear(12, 4, init_scale=0.1))
    batch = torch.randn(128, 10) * 5 + 1
    data_dependent_init(model, batch)
    outs = _record_outputs(model.train(), batch)
    wn, mobn, head = model[0], model[1], model[3]
    # bias-free WN layer: unit std; the mean-only BN removes the mean
    _, std = _stats(outs[wn], -1)
    torch.testing.assert_close(std, torch.ones(12), atol=1e-4, rtol=0)
    mean, std = _stats(outs[mobn], -1)
    torch.testing.assert_close(mean, torch.zeros(12), atol=1e-5, rtol=0)
    torch.testing.assert_close(std, torch.ones(12), atol=1e-4, rtol=0)
    assert not mobn.bias.any()
    # its running mean is the batch mean: eval computes what training did on this batch
    torch.testing.assert_close(mobn.running_mean, outs[wn].mean(dim=0))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(batch), model.train()(batch), atol=1e-5, rtol=0)
    mean, std = _stats(outs[head], -1)
    torch.testing.assert_close(mean, torch.zeros(4), atol=1e-6, rtol=0)
    torch.testing.assert_close(std, torch.full((4,), 0.1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("dueling", [False, True])
@pytest.mark.parametrize("norm", ["weight", "weight+mean_only"])
@pytest.mark.parametrize("obs_shape", [(4, 84, 84), (6,)], ids=["cnn", "mlp"])
def test_q_networks(norm: str, dueling: bool, obs_shape: tuple[int, ...]) -> None:
    torch.manual_seed(3)
    net = make_q_network(obs_shape, 5, norm=norm, dueling=dueling)
    if len(obs_shape) == 3:
        batch = torch.randint(0, 256, (12, *obs_shape), dtype=torch.uint8)
    else:
        batch = torch.randn(64, *obs_shape)
    data_dependent_init(net, batch)
    outs = _record_outputs(net.train(), batch)
    heads = [m for m in net.head.modules() if is_weight_normalized(m)]
    for layer, t in outs.items():
        if isinstance(layer, MeanOnlyBatchNorm):
            continue
        mean, std = _stats(t, layer.channel_dim)
        scale = HEAD_INIT_SCALE if layer in heads else 1.0
        torch.testing.assert_close(std, torch.full_like(std, scale), atol=1e-3, rtol=0)
        if layer.bias is not None:
            torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-4, rtol=0)
        else:  # followed by mean-only BN, which centres it
            assert norm == "weight+mean_only"
    assert len(heads) == (2 if dueling else 1)


def test_rejects_models_without_wn_layers_and_tiny_batches() -> None:
    with pytest.raises(ValueError, match="no weight-normalized layers"):
        data_dependent_init(nn.Linear(3, 2), torch.randn(8, 3))
    with pytest.raises(ValueError, match="at least 2"):
        data_dependent_init(WNLinear(3, 2), torch.randn(1, 3))
