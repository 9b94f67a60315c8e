"""Q-networks: the Nature DQN CNN for images, the MinAtar CNN for MinAtar grids and an MLP
for vectors, in five norm kinds.

`make_q_network(obs_shape, num_actions, norm=..., dueling=...)` builds a
`QNetwork`: obs -> float32[B, A]. The norm kind (`wnrl.recipe.NORMS`) decides
how every hidden conv/linear layer is built, through one table (`NORM_KINDS`):

    none              Conv2d / Linear (with bias)                        -> ReLU
    weight            WNConv2d / WNLinear (with bias)                    -> ReLU
    batch             Conv2d / Linear (no bias) -> BatchNorm2d / 1d      -> ReLU
    weight+mean_only  WNConv2d / WNLinear (no bias) -> MeanOnlyBatchNorm -> ReLU
    layer             Conv2d / Linear (no bias) -> GroupNorm(1, C) / LayerNorm -> ReLU

The Q head (one linear layer, or value and advantage layers for the dueling
head) has no norm after it. It is a plain `nn.Linear` for `none` / `batch`, and
a `WNLinear` with `init_scale = HEAD_INIT_SCALE` (0.1) for the WN kinds: the
whole network is weight-normalized, as in the paper, and `data_dependent_init`
starts the Q-values at mean 0, std 0.1 over the init batch, close to the small
initial Q-values of a plainly initialized head, instead of std 1.

`layer` is layer normalization (Ba et al. 2016), the batch-independent normalization
of recent value-based work such as PQN (Gallici et al. 2024): each example's hidden
units are normalized over that example alone (all of a conv layer's channels and
positions: `GroupNorm` with one group, i.e. a LayerNorm over (C, H, W) with a per-channel
scale and shift; `LayerNorm` over the features of a linear layer).

With `weight`, `none` and `layer` a state's Q-values do not depend on the rest of the
batch in any mode; with `batch` and `weight+mean_only` they do in training mode
(batch statistics), not in eval mode (running statistics).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from wnrl.nn import MeanOnlyBatchNorm, WNConv2d, WNLinear
from wnrl.recipe import NORMS

HEAD_INIT_SCALE = 0.1  # std of the Q head's outputs after data-dependent init
# Nature DQN torso (Mnih et al. 2015): (out_channels, kernel, stride) per conv, then fc 512.
NATURE_CONVS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))
NATURE_FC = 512
# MinAtar DQN (Young & Tian 2019): one 3x3 stride-1 conv with 16 channels, then fc 128.
MINATAR_CONV = (16, 3, 1)
MINATAR_FC = 128


@dataclass(frozen=True)
class NormKind:
    """How one norm kind builds layers. `conv`/`linear` take nn.Conv2d/nn.Linear's args."""

    conv: Callable[..., nn.Module]
    linear: Callable[..., nn.Module]
    norm2d: Callable[[int], nn.Module] | None  # after each hidden conv (None: layer has bias)
    norm1d: Callable[[int], nn.Module] | None  # after each hidden linear
    head: Callable[[int, int], nn.Module]  # (in_features, out_features) -> output layer


def _layer_norm_2d(channels: int) -> nn.Module:
    """LayerNorm over (C, H, W) of float[B, C, H, W], per-channel affine."""
    return nn.GroupNorm(1, channels)


def _wn_head(in_features: int, out_features: int) -> nn.Module:
    return WNLinear(in_features, out_features, init_scale=HEAD_INIT_SCALE)


NORM_KINDS: dict[str, NormKind] = {
    "none": NormKind(nn.Conv2d, nn.Linear, None, None, nn.Linear),
    "weight": NormKind(WNConv2d, WNLinear, None, None, _wn_head),
    "batch": NormKind(nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.BatchNorm1d, nn.Linear),
    "weight+mean_only": NormKind(WNConv2d, WNLinear, MeanOnlyBatchNorm, MeanOnlyBatchNorm,
                                 _wn_head),
    "layer": NormKind(nn.Conv2d, nn.Linear, _layer_norm_2d, nn.LayerNorm, nn.Linear),
}


def _conv_block(kind: NormKind, c_in: int, c_out: int, kernel: int, stride: int) -> list[nn.Module]:
    layers = [kind.conv(c_in, c_out, kernel, stride, bias=kind.norm2d is None)]
    if kind.norm2d is not None:
        layers.append(kind.norm2d(c_out))
    return [*layers, nn.ReLU(inplace=True)]


def _linear_block(kind: NormKind, n_in: int, n_out: int) -> list[nn.Module]:
    layers = [kind.linear(n_in, n_out, bias=kind.norm1d is None)]
    if kind.norm1d is not None:
        layers.append(kind.norm1d(n_out))
    return [*layers, nn.ReLU(inplace=True)]


def nature_torso(kind: NormKind, obs_shape: Sequence[int]) -> tuple[nn.Sequential, int]:
    """Nature DQN convs + fc for float[B, C, H, W] (C any stack depth); returns (torso, 512)."""
    c, h, w = obs_shape
    layers: list[nn.Module] = []
    for c_out, k, s in NATURE_CONVS:
        if h < k or w < k:
            raise ValueError(f"image observations {tuple(obs_shape)} are too small for the "
                             f"Nature CNN (need at least 36x36)")
        layers += _conv_block(kind, c, c_out, k, s)
        c, h, w = c_out, (h - k) // s + 1, (w - k) // s + 1
    layers += [nn.Flatten(), *_linear_block(kind, c * h * w, NATURE_FC)]
    return nn.Sequential(*layers), NATURE_FC


