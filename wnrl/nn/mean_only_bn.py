"""Mean-only batch normalization (Salimans & Kingma 2016, section 2.2).

Batch norm without the division by the standard deviation and without the
scale: in training the minibatch mean is subtracted, in eval a running mean,
then a learned bias is added. Following a weight-normalized layer (which then
has no bias of its own) it centres the pre-activations while WN takes care of
their scale; the noise it adds is far milder than full batch norm's, since
only the mean depends on the other examples.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MeanOnlyBatchNorm(nn.Module):
    """`y = x - mean + bias`, the mean per feature (2-D input) or per channel (N-D input).

    Training: `mean` is the minibatch mean over every dim but dim 1, and the
    running mean becomes `(1 - momentum) * running_mean + momentum * mean`
    (momentum 0.1, as `nn.BatchNorm*`). Eval: `mean` is the running mean, so
    each example's output depends on it alone.

    Args:
        num_features: C, the size of dim 1 of the input.
        momentum: weight of the newest batch mean in the running mean, in (0, 1].

    Shapes: x float[B, C] or float[B, C, *] -> same shape and dtype.
    Parameters: bias float[C] (zeros at init). Buffers: running_mean float[C] (zeros).
    """

    def __init__(self, num_features: int, momentum: float = 0.1, *,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"momentum must be in (0, 1], got {momentum}")
        self.num_features = num_features
        self.momentum = momentum
        self.bias = nn.Parameter(torch.zeros(num_features, device=device, dtype=dtype))
        self.register_buffer("running_mean",
                             torch.zeros(num_features, device=device, dtype=dtype))

    def reset_running_stats(self) -> None:
        """Running mean back to zeros."""
        self.running_mean.zero_()

    def reset_parameters(self) -> None:
        """Running mean and bias back to zeros."""
        self.reset_running_stats()
        with torch.no_grad():
            self.bias.zero_()

    def batch_mean(self, x: Tensor) -> Tensor:
        """float[C]: the mean of x: float[B, C, *] over every dim but dim 1, accumulated and
        returned in the running mean's dtype (fp32 also for a bf16 x under autocast)."""
        dims = [0, *range(2, x.dim())]
        return x.mean(dim=dims, dtype=self.running_mean.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """x: float[B, C] or float[B, C, *] -> same shape."""
        if x.dim() < 2 or x.shape[1] != self.num_features:
            raise ValueError(f"MeanOnlyBatchNorm({self.num_features}) expects input "
                             f"[B, {self.num_features}, ...], got {list(x.shape)}")
        if self.training:
            mean = self.batch_mean(x)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
        else:
            mean = self.running_mean
        shift = (self.bias - mean).view((1, -1) + (1,) * (x.dim() - 2))
        return x + shift

    def extra_repr(self) -> str:
        return f"{self.num_features}, momentum={self.momentum}"
