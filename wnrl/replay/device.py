"""`DeviceReplay`: `ReplayBuffer`'s replay with every array on the learner's device.

Why: on a GPU the CPU replay costs the learner a host-side sample (about 0.5 ms per
batch) and a host-to-device copy of every batch, while a batch-32 update's kernels take
about as long. Here the frame ring, the per-row fields (action, reward, flags), the
priorities and the random generator live on `device`; sampling (a prefix sum and
`torch.searchsorted`), frame-stack assembly and n-step targets are tensor gathers there,
so a batch never crosses the PCIe bus: only each env step's new rows do, once, in `add`.
On the CPU the same code runs on CPU tensors (device "cpu"); tests/test_replay_device.py
checks both against `ReplayBuffer` and against a real env.

Semantics are `ReplayBuffer`'s (`wnrl.replay.storage`, `wnrl.replay.n_step`,
`wnrl.replay.samplers`): per-env rings of `ring = capacity // num_envs` rows, row `t` of
stream `s` at flat position `s * ring + t % ring`, global ids `t * num_envs + s`; stacks
rebuilt from the newest frames and zero-filled before an episode's start; n-step windows
that stop at the first terminal/truncated row; a row is sampleable when stored, valid, not
hidden, with every stack frame kept and a complete window. Prioritized sampling is
proportional and stratified over the batch with weights (P_i / min_batch P)^-beta.

What differs:
- `get` and `sample` return a `Batch` (`wnrl.core.types`) whose fields are torch tensors on
  `device` (obs_dtype / float32 obs, int64 action and index, float32 reward, discount and
  weight), not NumPy arrays.
- The sampleable rows are kept as a mask, `priority > 0` over the flat positions (uniform
  replay stores 1.0 there), updated in `add`, `hide` and `update_priorities`, instead of a
  sum tree; a draw is a search in the prefix sum of that array (O(capacity) per batch, one
  scan on the device).
- The generator is a `torch.Generator` on `device` seeded with `seed`: the same seed gives
  other draws than `ReplayBuffer`'s NumPy generator.
- `state_dict` is `ReplayBuffer`'s checkpoint format (same keys and shapes, CPU tensors)
  except `rng`, the torch generator's state (uint8 tensor). Either replay loads the
  other's state: the rows, priorities and max_priority carry over exactly and the
  generator is reseeded from the other's state (deterministic, but other draws), so a
  run can resume with its replay moved between host and device.
- Host syncs: `sample` reads one scalar (is anything sampleable?) unless `check=False`;
  `get`, `hide`, `update_priorities` (finite check) and `sampleable_indices` read back too.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from wnrl.config import ConfigError, ReplayConfig
from wnrl.core.types import Batch, Transition
from wnrl.replay.samplers import seed_from_state
from wnrl.replay.storage import (
    HIDDEN,
    TERMINAL,
    TRUNCATED,
    VALID,
    FrameRing,
    ReplayMemoryError,
    available_memory_bytes,
    check_checkpoint_config,
    checkpoint_config,
)

__all__ = ["DeviceReplay", "importance_weights", "load_generator_state", "n_step_targets",
           "window_complete", "window_length"]


def window_length(terminal: Tensor, truncated: Tensor) -> Tensor:
    """int64[B] window lengths m in 1..n of windows with terminal, truncated bool[B, n]: the
    index of the first terminal or truncated row + 1, else n."""
    stop = terminal | truncated
    leading = (stop.cumsum(dim=1) == 0).sum(dim=1)  # rows before the first stop
    return leading.clamp(max=stop.shape[1] - 1) + 1


def n_step_targets(reward: Tensor, terminal: Tensor, truncated: Tensor,
                   powers: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """`wnrl.replay.n_step.n_step_targets` on tensors: windows reward float32[B, n],
    terminal, truncated bool[B, n], powers float64[n + 1] (gamma ** k) -> (return
    float32[B], discount float32[B], m int64[B]). The float64 return is summed row by row,
    in NumPy's order for n < 8 (bit-identical results there)."""
    n = reward.shape[1]
    last = window_length(terminal, truncated) - 1
    inside = torch.arange(n, device=reward.device) <= last[:, None]
    term = reward.double() * powers[:n] * inside
    ret = term[:, 0]
    for k in range(1, n):  # n is the window length, not the batch
        ret = ret + term[:, k]
    hit_terminal = terminal.gather(1, last[:, None])[:, 0]
    discount = torch.where(hit_terminal, torch.zeros_like(ret), powers[last + 1])
    return ret.float(), discount.float(), last + 1


