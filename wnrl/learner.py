"""The learner: online and target Q-networks, an optimizer, and one update per batch.

    learner = Learner(make_q_network(...), cfg.learner)
    metrics = learner.update(replay.sample(cfg.learner.batch_size))
    replay.update_priorities(batch.index, metrics.td_abs)
    actor.set_weights(learner.weights())

The loss is a callable the agent chooses (`wnrl.losses.make_loss` by default).
The target network is a copy of the online one, always in eval mode, synced
(parameters and buffers, so batch-norm running statistics too) every
`cfg.target_update_period` updates. Batches arrive as NumPy arrays; uint8
observations travel to the device as uint8 and the network scales them there.

Run `data_dependent_init` on the network before building the learner, or call
`sync_target()` afterwards so the target starts from the initialized weights.

Speed options (`cfg.compile`, `cfg.precision`, `cfg.cuda_graph`): explicit values are
taken as given (`wnrl.accel` refuses what the machine cannot run); `compile` and
`precision` at `auto` are measured (`wnrl.autotune`): the first update times the
candidate modes on copies of the learner, keeps the fastest and caches the choice for
later runs (`tuning` until then). The update is two functions: the loss (online and target
forwards, TD targets, weighted mean), whose backward AOTAutograd compiles with
it, and the optimizer step (gradient-norm clip and the optimizer's update).
With `compile` both are `torch.compile`d with `fullgraph=True`, so a graph
break is an error, not a silent slowdown; the first call compiles (tens of
seconds on a CPU: `warming_up` tells callers to announce it). A compile that fails
to build or load (a kernel library cut short in Inductor's cache by a killed run)
never ends the run: `wnrl.compile_cache` repairs the cache or the update runs
eagerly, and `pop_events` says which in one line. With `bf16` the
network forwards run under bf16 autocast and return fp32 Q-values, so the
weights, the optimizer state, the TD targets and loss, and the WN norm `||v||`
(computed from the fp32 parameters outside any matmul) stay fp32.

With `cfg.cuda_graph` (CUDA only) the whole update is captured once as a CUDA
graph and replayed for every batch (`wnrl.cuda_graph`); the optimizer then keeps
its step counters on the device (`capturable=True`). `update_many` does the several
updates a vector step calls for in one replay of a graph of that many updates.
"""

from __future__ import annotations

import copy
import inspect
import time
import types
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from wnrl import autotune, compile_cache
from wnrl.accel import resolve_compile, resolve_device, resolve_precision
from wnrl.config import LearnerConfig
from wnrl.core.types import Batch, UpdateMetrics
from wnrl.cuda_graph import GraphedUpdate, module_state
from wnrl.losses import LossFn, TensorBatch, make_loss
from wnrl.nn import fold_weight_norm, folded_state_dict, is_weight_normalized
from wnrl.optimizers import IMPLEMENTATION_FLAGS, OPTIMIZERS, make_optimizer

__all__ = ["IMPLEMENTATION_FLAGS", "OPTIMIZERS", "Autocast", "Learner", "UpdateMetrics",
           "make_optimizer"]

# the most updates one CUDA graph replays (`Learner.update_many`): a graph per length is
# captured, each with its own memory, so their number stays small
MAX_UPDATES_PER_GRAPH = 8


