"""The group learner: one update for all K members, on stacked parameters.

    learner = GroupLearner(networks, cfg.learner, lrs=[1e-4, 2.5e-4, ...])
    metrics = learner.update([replay_k.sample(bs) for replay_k in replays])  # K UpdateMetrics

Member k is exactly a solo `wnrl.learner.Learner` with rate `lrs[k]`: its own online and
target networks (rows k of the stacked tensors, `wnrl.group.network`), its own
optimizer (the solo optimizer, `wnrl.learner.make_optimizer`, with one parameter group
per member holding views of its rows of the stacked parameters and its rate: the same
kernel, so the same numbers, one `step` call for all; `member_state_dict` cuts member k's
group out in the solo optimizer's format), its own gradient-norm clip (the global norm of its
own gradients), batch statistics over its own minibatch, the same loss (DQN or Double
DQN targets from `wnrl.losses`, Huber or MSE, importance weights) and the same target
sync period (members update in lock step). One loss is the sum of the members' losses,
so one backward gives every member its own gradient (no parameter is shared).

Mode: fp32 eager on the learner's device (`learner.compile` and `precision` are not
applied to a group: neither was measured for it). End to end, a group of 8 MinAtar runs
made 2.2x one solo run's env steps/s on 2 shared Zen 3 cores (docs/performance.md).
On CUDA, `learner.cuda_graph` (auto: on) captures the whole group update, all K members'
forward, backward, clip and Adam step, as one CUDA graph (`wnrl.cuda_graph.GraphedUpdate`)
and replays it for every update: K batch-32 updates are a few hundred small kernels, so
on a GPU their time is launch overhead, which one replay pays once. The graph reads the
stacked tensors in place, so everything an update does not change is written into them
in place too (target syncs, member loads); a load that replaces the optimizer's state
drops the graph, and the next update captures it again (as a change of batch shape does).

`member_state_dict(k)` is a solo learner's `state_dict()` (online, unfolded target,
optimizer in torch's format, update count), so a member's checkpoints are those of a
solo run; `load_member_state_dict(k, state)` takes one back.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.optim.adam import adam  # the functional form Adam.step calls

from wnrl.accel import resolve_cuda_graph, resolve_device
from wnrl.config import LearnerConfig
from wnrl.core.types import Batch, UpdateMetrics
from wnrl.cuda_graph import GraphedUpdate, optimizer_tensors
from wnrl.group.network import (
    GroupedForward,
    Tensors,
    fold_stacked,
    folded_template,
    member_state,
    stack_members,
)
from wnrl.learner import IMPLEMENTATION_FLAGS, make_optimizer
from wnrl.losses import ELEMENTWISE_LOSSES, TensorBatch, double_q_target, q_learning_target
from wnrl.networks import QNetwork
from wnrl.nn import data_dependent_init

BATCH_FIELDS = ("obs", "action", "reward", "discount", "next_obs", "weight")


class GroupLearner:
    """K DQN learners in one (see the module doc).

    Args:
        networks: K solo Q-networks of one architecture, each initialized as its solo
            run would be (their weights are copied; the modules are not kept).
        cfg: the members' shared learner settings (`lr` is ignored: see `lrs`).
        lrs: one learning rate per member.
        device: where the stacked tensors live; default `cfg.device`.

    `cfg.cuda_graph` (auto | true | false) graphs the update on a CUDA device (auto: on
    CUDA; true on another device is a ConfigError, as for a solo learner).
    """

    def __init__(self, networks: list[QNetwork], cfg: LearnerConfig, lrs: list[float],
                 device: str | torch.device | None = None) -> None:
        if len(networks) != len(lrs) or not networks:
            raise ValueError(f"{len(networks)} networks for {len(lrs)} learning rates")
        self.cfg, self.k = cfg, len(networks)
        self.device = resolve_device(cfg.device if device is None else device)
        self.graphed = resolve_cuda_graph(cfg.cuda_graph, self.device)
        self._graph: GraphedUpdate | None = None
        self.template = copy.deepcopy(networks[0]).cpu()
        self.forward = GroupedForward(self.template, self.k)
        self.target_forward = GroupedForward(folded_template(self.template), self.k)
        params, buffers = stack_members(networks)
        self.params = {n: t.to(self.device).requires_grad_(True) for n, t in params.items()}
        self.buffers = {n: t.to(self.device) for n, t in buffers.items()}
        self._target_params: Tensors = {}
        self._target_tensors: Tensors = {}
        self.sync_target()
        self.elementwise = ELEMENTWISE_LOSSES[cfg.loss]
        # the solo optimizer with one parameter group per member (views of its rows, its
        # rate): the solo maths exactly, one step call (see the module doc)
        self._rows = [[p.detach()[k] for p in self.params.values()] for k in range(self.k)]
        # (capturable when graphed: step counters on the device, no host sync)
        self.optimizer = make_optimizer(
            [{"params": rows, "lr": lr} for rows, lr in zip(self._rows, lrs)], cfg,
            capturable=self.graphed)
        self._fused_adam = cfg.optimizer == "adam" and all(
            g.get("fused") and not g.get("amsgrad") and not g.get("weight_decay")
            for g in self.optimizer.param_groups)
        self._solo_groups = make_optimizer(self.template.parameters(), cfg).state_dict()[
            "param_groups"]
        self._num_updates = 0
        self.mode = "eager fp32 graph" if self.graphed else "eager fp32"
        self.warming_up, self.compiled = False, False
        self.compile_seconds: float | None = None
        self.last_update_seconds = 0.0

    @property
    def num_updates(self) -> int:
        return self._num_updates

    @property
    def lrs(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    # ---- targets and weights --------------------------------------------------------------
    @torch.no_grad()
    def sync_target(self) -> None:
        """Every member's target = its online parameters and buffers (the target forward
        uses them folded, as the solo learner's does); written in place once they exist
        (a captured graph reads them)."""
        params = {n: t.detach() for n, t in self.params.items()}
        if not self._target_params:
            self._target_params = {n: t.clone() for n, t in params.items()}
            self._target_tensors = {**fold_stacked(self.template, self._target_params),
                                    **{n: b.clone() for n, b in self.buffers.items()}}
            return
        for n, t in params.items():
            self._target_params[n].copy_(t)
        self._refold_target()
        for n, b in self.buffers.items():
            self._target_tensors[n].copy_(b)

    @torch.no_grad()
    def _refold_target(self) -> None:
        """The folded target weights from `_target_params`, in place."""
        for n, t in fold_stacked(self.template, self._target_params).items():
            self._target_tensors[n].copy_(t)

    @torch.no_grad()
    def folded(self, device: str | torch.device = "cpu") -> Tensors:
        """Every member's online network folded (plain weights) and its buffers, stacked,
        on `device`: what the group actor acts with."""
        out = {**fold_stacked(self.template, self.params),  # new tensors: no copy needed
               **{n: b.clone() for n, b in self.buffers.items()}}
        return {n: t.to(device) for n, t in out.items()}

    # ---- the update -----------------------------------------------------------------------
    def _stack(self, batches: list[Batch]) -> TensorBatch:
        """K replay batches -> one TensorBatch of stacked fields [K, B, ...] on the device."""
        if len(batches) != self.k:
            raise ValueError(f"{len(batches)} batches for a group of {self.k}")
        return TensorBatch(*(torch.from_numpy(np.stack([getattr(b, f) for b in batches]))
                             .to(self.device) for f in BATCH_FIELDS))

    def update(self, batches: list[Batch]) -> list[UpdateMetrics]:
        """One gradient step of every member k on `batches[k]`; the targets sync every
        `cfg.target_update_period` updates. Metrics come back with one host copy."""
        start = time.perf_counter()
        tb = self._stack(batches)
        if self.graphed:
            if self._graph is None or not self._graph.fits([tb]):
                self._graph = GraphedUpdate(self._step, [tb], self._state_tensors,
                                            self._zero_grad)
            (out,) = self._graph.replay([tb])
        else:
            self._zero_grad()
            out = self._step(tb)
        self._num_updates += 1
        if self._num_updates % self.cfg.target_update_period == 0:
            self.sync_target()
        host = out.cpu().numpy()
        self.last_update_seconds = time.perf_counter() - start
        return [UpdateMetrics.from_row(h) for h in host]

    def _zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    def _state_tensors(self) -> list[Tensor]:
        """Every tensor an update changes in place: the stacked parameters and buffers and
        the optimizer's state (what a graph's warm-up must put back)."""
        return [*self.params.values(), *self.buffers.values(),
                *optimizer_tensors(self.optimizer)]

    def _step(self, tb: TensorBatch) -> Tensor:
        """Every member's loss, backward, clip and optimizer step on gradients that start
        from None (no target sync, no host copy: graph-safe) -> float32[K, 3 + B]: loss,
        mean Q, gradient norm before clipping, |TD error| per row."""
        obs, action, reward, discount, next_obs, weight = tb
        tensors = {**self.params, **self.buffers}
        q_all = self.forward(tensors, obs, training=True)  # [K, B, A]
        q = q_all.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        with torch.no_grad():
            q_next = self.target_forward(self._target_tensors, next_obs, training=False)
            if self.cfg.double_dqn:
                y = double_q_target(self.forward(tensors, next_obs, training=True), q_next,
                                    reward, discount)
            else:
                y = q_learning_target(q_next, reward, discount)
        td = y.to(q.dtype) - q
        member_loss = (weight.to(q.dtype) * self.elementwise(td)).mean(dim=1)  # [K]
        member_loss.sum().backward()
        grad_norm = self._clip()
        self._optimizer_step()
        return torch.cat([member_loss.detach()[:, None], q.detach().mean(1, keepdim=True),
                          grad_norm[:, None], td.detach().abs()], dim=1).float()

    @torch.no_grad()
    def _clip(self) -> Tensor:
        """Each member's global gradient norm float[K] (before clipping); clips each member
        to `cfg.max_grad_norm` as `torch.nn.utils.clip_grad_norm_` does a solo network."""
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads], dim=1)  # [K, P]
        total = norms.norm(dim=1)
        if self.cfg.max_grad_norm is not None:
            coef = (self.cfg.max_grad_norm / (total + 1e-6)).clamp(max=1.0)
            for g in grads:
                g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))
        return total

    @torch.no_grad()
    def _optimizer_step(self) -> None:
        grads = [p.grad for p in self.params.values()]
        opt = self.optimizer
        fast = self._fused_adam and all(row in opt.state for row in self._rows[0])
        for k, rows in enumerate(self._rows):
            for row, g in zip(rows, grads):
                row.grad = None if g is None else g[k]
        if not fast:  # the first step creates the state; other optimizers step per group
            opt.step()
            return
        # Adam's fused kernel once per distinct rate over every member with that rate:
        # the numbers of `opt.step()` (which calls it once per member) at less overhead
        for lr in dict.fromkeys(self.lrs):
            rows = [r for k, rs in enumerate(self._rows) if opt.param_groups[k]["lr"] == lr
                    for r in rs if r.grad is not None]
            st = [opt.state[r] for r in rows]
            adam(
                rows, [r.grad for r in rows], [x["exp_avg"] for x in st],
                [x["exp_avg_sq"] for x in st], [], [x["step"] for x in st], fused=True,
                amsgrad=False, beta1=self.cfg.beta1, beta2=self.cfg.beta2, lr=lr,
                weight_decay=0.0, eps=self.cfg.eps, maximize=False)

    # ---- members as solo learners ---------------------------------------------------------
    def member_network(self, k: int, target: bool = False) -> QNetwork:
        """Member k's online (or unfolded target) network as a solo module (a copy, in
        training mode for the online one, eval for the target)."""
        net = copy.deepcopy(self.template).to(self.device)
        src = self._target_params if target else self.params
        buffers = {n: self._target_tensors[n] for n in self.buffers} if target else self.buffers
        net.load_state_dict({**member_state(src, k), **member_state(buffers, k)})
        return net.train(not target)

    @torch.no_grad()
    def data_dependent_init(self, k: int, batch: Tensor | np.ndarray,
                            generator: torch.Generator | None = None) -> None:
        """The paper's init of member k on its own batch (`wnrl.nn.data_dependent_init` on
        its solo network), then its target follows (all members' targets are re-synced,
        which only matters before the first update, where this is called)."""
        net = self.member_network(k)
        data_dependent_init(net, batch, generator=generator)
        self._write_member(k, net.state_dict())
        self.sync_target()

    @torch.no_grad()
    def _write_member(self, k: int, state: dict[str, Tensor]) -> None:
        """Member k's online parameters and buffers from a solo state dict, in place."""
        for n, t in state.items():
            (self.params if n in self.params else self.buffers)[n][k].copy_(t)

    def member_state_dict(self, k: int) -> dict[str, Any]:
        """Member k's state in the solo `Learner.state_dict()` format."""
        target = {**member_state(self._target_params, k),
                  **{n: self._target_tensors[n][k].clone() for n in self.buffers}}
        online = {**member_state(self.params, k), **member_state(self.buffers, k)}
        return {"online": self._ordered(online),
                "target": self._ordered(target),
                "optimizer": self._member_optimizer_state(k),
                "num_updates": self._num_updates}

    def _ordered(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        return {n: state[n] for n in self.template.state_dict()}

    @torch.no_grad()
    def load_member_state_dict(self, k: int, state: dict[str, Any]) -> None:
        """Restore member k from a solo `Learner.state_dict()` (every member must be at the
        same update count: ValueError otherwise)."""
        if k > 0 and int(state["num_updates"]) != self._num_updates:
            raise ValueError(f"member {k} is at update {state['num_updates']}, member 0 at "
                             f"{self._num_updates}: a group's members update together")
        probe = copy.deepcopy(self.template)
        probe.load_state_dict(state["online"])  # refuses another architecture (RuntimeError)
        probe.load_state_dict(state["target"])
        self._write_member(k, state["online"])
        for n, t in state["target"].items():
            if n in self._target_params:
                self._target_params[n][k].copy_(t)
            else:
                self._target_tensors[n][k].copy_(t)
        self._refold_target()
        self._load_member_optimizer_state(k, state["optimizer"])
        self._graph = None  # the optimizer's state tensors are new: capture again
        self._num_updates = int(state["num_updates"])

    def _member_optimizer_state(self, k: int) -> dict[str, Any]:
        """Member k's parameter group as the solo optimizer's `state_dict()`."""
        opt, rows = self.optimizer, self._rows[k]
        state = {i: {key: v.clone() for key, v in opt.state[row].items()}
                 for i, row in enumerate(rows) if row in opt.state}
        own = opt.param_groups[k]
        groups = [{**g, **{key: own[key] for key in g if key in own and key != "params"}}
                  for g in self._solo_groups]
        return {"state": state, "param_groups": groups}

    @torch.no_grad()
    def _load_member_optimizer_state(self, k: int, saved: dict[str, Any]) -> None:
        """Member k's state from a solo optimizer's `state_dict()` (its hyperparameters but
        the implementation flags, which stay this learner's, as `Learner` does)."""
        opt, rows = self.optimizer, self._rows[k]
        (group,) = saved["param_groups"]
        if len(group["params"]) != len(rows):
            raise ValueError(f"optimizer state for {len(group['params'])} parameters, the "
                             f"network has {len(rows)}")
        own = opt.param_groups[k]
        own.update({key: v for key, v in group.items()
                    if key != "params" and key not in IMPLEMENTATION_FLAGS})
        on_device = bool(own.get("capturable") or own.get("fused"))
        for i, row in zip(group["params"], rows):
            st = saved["state"].get(i)
            if st is None:
                opt.state.pop(row, None)
                continue
            opt.state[row] = {
                key: (v.to(row.device if on_device else "cpu", torch.float32) if key == "step"
                      else v.to(row.device, row.dtype).clone()) if isinstance(v, Tensor) else v
                for key, v in st.items()}