def minatar_torso(kind: NormKind, obs_shape: Sequence[int]) -> tuple[nn.Sequential, int]:
    """MinAtar CNN for float[B, S, C, H, W] (S stacked C-channel grids, merged into S*C
    input channels): conv 16x3x3 stride 1 (no padding), fc 128; returns (torso, 128)."""
    s, c, h, w = obs_shape
    c_out, k, stride = MINATAR_CONV
    if h < k or w < k:
        raise ValueError(f"grid observations {tuple(obs_shape)} are smaller than the "
                         f"{k}x{k} MinAtar conv")
    h, w = (h - k) // stride + 1, (w - k) // stride + 1
    layers = [nn.Flatten(1, 2), *_conv_block(kind, s * c, c_out, k, stride), nn.Flatten(),
              *_linear_block(kind, c_out * h * w, MINATAR_FC)]
    return nn.Sequential(*layers), MINATAR_FC


def mlp_torso(kind: NormKind, in_features: int,
              hidden_sizes: Sequence[int]) -> tuple[nn.Sequential, int]:
    """Linear blocks of `hidden_sizes` for float[B, D]; returns (torso, hidden_sizes[-1])."""
    layers: list[nn.Module] = []
    n = in_features
    for size in hidden_sizes:
        layers += _linear_block(kind, n, size)
        n = size
    return nn.Sequential(*layers), n


class DuelingHead(nn.Module):
    """Q = V + A - mean_a A (Wang et al. 2016). features float[B, F] -> float[B, A]."""

    def __init__(self, value: nn.Module, advantage: nn.Module) -> None:
        super().__init__()
        self.value = value  # float[B, F] -> float[B, 1]
        self.advantage = advantage  # float[B, F] -> float[B, A]

    def forward(self, features: Tensor) -> Tensor:
        adv = self.advantage(features)
        return self.value(features) + adv - adv.mean(dim=1, keepdim=True)


class QNetwork(nn.Module):
    """obs -> Q-values float32[B, A].

    Image obs (`obs_shape = (C, H, W)`): uint8[B, C, H, W] in [0, 255] (or a float
    tensor of the same values), cast to the network's dtype and scaled by 1/255
    inside the forward, so uint8 batches can be moved to the device as they are.
    MinAtar obs (`obs_shape = (S, C, H, W)`): uint8[B, S, C, H, W] of 0/1, cast to the
    network's dtype, not scaled. Vector obs (`obs_shape = (D,)`): float32[B, D], as they are.
    """

    def __init__(self, torso: nn.Module, head: nn.Module, *, obs_shape: tuple[int, ...],
                 num_actions: int, norm: str, dueling: bool, channels_last: bool) -> None:
        super().__init__()
        self.torso = torso
        self.head = head
        self.obs_shape = obs_shape
        self.num_actions = num_actions
        self.norm = norm
        self.dueling = dueling
        self.image = len(obs_shape) == 3
        self.channels_last = channels_last and self.image
        # non-persistent: follows .to(device/dtype), stays out of the state dict
        self.register_buffer("obs_scale", torch.tensor(1.0 / 255.0 if self.image else 1.0),
                             persistent=False)

    def forward(self, obs: Tensor) -> Tensor:
        """obs: uint8[B, C, H, W] | uint8[B, S, C, H, W] | float32[B, D] ->
        float32[B, num_actions]."""
        x = obs.to(self.obs_scale.dtype)
        if self.image:
            x = x * self.obs_scale
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.torso(x))


def make_q_network(obs_shape: Sequence[int], num_actions: int, norm: str = "weight",
                   dueling: bool = False, hidden_sizes: Sequence[int] = (128, 128),
                   channels_last: bool = False) -> QNetwork:
    """Build a Q-network (see the module doc for the norm kinds and the head).

    Args:
        obs_shape: (C, H, W) for images (Nature CNN; C is the stack depth, H, W >= 36),
            (S, C, H, W) for MinAtar grids (MinAtar CNN; S stacked frames of C channels)
            or (D,) for vectors (MLP).
        num_actions: A, the number of Q-values per state.
        norm: one of `wnrl.recipe.NORMS`.
        dueling: value + mean-centred advantage head instead of one linear layer.
        hidden_sizes: MLP layer sizes (vector observations only).
        channels_last: NHWC memory format for the CNN (a speed option; ignored for MLPs;
            same outputs and state-dict keys).
    """
    if norm not in NORM_KINDS:
        raise ValueError(f"norm {norm!r} is not one of {', '.join(NORMS)}")
    obs_shape = tuple(int(d) for d in obs_shape)
    if len(obs_shape) not in (1, 3, 4) or min(obs_shape) < 1:
        raise ValueError(f"obs_shape {obs_shape} must be (C, H, W) for images, (S, C, H, W) "
                         f"for MinAtar grids or (D,) for vectors")
    if num_actions < 1:
        raise ValueError(f"num_actions must be at least 1, got {num_actions}")
    kind = NORM_KINDS[norm]
    if len(obs_shape) == 3:
        torso, features = nature_torso(kind, obs_shape)
    elif len(obs_shape) == 4:
        torso, features = minatar_torso(kind, obs_shape)
    else:
        if not hidden_sizes or min(hidden_sizes) < 1:
            raise ValueError(f"hidden_sizes {tuple(hidden_sizes)} must be positive sizes")
        torso, features = mlp_torso(kind, obs_shape[0], hidden_sizes)
    if dueling:
        head: nn.Module = DuelingHead(kind.head(features, 1), kind.head(features, num_actions))
    else:
        head = kind.head(features, num_actions)
    net = QNetwork(torso, head, obs_shape=obs_shape, num_actions=num_actions, norm=norm,
                   dueling=dueling, channels_last=channels_last)
    if net.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net
