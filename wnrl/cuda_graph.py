"""A learner's whole update captured once as a CUDA graph and replayed (`learner.cuda_graph`).

A batch-32 Nature-CNN update is a few hundred small kernels, so on a GPU its time
is mostly launch overhead, which a graph replay pays once (3.5-4.5x on an H200,
docs/gpu.md). The capture runs three warm-up updates on the first batch on a side
stream (compiling them, if the learner compiles), then records one update; the
warm-up's changes to the weights, buffers and optimizer state are put back, so a
graphed learner takes exactly the steps an ungraphed one takes. The optimizer
must be `capturable` (step counters on the device).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from wnrl.losses import TensorBatch


class GraphedUpdate:
    """`step` (a learner's loss, backward and optimizer step on gradients that start from
    None: TensorBatch -> float32[3 + B]) captured as one CUDA graph on `tb`'s device.
    `module` and `optimizer` hold every tensor `step` changes in place.

    `replay(tb)` copies `tb` into the graph's input tensors (same shapes and dtypes:
    `fits`) and replays the captured update; it returns the graph's output tensor,
    float32[3 + B], overwritten by the next replay.
    """

    def __init__(self, step: Callable[[TensorBatch], Tensor], module: nn.Module,
                 optimizer: torch.optim.Optimizer, tb: TensorBatch) -> None:
        self.module, self.optimizer = module, optimizer
        self.inputs = TensorBatch(*(t.clone() for t in tb))
        saved = self._snapshot()
        opt, device = optimizer, tb.obs.device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up (and compile) outside the capture
            for _ in range(3):
                opt.zero_grad(set_to_none=True)
                step(self.inputs)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)  # backward allocates the gradients in the graph
        # thread_local: an actor on another thread (async mode) keeps using the GPU
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.output = step(self.inputs)
        self._restore(saved)

    def fits(self, tb: TensorBatch) -> bool:
        return all(a.shape == b.shape and a.dtype == b.dtype
                   for a, b in zip(self.inputs, tb, strict=True))

    def replay(self, tb: TensorBatch) -> Tensor:
        for dst, src in zip(self.inputs, tb, strict=True):
            dst.copy_(src, non_blocking=True)
        self.graph.replay()
        return self.output

    def _state_tensors(self) -> list[Tensor]:
        """Every tensor an update changes in place: the module's parameters and buffers (BN
        statistics) and the optimizer's state."""
        out = [*self.module.parameters(), *self.module.buffers()]
        for st in self.optimizer.state.values():
            out += [v for v in st.values() if isinstance(v, Tensor)]
        return out

    @torch.no_grad()
    def _snapshot(self) -> dict[int, tuple[Tensor, Tensor]]:
        """id -> (tensor, copy); the tensor is kept so that its id stays its own."""
        return {id(t): (t, t.clone()) for t in self._state_tensors()}

    @torch.no_grad()
    def _restore(self, saved: dict[int, tuple[Tensor, Tensor]]) -> None:
        """Put back what the warm-up changed; optimizer state the warm-up created (a fresh
        optimizer's first step makes it, all zeros) goes back to zeros."""
        for t in self._state_tensors():
            if id(t) in saved:
                t.copy_(saved[id(t)][1])
            else:
                t.zero_()

