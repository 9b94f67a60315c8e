"""A learner's whole update captured once as a CUDA graph and replayed (`learner.cuda_graph`).

A batch-32 Nature-CNN update is a few hundred small kernels, so on a GPU its time
is mostly launch overhead, which a graph replay pays once (3.5-4.5x on an H200,
docs/gpu.md). The capture runs three warm-up updates on the first batch on a side
stream (compiling them, if the learner compiles), then records one update, or several
in a row (one graph replay for the updates a vector step calls for); the warm-up's
changes to the weights, buffers and optimizer state are put back, so a graphed learner
takes exactly the steps an ungraphed one takes. The optimizer must be `capturable`
(step counters on the device).

`GraphedGreedy` does the same for the actor's forward and argmax (`actor.cuda_graph`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from wnrl.losses import TensorBatch


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> list[Tensor]:
    """Every tensor of an optimizer's state (moments, step counters)."""
    return [v for st in optimizer.state.values() for v in st.values() if isinstance(v, Tensor)]


def module_state(module: nn.Module, optimizer: torch.optim.Optimizer,
                 ) -> Callable[[], list[Tensor]]:
    """What a solo learner's update changes in place: the module's parameters and buffers
    (BN statistics) and the optimizer's state (read when called: the optimizer makes its
    state at its first step)."""
    return lambda: [*module.parameters(), *module.buffers(), *optimizer_tensors(optimizer)]


class GraphedUpdate:
    """`len(tbs)` consecutive calls of `step` (a learner's loss, backward and optimizer step
    on gradients that `zero_grad` set to None: TensorBatch -> its float32 metrics), one
    per batch, captured as one CUDA graph on the batches' device. `state()` lists every
    tensor `step` changes in place (`module_state` for a solo learner; the stacked
    tensors and optimizer state for a group, `wnrl.group.learner`).

    `replay(tbs)` copies `tbs` into the graph's input tensors (as many batches, same
    shapes and dtypes: `fits`) and replays the captured updates; it returns the graph's
    output tensors, one per update, overwritten by the next replay.
    """

    def __init__(self, step: Callable[[TensorBatch], Tensor], tbs: Sequence[TensorBatch],
                 state: Callable[[], list[Tensor]], zero_grad: Callable[[], None]) -> None:
        self.state = state
        self.inputs = [TensorBatch(*(t.clone() for t in tb)) for tb in tbs]
        saved = self._snapshot()
        device = tbs[0].obs.device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up (and compile) outside the capture
            for _ in range(3):
                zero_grad()
                step(self.inputs[0])
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: an actor on another thread (async mode) keeps using the GPU
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.outputs = []
            for tb in self.inputs:
                zero_grad()  # backward allocates the gradients in the graph
                self.outputs.append(step(tb))
        self._restore(saved)

    def fits(self, tbs: Sequence[TensorBatch]) -> bool:
        return len(tbs) == len(self.inputs) and all(
            a.shape == b.shape and a.dtype == b.dtype
            for mine, theirs in zip(self.inputs, tbs) for a, b in zip(mine, theirs, strict=True))

    def replay(self, tbs: Sequence[TensorBatch]) -> list[Tensor]:
        for mine, theirs in zip(self.inputs, tbs, strict=True):
            for dst, src in zip(mine, theirs, strict=True):
                dst.copy_(src, non_blocking=True)
        self.graph.replay()
        return self.outputs

    @torch.no_grad()
    def _snapshot(self) -> dict[int, tuple[Tensor, Tensor]]:
        """id -> (tensor, copy); the tensor is kept so that its id stays its own."""
        return {id(t): (t, t.clone()) for t in self.state()}

    @torch.no_grad()
    def _restore(self, saved: dict[int, tuple[Tensor, Tensor]]) -> None:
        """Put back what the warm-up changed; optimizer state the warm-up created (a fresh
        optimizer's first step makes it, all zeros) goes back to zeros."""
        for t in self.state():
            if id(t) in saved:
                t.copy_(saved[id(t)][1])
            else:
                t.zero_()


class GraphedGreedy:
    """The actor's `argmax_a net(x)` for inputs shaped like `example` (uint8 or float
    observations on a CUDA device), captured once as a CUDA graph. `net`'s parameters and
    buffers are read in place, so weights loaded into them later (`load_state_dict`
    copies) are the ones the next replay uses. Call it under `torch.inference_mode`.

    `__call__(x)` copies `x` into the graph's input and replays it -> int64[N] actions on
    the device, overwritten by the next call. The network must act in eval mode (a
    batch-norm network acting on batch statistics would update its running averages in
    the warm-up).
    """

    def __init__(self, net: nn.Module, example: Tensor) -> None:
        assert not net.training, "a graphed forward needs the network in eval mode"
        self.input = example.clone()
        device = example.device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up outside the capture (cuDNN picks kernels)
            for _ in range(3):
                net(self.input).argmax(dim=1)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.output = net(self.input).argmax(dim=1)

    def fits(self, x: Tensor) -> bool:
        return x.shape == self.input.shape and x.dtype == self.input.dtype

    def __call__(self, x: Tensor) -> Tensor:
        self.input.copy_(x, non_blocking=True)
        self.graph.replay()
        return self.output