def window_complete(first: Tensor, length: Tensor, terminal: Tensor, written: int) -> Tensor:
    """bool[B]: windows starting at rows first int64[B], of lengths int64[B] and terminal
    bool[B, n], have every row their target needs among rows 0 .. written-1: the bootstrap
    row first + length is written, or the window ends in a terminal row."""
    ends_terminal = terminal.gather(1, (length - 1)[:, None])[:, 0]
    return (first + length < written) | ends_terminal


def importance_weights(prob: Tensor, beta: float) -> Tensor:
    """float32[B] weights (P_i / min_j P_j) ** -beta of a batch drawn with probabilities
    prob float64[B] > 0 (`wnrl.sum_tree.importance_weights`): the largest weight is 1."""
    return ((prob / prob.min()) ** -float(beta)).float()


def torch_dtype(dtype: np.dtype) -> torch.dtype:
    """The torch dtype of a NumPy dtype."""
    return torch.from_numpy(np.zeros(0, dtype)).dtype


def load_generator_state(generator: torch.Generator, rng: Tensor | dict) -> None:
    """Set `generator` to a saved state: a torch generator state of its own kind as is;
    any other (NumPy's bit-generator dict, another device's state) reseeds it, the same
    way for the same state."""
    if isinstance(rng, Tensor):
        try:
            generator.set_state(rng.to("cpu", torch.uint8))
            return
        except (RuntimeError, ValueError):  # another device's generator
            pass
    generator.manual_seed(seed_from_state(rng))