class Autocast(nn.Module):
    """`net` under autocast to `dtype`, returning fp32 outputs: Q-values, and what the loss
    computes from them, stay fp32. Shares `net`'s parameters (no copy)."""

    def __init__(self, net: nn.Module, device_type: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.net, self.device_type, self.dtype = net, device_type, dtype

    def forward(self, x: Tensor) -> Tensor:
        """x: uint8[B, C, H, W] | float32[B, D] -> float32[B, A]."""
        # no weight-cast cache: each net runs once per region, and a CUDA-graph capture
        # must not keep casts made outside it
        with torch.autocast(self.device_type, dtype=self.dtype, cache_enabled=False):
            return self.net(x).float()


def _own_code(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A copy of `fn` with a code object of its own. Dynamo keeps its compiled graphs per
    code object, guarded on the objects they use, so every further learner in a process
    would recompile the shared method and the ninth would hit the recompile limit (fatal
    with fullgraph); a per-learner copy, compiled as a plain function (a bound method
    goes through one wrapper shared by all), starts its own cache."""
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__,
                              fn.__defaults__, fn.__closure__)


def _total_norm(grads: list[Tensor]) -> Tensor:
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


class Learner:
    """DQN learner on `device` (`cpu | cuda | auto`).

    Args:
        network: the online Q-network, obs -> float[B, A]; moved to the device and
            owned by the learner from then on (reachable as `learner.online`).
        cfg: optimizer, loss and target-sync settings.
        loss_fn: the loss to minimize; default `make_loss(cfg)`.
        device: where the networks live; default `cfg.device`.
    """

    def __init__(self, network: nn.Module, cfg: LearnerConfig, loss_fn: LossFn | None = None,
                 device: str | torch.device | None = None) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.device if device is None else device)
        self.online = network.to(self.device).train()
        self.target = copy.deepcopy(self.online).eval().requires_grad_(False)
        # What the loss calls as the target: `target` itself, or for a weight-normalized
        # network its fold (the target's weights change only at syncs, so the per-forward
        # norm is paid once per sync instead of once per update).
        self._wn = any(is_weight_normalized(m) for m in self.online.modules())
        self.target_net = fold_weight_norm(self.target) if self._wn else self.target
        self.loss_fn: LossFn = make_loss(cfg) if loss_fn is None else loss_fn
        self._params = [p for p in self.online.parameters() if p.requires_grad]
        _, precision_note = resolve_precision(cfg.precision, self.device)
        _, compile_note = resolve_compile(cfg.compile, self.device)
        # one-line notes on how the modes were resolved, for the run's log
        self.notes: list[str] = [n for n in (precision_note, compile_note) if n]
        self.events: list[str] = []  # what the first update found, for the log (`pop_events`)
        self._pin = self.device.type == "cuda"
        self._num_updates = 0
        self.compile_seconds: float | None = None
        mode, self._trial, notes = autotune.plan(cfg, self.device, self.online)
        self.notes += notes  # `auto` is measured: cached, or by the first update (`tuning`)
        self._configure(mode)
        self.tuning = self._trial is not None  # the first update measures the modes
        self.warming_up = self.tuning or self.compiled or self.graphed

    def _configure(self, mode: autotune.Mode) -> None:
        """Run updates in `mode`: the optimizer in the form that mode runs fastest (its state
        kept), the bf16 autocast wrappers, the compiled or plain step functions."""
        self.compiled, self.precision, self.graphed = mode.compiled, mode.precision, mode.graphed
        old = getattr(self, "optimizer", None)
        self.optimizer = make_optimizer(self._params, self.cfg, self.compiled, self.graphed)
        if old is not None and old.state:
            self._load_optimizer_state(old.state_dict())
        # captured at the first graphed update of each length (updates per replay)
        self._graphs: dict[int, GraphedUpdate] = {}
        self._loss_online, self._loss_target = self.online, self.target_net
        if self.precision == "bf16":
            self._loss_online = Autocast(self.online, self.device.type, torch.bfloat16)
            self._loss_target = Autocast(self.target_net, self.device.type, torch.bfloat16)
        self._raw_step = inspect.unwrap(type(self.optimizer).step)
        self._set_step_functions()

    def _set_step_functions(self) -> None:
        """The loss and optimizer step the update calls: compiled afresh (each learner, and
        each recompile, its own code objects: see `_own_code`) or the plain methods."""
        self._loss_step: Callable[[TensorBatch], tuple[Tensor, ...]] = self._loss
        self._opt_step: Callable[[], Tensor] = self._optimizer_step
        if self.compiled:
            loss = torch.compile(_own_code(Learner._loss), fullgraph=True, dynamic=False)
            step = torch.compile(_own_code(Learner._optimizer_step), fullgraph=True,
                                 dynamic=False)
            self._loss_step, self._opt_step = partial(loss, self), partial(step, self)

    def pop_events(self) -> list[str]:
        """The one-line events of the updates so far (a repaired compile cache, a fall back
        to eager), each returned once."""
        events, self.events = self.events, []
        return events

    @property
    def mode(self) -> str:
        """The update's mode for logs and benchmarks, e.g. `compiled bf16`, `eager fp32` or
        `eager bf16 graph` (CUDA-graphed); before the first update of a learner whose
        `auto` modes are to be measured, `auto (eager fp32 | compiled fp32)`."""
        if self.tuning:
            return f"auto ({' | '.join(m.name for m in self._trial.modes)})"
        return f"{'compiled' if self.compiled else 'eager'} {self.precision}" \
            + (" graph" if self.graphed else "")

    @property
    def compile_note(self) -> str | None:
        """The `notes` as one line for the log, or None."""
        return "; ".join(self.notes) or None

    @property
    def num_updates(self) -> int:
        """Updates done so far (counts across `load_state_dict`)."""
        return self._num_updates

    def sync_target(self) -> None:
        """Copy the online network's parameters and buffers into the target; keep it in eval."""
        self.target.load_state_dict(self.online.state_dict())
        self.target.eval()
        self._refresh_target_net()

    def _refresh_target_net(self) -> None:
        if self._wn:
            self.target_net.load_state_dict(folded_state_dict(self.target))
            self.target_net.eval()

    def _to_device(self, array: np.ndarray | Tensor) -> Tensor:
        if isinstance(array, Tensor):  # a `DeviceReplay`'s batch: already there (no copy)
            return array.to(self.device, non_blocking=True)
        t = torch.from_numpy(np.ascontiguousarray(array))
        if self._pin:
            t = t.pin_memory()
        return t.to(self.device, non_blocking=True)

    def to_tensors(self, batch: Batch) -> TensorBatch:
        """A replay `Batch` (fields obs, action, reward, discount, next_obs, weight: NumPy
        arrays, or tensors from `DeviceReplay`) as tensors on the device; obs keep their
        dtype (uint8 is scaled by the network)."""
        return TensorBatch(*(self._to_device(getattr(batch, k)) for k in TensorBatch._fields))

    def update(self, batch: Batch) -> UpdateMetrics:
        """One gradient step on `batch` (a replay `Batch`); syncs the target every C updates.

        The loss is `mean(batch.weight * per_sample_loss)`. Metrics come back to the host
        with a single device-to-host copy.
        """
        tb = self.to_tensors(batch)
        self._train_modes()
        start = time.perf_counter()
        if self._trial is not None:  # measure the modes on copies (`wnrl.autotune.run`)
            best, events = autotune.run(self._trial, self, batch)
            self.events += events
            self._configure(best)
            self._trial, self.tuning = None, False
        out = self._first_compiled(tb) if self.warming_up and self.compiled else self._run(tb)
        if self.warming_up:
            self.warming_up, self.compile_seconds = False, time.perf_counter() - start
        self._num_updates += 1
        if self._num_updates % self.cfg.target_update_period == 0:
            self.sync_target()
        return UpdateMetrics.from_row(out.cpu().numpy())

    def update_many(self, batches: Sequence[Batch]) -> list[UpdateMetrics]:
        """`[self.update(b) for b in batches]`, the same steps and target syncs, with one
        device-to-host copy of the metrics. Graphed, each run of updates between target
        syncs (at most `MAX_UPDATES_PER_GRAPH`) is one replay of a graph of that many
        updates, captured at its first use."""
        done: list[UpdateMetrics] = []
        if self.warming_up and batches:  # the first update compiles, captures or tunes
            done.append(self.update(batches[0]))
            batches = batches[1:]
        if not self.graphed:
            return done + [self.update(b) for b in batches]
        self._train_modes()
        period, outs, i = self.cfg.target_update_period, [], 0
        while i < len(batches):
            n = min(len(batches) - i, period - self._num_updates % period,
                    MAX_UPDATES_PER_GRAPH)
            tbs = [self.to_tensors(b) for b in batches[i:i + n]]
            outs.append(torch.stack(self._replay_graph(tbs)))  # a copy: the next replay
            i += n                                                # overwrites the graph's
            self._num_updates += n
            if self._num_updates % period == 0:
                self.sync_target()
        if not outs:
            return done
        return done + [UpdateMetrics.from_row(h) for h in torch.cat(outs).cpu().numpy()]

    def _train_modes(self) -> None:
        """The online network in training mode (batch statistics), the target in eval."""
        self.online.train()
        if self.target_net.training:
            self.target_net.eval()

    def _replay_graph(self, tbs: list[TensorBatch]) -> list[Tensor]:
        """Replay the graph of `len(tbs)` updates (captured now if there is none for these
        shapes) -> its outputs, float32[3 + B] per update."""
        graph = self._graphs.get(len(tbs))
        if graph is None or not graph.fits(tbs):
            graph = self._graphs[len(tbs)] = GraphedUpdate(
                self._step, tbs, module_state(self.online, self.optimizer),
                lambda: self.optimizer.zero_grad(set_to_none=True))
        return graph.replay(tbs)

    def _run(self, tb: TensorBatch) -> Tensor:
        """One update on `tb` (graphed or not) -> `_step`'s float32[3 + B]."""
        if self.graphed:
            return self._replay_graph([tb])[0]
        self.optimizer.zero_grad(set_to_none=True)
        return self._step(tb)

    def _first_compiled(self, tb: TensorBatch) -> Tensor:
        """The first compiled update, which compiles; if the compiled code fails to build or
        load, `wnrl.compile_cache.first_compile` undoes it and runs it again (fresh cache,
        then eager), each outcome one line in `events`."""
        saved = self._snapshot()

        def recompile(eager: bool) -> None:
            self._restore(saved)
            self.compiled = not eager
            self._set_step_functions()

        return compile_cache.first_compile(lambda: self._run(tb), recompile, self.events)

    def _snapshot(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Copies of the online network's state and the optimizer's (what an update changes)."""
        return (copy.deepcopy(self.online.state_dict()),
                copy.deepcopy(self.optimizer.state_dict()))

    def _restore(self, saved: tuple[dict[str, Tensor], dict[str, Any]]) -> None:
        """Put back a `_snapshot`: weights, buffers and optimizer state, gradients cleared."""
        self.online.load_state_dict(saved[0])
        self.optimizer.load_state_dict(copy.deepcopy(saved[1]))
        self.optimizer.zero_grad(set_to_none=True)
        self._graphs = {}

    def _step(self, tb: TensorBatch) -> Tensor:
        """Loss, backward and optimizer step on gradients that start from None ->
        float32[3 + B]: loss, mean Q, gradient norm before clipping, |TD error| per row."""
        loss, q, td = self._loss_step(tb)
        loss.backward()
        grad_norm = self._opt_step()
        scalars = torch.stack([loss.detach(), q.mean(), grad_norm.to(loss.device)])
        return torch.cat([scalars.float(), td.abs().float()])

    def _loss(self, tb: TensorBatch) -> tuple[Tensor, Tensor, Tensor]:
        """(weighted mean loss with grad, Q(obs, action) float32[B], TD error float32[B])."""
        out = self.loss_fn(self._loss_online, self._loss_target, tb)
        loss = (tb.weight.to(out.loss.dtype) * out.loss).mean()
        return loss, out.q, out.td_error

    def _optimizer_step(self) -> Tensor:
        """Clip the gradients' global norm (if configured), step; the norm before clipping.

        The optimizer's own `step` is called unwrapped: its wrapper only turns grad mode
        off (done here) around two deliberate graph breaks, which would split the
        compiled step in three. (A `no_grad` block, not the decorator: a decorated
        method is a wrapper whose code every decorated function shares.)"""
        with torch.no_grad():
            if self.cfg.max_grad_norm is not None:
                grad_norm = torch.nn.utils.clip_grad_norm_(self._params,
                                                           self.cfg.max_grad_norm, foreach=True)
            else:
                grad_norm = _total_norm([p.grad for p in self._params if p.grad is not None])
            self._raw_step(self.optimizer)
        return grad_norm

    @torch.no_grad()
    def weights(self, device: str | torch.device = "cpu", *,
                share: bool = False) -> dict[str, Tensor]:
        """The online network folded to plain layers (`fold_weight_norm`), as a state dict
        on `device` (default the CPU: what checkpoints and other processes take) that
        shares no storage with the learner (`folded_state_dict` copies): what
        `Actor.set_weights` loads. An actor on the learner's GPU takes them there, with no
        round trip through the host.

        `share=True` skips the copy of the tensors that are not WN weights where they are
        already on `device`: they stay views of the learner's. Only for a caller that
        copies them before the next update (`Actor.set_weights` in the same thread); it
        saves an allocation and a pass over the weights at every actor weight sync."""
        return {k: v.to(device) for k, v in folded_state_dict(self.online,
                                                              clone=not share).items()}

    def state_dict(self) -> dict[str, Any]:
        """Online and target networks, optimizer state and the update counter."""
        return {
            "online": self.online.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "num_updates": self._num_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` saved (tensors may come from another device)."""
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.target.eval()
        self._refresh_target_net()
        self._load_optimizer_state(state["optimizer"])
        self._graphs = {}  # the optimizer state tensors are new: capture again
        self._num_updates = int(state["num_updates"])

    def _load_optimizer_state(self, state: dict[str, Any]) -> None:
        """Load an optimizer state saved in any mode into this learner's optimizer, keeping
        this mode's implementation flags and step-counter placement."""
        flags = [{k: g[k] for k in IMPLEMENTATION_FLAGS if k in g}
                 for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state)
        for group, own in zip(self.optimizer.param_groups, flags):  # a checkpoint written
            group.update(own)  # eagerly (fused) must load into a compiled learner, and back
            on_device = bool(group.get("capturable") or group.get("fused"))
            for p in group["params"]:  # step counters where this learner's mode keeps them
                st = self.optimizer.state.get(p, {})
                if isinstance(st.get("step"), Tensor):
                    st["step"] = st["step"].to(p.device if on_device else "cpu",
                                               torch.float32)
