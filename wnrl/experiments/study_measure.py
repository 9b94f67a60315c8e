"""Direct measurements for the noise study: update cost per agent, and batch norm's
noise and cost against minibatch size.

Both run the real `Learner` and Q-networks on replay-like states gathered by
`collect_states` (an epsilon-greedy policy of the given network in the env), on
the CPU with the caller's torch thread count. Timings are medians over repeats
interleaved across agents/networks, so a slow spell of the (shared) machine
hits every contender alike.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wnrl.checkpoint import load_latest_valid
from wnrl.config import Config, load_config
from wnrl.envs import make_env
from wnrl.learner import Learner
from wnrl.noise import batch_dependence
from wnrl.replay import Batch
from wnrl.timing import interleaved
from wnrl.training import parts as run_parts

SWEEP_SIZES = (32, 64, 256, 1024)
ATARI_SHAPE = (4, 84, 84)


def network_for(cfg: Config, obs_shape: Sequence[int], num_actions: int,
                run_dir: Path | None = None) -> nn.Module:
    """The Q-network of `cfg`'s agent; with the online weights of `run_dir`'s latest
    checkpoint when given (else freshly initialized)."""
    net = run_parts.network_for(cfg, obs_shape, num_actions)
    if run_dir is not None:
        _, state = load_latest_valid(run_dir)
        net.load_state_dict(state["learner"]["online"])
    return net


@torch.no_grad()
def collect_states(cfg: Config, net: nn.Module, n: int, epsilon: float = 0.2,
                   seed: int = 0) -> np.ndarray:
    """`n` observations (the env's obs dtype, [n, *obs_shape]) visited by an epsilon-greedy
    policy of `net` (eval mode) in `cfg.env`, like the states a replay buffer holds."""
    env = make_env(cfg.env, seed=seed, training=True)
    rng = np.random.default_rng(seed)
    net = net.eval()
    obs, rows = env.reset(), []
    while sum(len(r) for r in rows) < n:
        rows.append(obs.copy())
        greedy = net(torch.as_tensor(obs)).argmax(dim=1).numpy()
        explore = rng.random(env.num_envs) < epsilon
        actions = np.where(explore, rng.integers(env.num_actions, size=env.num_envs), greedy)
        obs = env.step(actions).obs
    env.close()
    return np.concatenate(rows)[:n]


def random_batch(states: np.ndarray, batch_size: int, num_actions: int,
                 rng: np.random.Generator) -> Batch:
    """A replay `Batch` of `batch_size` rows drawn from `states` (random actions/rewards)."""
    i, j = rng.integers(len(states), size=(2, batch_size))
    return Batch(obs=states[i], action=rng.integers(num_actions, size=batch_size),
                 reward=rng.standard_normal(batch_size).astype(np.float32),
                 discount=np.full(batch_size, 0.99, np.float32), next_obs=states[j],
                 weight=np.ones(batch_size, np.float32), index=np.arange(batch_size))


def interleaved_update_ms(learners: dict[str, Learner], batches: Sequence[Batch],
                          repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median milliseconds of one `Learner.update` per learner, the learners taking
    turns within each repeat (each learner cycles through `batches`)."""
    def step(learner: Learner, it: Iterator[Batch]) -> Callable[[], object]:
        return lambda: learner.update(next(it))

    fns = {k: step(lr, itertools.cycle(batches)) for k, lr in learners.items()}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    return {k: 1e3 * v for k, v in interleaved(fns, 1, repeats).items()}


def make_learners(cfgs: dict[str, Config], obs_shape: Sequence[int], num_actions: int,
                  batch_size: int | None = None) -> dict[str, Learner]:
    """A CPU `Learner` per agent config, with a fresh network (`batch_size` overrides)."""
    out = {}
    for name, cfg in cfgs.items():
        lc = dataclasses.replace(cfg.learner, device="cpu",
                                 batch_size=batch_size or cfg.learner.batch_size)
        torch.manual_seed(0)
        out[name] = Learner(network_for(cfg, obs_shape, num_actions), lc)
    return out


def update_costs(cfgs: dict[str, Config], states: np.ndarray, num_actions: int,
                 repeats: int = 20, baseline: str = "dqn") -> dict[str, dict[str, float]]:
    """Update time per agent (ms, median) at its config's batch size on `states`, and
    relative to `baseline` (the standard network). Returns agent -> {ms, ratio}."""
    rng = np.random.default_rng(0)
    bs = {c.learner.batch_size for c in cfgs.values()}
    batches = [random_batch(states, max(bs), num_actions, rng) for _ in range(4)]
    learners = make_learners(cfgs, states.shape[1:], num_actions, batch_size=max(bs))
    ms = interleaved_update_ms(learners, batches, repeats)
    base = ms.get(baseline, float("nan"))
    return {k: {"ms": v, "ratio": v / base} for k, v in ms.items()}


def bn_sweep(cfg: Config, base_cfg: Config, net: nn.Module, states: np.ndarray,
             num_actions: int, sizes: Sequence[int] = SWEEP_SIZES, probes: int = 16,
             draws: int = 8, repeats: int = 10) -> list[dict[str, float]]:
    """Batch norm's noise and update cost at each minibatch size.

    `net`: the (trained) batch-norm network measured by `batch_dependence` with `probes`
    probe states and companions from `states` (needs len(states) > max(sizes)).
    Update time of a fresh bn learner (`cfg`) and of the standard network (`base_cfg`)
    at each size, interleaved. Returns one row per size.
    """
    if len(states) < max(sizes) + probes:
        raise ValueError(f"need at least {max(sizes) + probes} states, got {len(states)}")
    rng = np.random.default_rng(1)
    x = torch.as_tensor(states)
    probe, pool = x[:probes], x[probes:]
    rows = []
    for b in sizes:
        noise = batch_dependence(net, probe, pool, b, draws=draws)
        learners = make_learners({"bn": cfg, "standard": base_cfg}, states.shape[1:],
                                 num_actions, batch_size=b)
        batches = [random_batch(states, b, num_actions, rng) for _ in range(2)]
        ms = interleaved_update_ms(learners, batches, repeats)
        rows.append({"batch_size": b, **{k: noise[k] for k in
                                         ("q_std", "q_std_rel", "action_flip_frac")},
                     "update_ms_bn": ms["bn"], "update_ms_standard": ms["standard"],
                     "update_ms_per_sample_bn": ms["bn"] / b})
    return rows


def load_agent_configs(configs_dir: Path, tag: str, agents: Sequence[str],
                       overrides: Sequence[str] = ()) -> dict[str, Config]:
    """`load_config(<configs_dir>/<tag>_<agent>.yaml, overrides)` per agent."""
    return {a: load_config(configs_dir / f"{tag}_{a}.yaml", list(overrides)) for a in agents}