def free_bytes(device: torch.device) -> int:
    """Memory free for new arrays on `device`: the CUDA allocator's view, else MemAvailable."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return available_memory_bytes()


class DeviceReplay:
    """Uniform or proportional-prioritized replay over per-env frame rings on `device`.

    Arguments as `ReplayBuffer`'s, plus device. Raises ConfigError on bad shapes,
    ReplayMemoryError if the arrays do not fit on the device.

    Tensors on `device` (flat positions `stream * ring + slot`): frames
    obs_dtype[capacity + 1, *frame_shape] (the last one stays zero: stack padding),
    action int32[capacity], reward float32[capacity], flags uint8[capacity] (VALID |
    TERMINAL | TRUNCATED | HIDDEN), priority float64[capacity + 1] (> 0 exactly on the
    sampleable rows; the last entry is a scratch slot for ignored writes, never read) and
    max_priority float64[] (what new rows enter at; 1.0 for uniform replay).
    `t` (host int) is rows added per stream.
    """

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], obs_dtype: np.dtype | type,
                 num_envs: int, *, frame_stack: int, n_step: int = 1, gamma: float = 0.99,
                 prioritized: bool = False, alpha: float = 0.6, eps: float = 1e-6,
                 seed: int = 0, device: str | torch.device = "cpu") -> None:
        obs_shape = tuple(int(d) for d in obs_shape)
        self.stacked = len(obs_shape) > 1
        if frame_stack != (obs_shape[0] if self.stacked else 1):
            raise ConfigError(f"replay frame_stack={frame_stack} is invalid for obs_shape "
                              f"{obs_shape}: must be obs_shape[0] for images, 1 for vectors")
        self.num_envs, self.n_step, self.gamma = int(num_envs), int(n_step), float(gamma)
        self.ring = int(capacity) // self.num_envs
        self.capacity, self.stack = self.ring * self.num_envs, int(frame_stack)
        if self.ring < self.stack + self.n_step + 1:
            raise ConfigError(f"replay.capacity={capacity} is invalid: must be >= num_envs * (frame"
                              f"_stack + n_step + 1) = {num_envs * (self.stack + n_step + 1)}")
        self.obs_shape, self.frame_shape = obs_shape, obs_shape[int(self.stacked):]
        self.obs_dtype = np.dtype(obs_dtype) if self.stacked else np.dtype(np.float32)
        self.prioritized, self.alpha, self.eps = bool(prioritized), float(alpha), float(eps)
        self.device = torch.device(device)
        need = self.bytes_needed(capacity, obs_shape, obs_dtype, num_envs)
        if need > (have := free_bytes(self.device)):
            raise ReplayMemoryError(f"replay.capacity={capacity} needs {need:,} bytes but only "
                                    f"{have:,} are free on {self.device}: lower replay.capacity")
        on = {"device": self.device}
        rows = self.capacity
        self.frames = torch.zeros((rows + 1, *self.frame_shape), dtype=torch_dtype(self.obs_dtype),
                                  **on)
        self.action = torch.zeros(rows, dtype=torch.int32, **on)
        self.reward = torch.zeros(rows, dtype=torch.float32, **on)
        self.flags = torch.zeros(rows, dtype=torch.uint8, **on)
        self.priority = torch.zeros(rows + 1, dtype=torch.float64, **on)
        self.max_priority = torch.ones((), dtype=torch.float64, **on)
        self.powers = torch.from_numpy(self.gamma ** np.arange(self.n_step + 1,
                                                               dtype=np.float64)).to(**on)
        self.streams = torch.arange(self.num_envs, **on)
        self.ahead = torch.arange(self.n_step, **on)  # a window's rows after its first
        self.back = torch.arange(self.stack - 1, -1, -1, **on)  # a stack's rows before its last
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(seed))
        self.t = 0

    @classmethod
    def from_config(cls, cfg: ReplayConfig, obs_shape: tuple[int, ...],
                    obs_dtype: np.dtype | type, num_envs: int, gamma: float, seed: int = 0,
                    device: str | torch.device = "cpu") -> DeviceReplay:
        """Build from `ReplayConfig` as `ReplayBuffer.from_config` does, on `device`."""
        return cls(cfg.capacity, obs_shape, obs_dtype, num_envs,
                   frame_stack=obs_shape[0] if len(obs_shape) > 1 else 1, n_step=cfg.n_step,
                   gamma=gamma, prioritized=cfg.prioritized, alpha=cfg.priority_alpha,
                   eps=cfg.priority_eps, seed=seed, device=device)

    @staticmethod
    def bytes_needed(capacity: int, obs_shape: tuple[int, ...], obs_dtype: np.dtype | type,
                     num_envs: int) -> int:
        """Bytes allocated on the device: `FrameRing`'s rows plus float64 priorities."""
        rows = capacity // num_envs * num_envs
        return FrameRing.bytes_needed(capacity, obs_shape, obs_dtype, num_envs) + 8 * (rows + 1)

    @property
    def nbytes(self) -> int:
        """Bytes of the device tensors (equals `bytes_needed`)."""
        return sum(a.numel() * a.element_size()
                   for a in (self.frames, self.action, self.reward, self.flags, self.priority))

    def __len__(self) -> int:
        """Rows stored (valid or not): num_envs * min(t, ring)."""
        return self.num_envs * min(self.t, self.ring)

    @property
    def steps_added(self) -> int:
        """Vector steps added (rows per stream, overwritten ones included)."""
        return self.t

    @property
    def priorities(self) -> Tensor | None:
        """float64[num_envs, ring] copy of the stored priorities on the device (0: not
        sampleable); None for uniform replay."""
        if not self.prioritized:
            return None
        return self.priority[: self.capacity].reshape(self.num_envs, self.ring).clone()

    # --- positions, ids, ranges ----------------------------------------------------------

    def lo(self, t: int) -> int:
        """Oldest sampleable row after `t` adds: the first C-1 stored rows lack older frames."""
        return 0 if t <= self.ring else t - self.ring + self.stack - 1

    def pos(self, row: Tensor, stream: Tensor) -> Tensor:
        """Flat positions int64[...] of rows `row` of streams `stream` (broadcast)."""
        return stream * self.ring + row % self.ring

    def ids(self, pos: Tensor) -> Tensor:
        """Global ids int64[K] of the rows stored at flat positions pos int64[K]."""
        stream, slot = pos // self.ring, pos % self.ring
        row = slot + self.ring * torch.div(self.t - 1 - slot, self.ring, rounding_mode="floor")
        return row * self.num_envs + stream

    def split(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """(row, stream) int64[K] of global ids int64[K] (floor division)."""
        return torch.div(index, self.num_envs, rounding_mode="floor"), index % self.num_envs

    def grid(self, first: int) -> tuple[Tensor, Tensor]:
        """(row, stream) int64[K] for rows first .. t-1 of every stream, in id order."""
        rows = torch.arange(first, self.t, device=self.device)
        return rows.repeat_interleave(self.num_envs), self.streams.repeat(len(rows))

    def as_index(self, index: np.ndarray | Tensor) -> Tensor:
        """Global ids as int64[K] on the device (from NumPy, a list or a tensor)."""
        return torch.as_tensor(index, dtype=torch.int64, device=self.device).reshape(-1)

    # --- writing rows ----------------------------------------------------------------------

    def add(self, transition: Transition) -> None:
        """Store one row per env stream (every env step, valid or not): the newest frame
        (vector obs: all of it), action, reward and flags, copied to the device once.
        Shapes: `Transition`. ValueError (nothing stored) if obs is not [num_envs,
        *obs_shape]."""
        n, slot = self.num_envs, self.t % self.ring
        obs = np.asarray(transition.obs)
        if obs.shape != (n, *self.obs_shape):
            raise ValueError(f"replay.add: obs shape {obs.shape} != {(n, *self.obs_shape)}")
        flags = (np.asarray(transition.valid, bool) * VALID
                 | np.asarray(transition.terminal, bool) * TERMINAL
                 | np.asarray(transition.truncated, bool) * TRUNCATED).astype(np.uint8)
        frame = (obs[:, -1] if self.stacked else obs).astype(self.obs_dtype, copy=False)
        pos = self.streams * self.ring + slot
        self.frames[pos] = self.upload(frame)
        self.action[pos] = self.upload(np.asarray(transition.action).astype(np.int32))
        self.reward[pos] = self.upload(np.asarray(transition.reward).astype(np.float32))
        self.flags[pos] = new = self.upload(flags)
        if self.t > 0:
            self.close_open_episodes(pos - 1 if slot > 0 else pos + self.ring - 1, new)
        self.t += 1
        self.refresh_sampleable()

    def upload(self, array: np.ndarray) -> Tensor:
        """A host array as a tensor on the device (one copy)."""
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device, non_blocking=True)

    def close_open_episodes(self, prev: Tensor, new_flags: Tensor) -> None:
        """An episode that ends without a done flag ends by truncation: mark TRUNCATED the
        previous rows (flat positions prev int64[N]) of streams whose new row (flags
        uint8[N]) is invalid."""
        invalid = (new_flags & VALID) == 0
        open_end = invalid & ((self.flags[prev] & (TERMINAL | TRUNCATED)) == 0)
        self.flags[prev] |= open_end.to(torch.uint8) * TRUNCATED

    def refresh_sampleable(self) -> None:
        """After an add: zero the priority of rows that left the sampleable range; rows
        whose window the newest row completed enter at max_priority."""
        t = self.t
        old = torch.arange(self.lo(t - 1), self.lo(t), device=self.device)
        self.priority[self.pos(old[None, :], self.streams[:, None]).reshape(-1)] = 0.0
        row, stream = self.grid(max(self.lo(t), t - 1 - self.n_step))
        pos = self.pos(row, stream)
        current = self.priority[pos]
        fresh = self.sampleable(row, stream) & (current == 0)
        self.priority[pos] = torch.where(fresh, self.max_priority, current)

    def hide(self, index: np.ndarray | Tensor) -> None:
        """Never sample rows int64[K] (global ids; unknown ones ignored), which stay part of
        their episodes: their stacks would need frames this replay never received."""
        row, stream = self.split(self.as_index(index))
        stored = (row >= max(0, self.t - self.ring)) & (row < self.t)
        pos = self.pos(row, stream)[stored]
        self.flags[pos] |= HIDDEN
        self.priority[pos] = 0.0

    # --- reading rows ----------------------------------------------------------------------

    def window(self, row: Tensor, stream: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The n-step windows of rows int64[K]: rows row .. row+n-1 as (reward float32[K, n],
        terminal bool[K, n], truncated bool[K, n]); rows not yet added end nothing."""
        ahead = row[:, None] + self.ahead
        pos = self.pos(ahead, stream[:, None])
        flags, written = self.flags[pos], ahead < self.t
        term = ((flags & TERMINAL) != 0) & written
        trunc = ((flags & TRUNCATED) != 0) & written
        return self.reward[pos], term, trunc

    def sampleable(self, row: Tensor, stream: Tensor) -> Tensor:
        """bool[K]: rows int64[K] stored, valid, not hidden, with every stack frame kept and
        a complete window (computed from the flags, not the priority mask)."""
        inside = (row >= self.lo(self.t)) & (row < self.t)
        row = torch.where(inside, row, torch.full_like(row, self.t - 1))
        flags = self.flags[self.pos(row, stream)]
        ok = inside & ((flags & (VALID | HIDDEN)) == VALID)
        _, term, trunc = self.window(row, stream)
        return ok & window_complete(row, window_length(term, trunc), term, self.t)

    def sampleable_indices(self) -> Tensor:
        """int64[M] global ids of every sampleable row (the rows draws come from), ascending."""
        pos = torch.nonzero(self.priority[: self.capacity] > 0)[:, 0]
        return torch.sort(self.ids(pos)).values

    def stacks(self, row: Tensor, stream: Tensor, seen: Tensor) -> Tensor:
        """Observations of rows int64[K] (all zeros where seen bool[K] is False):
        obs_dtype[K, *obs_shape]; frames before an episode's start are zero."""
        src = row[:, None] - self.back  # rows, oldest frame first
        keep = (src >= max(0, self.t - self.ring)) & (src < self.t) & seen[:, None]
        pos = self.pos(src, stream[:, None])
        if self.stack > 1:  # frame t-k is kept iff rows t-k .. t-1 are all valid
            prev = (self.flags[pos[:, :-1]] & VALID).to(torch.int32)
            kept = prev.flip(1).cummin(dim=1).values.flip(1) != 0
            keep[:, :-1] &= kept
        src_pos = torch.where(keep, pos, torch.full_like(pos, self.capacity))
        out = self.frames.index_select(0, src_pos.reshape(-1))  # 10x faster than [] on CPU
        out = out.reshape(*src_pos.shape, *self.frame_shape)
        return out if self.stacked else out[:, 0]

    def get(self, index: np.ndarray | Tensor) -> Batch:
        """The batch (tensors on the device) for global ids int64[B], weights 1;
        ValueError if a row is not sampleable."""
        index = self.as_index(index)
        if not bool((ok := self.sampleable(*self.split(index))).all()):
            raise ValueError(f"replay rows {index[~ok][:5].tolist()} are not sampleable")
        return self.batch(index, torch.ones(len(index), dtype=torch.float32,
                                            device=self.device))

    def batch(self, index: Tensor, weight: Tensor) -> Batch:
        """The Batch of rows index int64[B] with weights float32[B], every field a tensor on
        the device: obs/next_obs obs_dtype[B, *obs_shape], action int64[B], reward and
        discount float32[B] (n-step targets), weight, index."""
        row, stream = self.split(index)
        ret, disc, m = n_step_targets(*self.window(row, stream), self.powers)
        nxt = row + m
        both = self.stacks(torch.cat([row, nxt]), torch.cat([stream, stream]),
                           torch.cat([torch.ones_like(row, dtype=torch.bool), nxt < self.t]))
        action = self.action[self.pos(row, stream)].long()
        b = len(row)
        return Batch(both[:b], action, ret, disc, both[b:], weight, index)

    # --- drawing ---------------------------------------------------------------------------

    def prefix(self) -> Tensor:
        """float64[capacity] prefix sums of the priorities, made non-decreasing and flat over
        zero priorities (a parallel scan may round unevenly), so a search never lands on a
        row of zero priority. The last entry is the total."""
        p = self.priority[: self.capacity]
        c = torch.where(p > 0, p.cumsum(0), torch.zeros_like(p))
        return c.cummax(0).values

    def draw(self, c: Tensor, batch_size: int, stratified: bool) -> Tensor:
        """Flat positions int64[B] drawn in proportion to priority (uniform replay: 1.0 on
        every sampleable row) from its prefix sums c (`prefix`), one draw per equal slice of
        the mass if stratified."""
        u = torch.rand(batch_size, dtype=torch.float64, device=self.device,
                       generator=self.generator)
        if stratified:
            u = (torch.arange(batch_size, device=self.device) + u) / batch_size
        return self.search(c, u * c[-1])

    def search(self, c: Tensor, mass: Tensor) -> Tensor:
        """Flat positions int64[K] holding prefix sums mass float64[K] in [0, total] of the
        prefix sums c float64[capacity] (`prefix`): the k with c[k-1] <= mass < c[k]; mass
        at or past the total goes to the last row of positive priority."""
        total = c[-1]
        mass = torch.minimum(mass, torch.nextafter(total, torch.zeros_like(total)))
        return torch.searchsorted(c, mass, right=True).clamp(max=self.capacity - 1)

    def locate(self, mass: np.ndarray | Tensor) -> tuple[Tensor, Tensor]:
        """As `ReplayBuffer.locate`: rows holding prefix sums mass float64[K] in [0, total)
        of the priorities: (global ids int64[K], their priorities float64[K], all > 0)."""
        assert self.prioritized, "locate needs prioritized replay"
        mass = torch.as_tensor(mass, dtype=torch.float64, device=self.device).reshape(-1)
        pos = self.search(self.prefix(), mass)
        return self.ids(pos), self.priority[pos]

    def sample(self, batch_size: int, beta: float = 0.4, check: bool = True) -> Batch:
        """B transitions with replacement, a Batch of device tensors: uniform (weights 1),
        or proportional to priority, stratified, with weights `importance_weights(P,
        beta)`. check: raise ValueError if no row is sampleable (reads one scalar back;
        with False nothing syncs and an empty replay returns garbage)."""
        return self.sample_many(1, batch_size, beta, check)[0]

    def sample_many(self, n: int, batch_size: int, beta: float = 0.4,
                    check: bool = True) -> list[Batch]:
        """n batches of B, exactly what n `sample` calls in a row draw (the same generator
        draws, in order), for one prefix sum over the capacity and at most one scalar read
        back instead of n: nothing changes the replay between them."""
        c = self.prefix()
        total = c[-1]
        if check and not bool(total > 0):
            raise ValueError("replay has no sampleable transitions yet")
        out = []
        for _ in range(n):
            pos = self.draw(c, batch_size, stratified=self.prioritized)
            if self.prioritized:
                weight = importance_weights(self.priority[pos] / total, beta)
            else:
                weight = torch.ones(batch_size, dtype=torch.float32, device=self.device)
            out.append(self.batch(self.ids(pos), weight))
        return out

    # --- checkpoints -----------------------------------------------------------------------

    def rings(self, a: Tensor) -> Tensor:
        """A flat per-row tensor [capacity(+1), ...] viewed as [num_envs, ring, ...]."""
        return a[: self.capacity].reshape(self.num_envs, self.ring, *a.shape[1:])

    def state_dict(self) -> dict:
        """`ReplayBuffer.state_dict`'s format 1 (config, t, max_priority, rng, frames,
        action, reward, flags [num_envs, rows stored per stream, ...], priorities
        float64[capacity] if prioritized), every tensor on the CPU; rng is the torch
        generator's state (uint8 tensor)."""
        used = min(self.t, self.ring)
        state: dict = {"config": checkpoint_config(self), "t": self.t,
                       "max_priority": float(self.max_priority),
                       "rng": self.generator.get_state()}
        for name in ("frames", "action", "reward", "flags"):
            state[name] = self.rings(getattr(self, name))[:, :used].to("cpu").contiguous()
        if self.prioritized:
            state["priorities"] = self.priority[: self.capacity].to("cpu").clone()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict` of this class or of `ReplayBuffer` built with the same
        settings (ConfigError naming the first that differs). A generator state of another
        kind (NumPy's, or another device's) reseeds the generator from it."""
        check_checkpoint_config(self, state)
        self.t = int(state["t"])
        used = min(self.t, self.ring)
        for name in ("frames", "action", "reward", "flags"):
            self.rings(getattr(self, name))[:, :used] = state[name].to(self.device)
        self.max_priority = torch.tensor(float(state["max_priority"]), dtype=torch.float64,
                                         device=self.device)
        self.priority.zero_()
        if self.prioritized:
            self.priority[: self.capacity] = state["priorities"].to(self.device, torch.float64)
        else:  # uniform: 1.0 on exactly the sampleable rows
            row, stream = self.grid(self.lo(self.t))
            self.priority[self.pos(row, stream)] = self.sampleable(row, stream).double()
        load_generator_state(self.generator, state["rng"])

    def update_priorities(self, index: np.ndarray | Tensor,
                          priority: np.ndarray | Tensor) -> None:
        """Set priorities (|TD| + eps) ** alpha of rows int64[B] from |TD errors| float[B];
        stale ids (overwritten, not yet added, not sampleable) are ignored; of repeated ids
        one value is stored, and only stored values can raise max_priority. No-op for
        uniform replay. ValueError on a shape mismatch or a non-finite priority."""
        if not self.prioritized:
            return
        index = torch.as_tensor(index, dtype=torch.int64, device=self.device)
        value = torch.as_tensor(priority, device=self.device).to(torch.float64)
        value = (value.abs() + self.eps) ** self.alpha
        if (value.shape != index.shape or index.ndim != 1
                or not bool(torch.isfinite(value).all())):
            raise ValueError(f"update_priorities needs one finite priority per index: got "
                             f"{tuple(value.shape)} priorities for {tuple(index.shape)} indices")
        if len(index) == 0:
            return
        row, stream = self.split(index)
        pos = self.pos(row, stream)
        ok = (row >= self.lo(self.t)) & (row < self.t) & (self.priority[pos] > 0)
        scratch = torch.full_like(pos, self.capacity)
        self.priority[torch.where(ok, pos, scratch)] = value
        stored = torch.where(ok, self.priority[pos], torch.zeros_like(value))
        self.max_priority = torch.maximum(self.max_priority, stored.max())
