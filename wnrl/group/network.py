"""K Q-networks of one architecture evaluated as one: stacked parameters, grouped ops.

A group's members share a solo `QNetwork` architecture (`wnrl.networks`) but not its
weights. Their parameters and buffers are stacked on a leading member dim, keyed by the
solo state-dict names (`torso.1.v` -> float[K, out, in]), and `GroupedForward` runs all K
members in one pass, reading the solo network's layers as a plan of grouped ops:

    conv (plain / WN)     one `conv2d` with `groups=K` on x float[B, K*C, H, W]
    linear (plain / WN)   one `baddbmm` on x float[K, B, F]
    BatchNorm2d / 1d      one `batch_norm` over K*C channels: statistics per member
    MeanOnlyBatchNorm     the mean per member and channel; running mean per member
    GroupNorm(1, C)       `group_norm` with K groups: a LayerNorm per member and example
    LayerNorm             per member and example; scale and shift per member

Member k's minibatch is row k of the input, float/uint8[K, B, *obs_shape]; every
statistic a norm takes is over member k's rows only, so no member's Q-values or
gradients depend on another member's batch. The WN weight of a member is materialized
with the same fused `torch._weight_norm` the solo layers use.

Why grouped ops and not `torch.func.vmap` over `functional_call` (measured, update only,
K = 8, MinAtar network, batch 32, one thread, 2 shared Zen 3 cores, against a loop of 8
solo `Learner` updates; docs/performance.md): vmap was 1.47x the loop for the standard
network but 0.90x with weight norm, since PyTorch has no vmap rule for `_weight_norm`
and falls back to a per-member loop, and batch norm's in-place running-statistics
updates need care under vmap; the grouped update was 1.31x / 1.13x (before its
optimizer was batched) and works alike for every norm, WN included, which is what the
package is about. Linear layers go through `_GroupLinear` so that each member's
products are its solo layer's, bit for bit on the MLP (see there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wnrl.networks import DuelingHead, QNetwork
from wnrl.nn import MeanOnlyBatchNorm, WNConv2d, WNLinear, fold_weight_norm

Tensors = dict[str, Tensor]


@dataclass
class _Ctx:
    """What every grouped op sees: member count, training flag, the layer's tensors."""

    k: int
    training: bool
    p: Tensors  # this layer's stacked parameters and buffers, by leaf name


def _wn_weight(p: Tensors, k: int) -> Tensor:
    """float[K, out, *rest]: `g * v / ||v||` per member and unit (the solo layers' kernel)."""
    v, g = p["v"], p["g"]
    flat_v = v.reshape(k * v.shape[1], *v.shape[2:])
    flat_g = g.reshape(-1, *([1] * (v.dim() - 2)))
    return torch._weight_norm(flat_v, flat_g, 0).view_as(v)


def _conv(m: nn.Conv2d | WNConv2d, x: Tensor, c: _Ctx, weight: Tensor) -> Tensor:
    """x: float[B, K*C_in, H, W] -> float[B, K*C_out, H', W']."""
    bias = c.p.get("bias")
    w = weight.reshape(-1, *weight.shape[2:])
    return F.conv2d(x, w, None if bias is None else bias.reshape(-1), m.stride, m.padding,
                    m.dilation, c.k)


