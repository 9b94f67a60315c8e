"""The paper's data-dependent initialization of weight-normalized layers.

For every WN layer, in forward order, within one forward pass over a real
minibatch (Salimans & Kingma 2016, section 3):

1. `v ~ N(0, 0.05)` (std 0.05), so that the layer computes `t = v . x / ||v||`;
2. `mu`, `sigma` = mean and std of `t` per unit on the batch (per channel over
   batch and spatial positions for conv);
3. `g = s / sigma` and `bias = -s * mu / sigma`, where `s` is the layer's
   `init_scale` (1.0 by default);
4. the layer's output is recomputed with these values and passed on, so the
   next layer is initialized on the activations it will really see.

After it, each WN layer's outputs on the batch have mean 0 and std `s` per
unit (1 for every hidden layer).

Two cases worth naming:

- **Q-value heads** built by `wnrl.networks` set `init_scale = 0.1` (the
  `init_scale` knob of the authors' reference code): their outputs (Q-values,
  or value and advantages for a dueling head) start with mean 0 and std 0.1
  over the batch rather than 1, so initial Q-values are small and nearly
  state-independent, as with a plainly initialized head.
- **Layers followed by `MeanOnlyBatchNorm`** have no bias, so only
  `g = s / sigma` is set (unit std); the mean-only BN removes the mean. Its
  running mean is set to the batch mean of its input, so the network computes
  the same on the batch in eval mode as in training mode; its bias stays 0.
  The same holds for any WN layer without a bias: its std is set, its mean is
  left as it comes.

Parameters are written in place (`copy_`), so an optimizer already built on the
model stays valid. The pass runs in training mode (a full batch norm, if any,
takes one running-stats update from the batch); training flags are restored
afterwards. WN layers that the forward pass does not reach are left as they were.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from wnrl.nn.mean_only_bn import MeanOnlyBatchNorm
from wnrl.nn.weight_norm import is_weight_normalized

V_INIT_STD = 0.05  # std of v at init (paper, section 3)


def _unit_stats(t: Tensor, channel_dim: int, eps: float) -> tuple[Tensor, Tensor]:
    """Mean and std (population) of t per unit: float[out] each."""
    dims = [d for d in range(t.dim()) if d != channel_dim % t.dim()]
    var, mean = torch.var_mean(t, dim=dims, correction=0)
    return mean, (var + eps).sqrt()


@torch.no_grad()
def data_dependent_init(model: nn.Module, batch: Tensor | np.ndarray, *,
                        generator: torch.Generator | None = None,
                        eps: float = 1e-8) -> nn.Module:
    """Initialize every WN layer of `model` from `batch`, in place (see the module doc).

    Args:
        model: a network containing `WNLinear` / `WNConv2d` layers.
        batch: a minibatch of the model's input, at least 2 examples, e.g.
            obs uint8[B, 4, 84, 84] or float32[B, D]; moved to the model's device.
        generator: random source for `v` (the global torch RNG by default); must be
            on the model's device.
        eps: added to the variance before the square root.

    Returns:
        `model`, initialized.

    Raises:
        ValueError: if the model has no WN layer or the batch has fewer than 2 examples.
    """
    wn_layers = [m for m in model.modules() if is_weight_normalized(m)]
    if not wn_layers:
        raise ValueError("data_dependent_init: the model has no weight-normalized layers")
    device = wn_layers[0].v.device
    batch = torch.as_tensor(batch, device=device)
    if batch.dim() == 0 or batch.shape[0] < 2:
        raise ValueError(f"data_dependent_init needs a batch of at least 2 examples, "
                         f"got shape {list(batch.shape)}")

    done: set[int] = set()

    def init_wn(layer: nn.Module, args: tuple, output: Tensor) -> Tensor | None:
        if id(layer) in done:
            return None
        done.add(id(layer))
        layer.v.normal_(0.0, V_INIT_STD, generator=generator)
        layer.g.fill_(1.0)
        if layer.bias is not None:
            layer.bias.zero_()
        t = layer.forward(*args)  # forward() skips the hooks: t = v . x / ||v||
        mean, std = _unit_stats(t, layer.channel_dim, eps)
        layer.g.copy_(layer.init_scale / std)
        if layer.bias is not None:
            layer.bias.copy_(-layer.init_scale * mean / std)
        return layer.forward(*args)

    def init_mobn(layer: MeanOnlyBatchNorm, args: tuple, output: Tensor) -> None:
        layer.running_mean.copy_(layer.batch_mean(args[0]))

    modes = {m: m.training for m in model.modules()}
    handles = [m.register_forward_hook(init_wn) for m in wn_layers]
    handles += [m.register_forward_hook(init_mobn) for m in model.modules()
                if isinstance(m, MeanOnlyBatchNorm)]
    try:
        model.train()
        model(batch)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    return model