class _GroupLinear(torch.autograd.Function):
    """`x @ W.T + b` per member with the solo `F.linear`'s products in both directions.

    Autograd's own backward of `baddbmm(b, x, W.mT)` forms the weight gradient as
    `(x.T @ g).T`, which rounds differently from the solo layer's `g.T @ x`; that last
    bit is enough for a batch-norm member's weights to leave its solo run's by more
    than 1e-4 within 200 updates (batch norm with Adam amplifies it). Here every product
    is the solo one, batched: forward `x @ W.T`, grad_x `g @ W`, grad_W `g.T @ x`.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        if bias is None:
            return torch.bmm(x, weight.transpose(1, 2))
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        gx = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        gw = torch.bmm(grad.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        gb = grad.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


def _linear(x: Tensor, c: _Ctx, weight: Tensor) -> Tensor:
    """x: float[K, B, in] -> float[K, B, out]; weight float[K, out, in]."""
    return _GroupLinear.apply(x, weight, c.p.get("bias"))


def _batch_norm(m: nn.modules.batchnorm._BatchNorm, x: Tensor, c: _Ctx) -> Tensor:
    p = c.p
    conv = x.dim() == 4
    flat = x if conv else x.transpose(0, 1).reshape(x.shape[1], -1)  # [B, K*F]
    if c.training and m.track_running_stats:
        p["num_batches_tracked"].add_(1)
    y = F.batch_norm(flat, p["running_mean"].view(-1), p["running_var"].view(-1),
                     p["weight"].view(-1), p["bias"].view(-1), c.training, m.momentum, m.eps)
    return y if conv else y.view(x.shape[1], c.k, -1).transpose(0, 1)


def _mean_only(m: MeanOnlyBatchNorm, x: Tensor, c: _Ctx) -> Tensor:
    p = c.p
    if x.dim() == 4:  # [B, K*C, H, W]
        mean = x.mean(dim=(0, 2, 3), dtype=p["running_mean"].dtype) if c.training else None
        running = p["running_mean"].view(-1)
        shape = (1, -1, 1, 1)
        bias = p["bias"].view(-1)
    else:  # [K, B, F]
        mean = x.mean(dim=1, dtype=p["running_mean"].dtype) if c.training else None
        running, shape, bias = p["running_mean"], (c.k, 1, -1), p["bias"]
    if mean is None:
        mean = running
    else:
        with torch.no_grad():
            running.lerp_(mean.detach(), m.momentum)
    return x + (bias - mean).view(shape)


def _group_norm(m: nn.GroupNorm, x: Tensor, c: _Ctx) -> Tensor:
    """GroupNorm(G, C) per member: K*G groups over [B, K*C, H, W]."""
    return F.group_norm(x, c.k * m.num_groups, c.p["weight"].reshape(-1),
                        c.p["bias"].reshape(-1), m.eps)


def _layer_norm(m: nn.LayerNorm, x: Tensor, c: _Ctx) -> Tensor:
    """x: float[K, B, F], normalized over F; per-member scale and shift."""
    y = F.layer_norm(x, m.normalized_shape, None, None, m.eps)
    return torch.addcmul(c.p["bias"].unsqueeze(1), y, c.p["weight"].unsqueeze(1))


def _flatten(m: nn.Flatten, x: Tensor, c: _Ctx) -> Tensor:
    """[B, K*C, H, W] -> [K, B, C*H*W] (the Nature / MinAtar torso's flatten)."""
    b = x.shape[0]
    return x.reshape(b, c.k, -1).transpose(0, 1)


Op = Callable[[Any, Tensor, _Ctx], Tensor]
# solo layer type -> its grouped op; `_plan` refuses any other layer
OPS: dict[type, Op] = {
    nn.Conv2d: lambda m, x, c: _conv(m, x, c, c.p["weight"]),
    WNConv2d: lambda m, x, c: _conv(m, x, c, _wn_weight(c.p, c.k)),
    nn.Linear: lambda m, x, c: _linear(x, c, c.p["weight"]),
    WNLinear: lambda m, x, c: _linear(x, c, _wn_weight(c.p, c.k)),
    nn.BatchNorm2d: _batch_norm,
    nn.BatchNorm1d: _batch_norm,
    MeanOnlyBatchNorm: _mean_only,
    nn.GroupNorm: _group_norm,
    nn.LayerNorm: _layer_norm,
    nn.ReLU: lambda m, x, c: F.relu(x, inplace=True),
    nn.Flatten: _flatten,
}


def _plan(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    out = []
    for name, child in module.named_children():
        if type(child) not in OPS:
            raise ValueError(f"a group cannot run layer {prefix}{name} ({type(child).__name__})")
        out.append((f"{prefix}{name}", child))
    return out


class GroupedForward:
    """All K members of a solo architecture in one forward (see the module doc).

    Args:
        template: a solo `QNetwork` of the members' architecture (its own weights unused).
        k: K, the number of members.
    """

    def __init__(self, template: QNetwork, k: int) -> None:
        self.template, self.k = template, k
        self.image, self.obs_shape = template.image, template.obs_shape
        self.grid = len(template.obs_shape) == 4
        self.scale = float(template.obs_scale)
        torso = list(template.torso.named_children())
        if self.grid:  # the MinAtar torso starts with Flatten(1, 2): done on the input
            torso = torso[1:]
        self.torso = [(f"torso.{n}", m) for n, m in torso]
        for name, m in self.torso:
            if type(m) not in OPS:
                raise ValueError(f"a group cannot run layer {name} ({type(m).__name__})")
        head = template.head
        self.dueling = isinstance(head, DuelingHead)
        self.head = (_plan(head, "head.") if self.dueling else [("head", head)])

    def _layer(self, name: str, m: nn.Module, x: Tensor, tensors: Tensors,
               training: bool) -> Tensor:
        pre = name + "."
        p = {key[len(pre):]: t for key, t in tensors.items() if key.startswith(pre)}
        return OPS[type(m)](m, x, _Ctx(self.k, training, p))

    def input(self, obs: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """obs uint8/float[K, B, *obs_shape] -> the first layer's layout: float[B, K*C, H, W]
        (images scaled by 1/255; MinAtar's S*C channels merged) or float[K, B, D]."""
        x = obs.to(dtype)
        if self.image:
            x = x * self.scale
        if self.image or self.grid:
            k, b = x.shape[:2]
            x = x.transpose(0, 1).reshape(b, -1, *x.shape[-2:])
        return x

    def __call__(self, tensors: Tensors, obs: Tensor, training: bool) -> Tensor:
        """Q-values float[K, B, A] of obs [K, B, *obs_shape] under `tensors` (stacked
        parameters and buffers by solo name; buffers are updated in place in training)."""
        x = self.input(obs)
        for name, m in self.torso:
            x = self._layer(name, m, x, tensors, training)
        if not self.dueling:
            return self._layer("head", self.head[0][1], x, tensors, training)
        (vn, vm), (an, am) = self.head
        value = self._layer(vn, vm, x, tensors, training)
        adv = self._layer(an, am, x, tensors, training)
        return value + adv - adv.mean(dim=-1, keepdim=True)


def stack_members(networks: list[nn.Module]) -> tuple[Tensors, Tensors]:
    """(parameters, buffers) of K solo networks stacked on a new dim 0, by solo name
    (persistent buffers only: what a state dict holds)."""
    params = {n: torch.stack([dict(net.named_parameters())[n].detach() for net in networks])
              for n, _ in networks[0].named_parameters()}
    states = [net.state_dict() for net in networks]
    buffers = {n: torch.stack([s[n] for s in states]) for n in states[0] if n not in params}
    return params, buffers


def member_state(tensors: Tensors, k: int) -> Tensors:
    """Member k's solo state dict (copies) from stacked tensors."""
    return {n: t[k].detach().clone() for n, t in tensors.items()}


@torch.no_grad()
def fold_stacked(template: QNetwork, params: Tensors) -> Tensors:
    """Stacked parameters with every WN layer's (`g`, `v`) replaced by its materialized
    `weight`: the stacked form of `wnrl.nn.folded_state_dict` (no grad, new tensors)."""
    wn = {name for name, m in template.named_modules() if isinstance(m, (WNConv2d, WNLinear))}
    out: Tensors = {}
    for key, t in params.items():
        owner, _, leaf = key.rpartition(".")
        if owner in wn and leaf in ("g", "v"):
            if leaf == "v":
                k = t.shape[0]
                out[f"{owner}.weight"] = _wn_weight({"v": t, "g": params[f"{owner}.g"]}, k)
            continue
        out[key] = t.detach().clone()
    return out


def folded_template(template: QNetwork) -> QNetwork:
    """The solo architecture with plain layers in place of WN ones (for `fold_stacked`
    tensors)."""
    folded = fold_weight_norm(template)
    assert isinstance(folded, QNetwork)
    return folded
