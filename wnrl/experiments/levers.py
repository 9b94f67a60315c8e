"""Speed levers of the CPU learner and actor, as ratios measured interleaved in one process.

    python -m wnrl.experiments.levers [--rounds 16] [--config configs/pong.yaml]

Each round times every variant once, in turn, so that a shared machine's drift hits all
of them alike; a variant's figure is the median over rounds of its time divided by its
reference's time in the same round (with the quartiles). Variants (the config's agent's
network, eager fp32, its batch size):

- the update with a channels-last network, and with oneDNN (`torch.backends.mkldnn`)
  off, against the default update;
- the update and the folded actor's forward (one observation per env) with 2 torch
  threads against 1;
- one step of the config's vector env with 2 ale-py threads against 1.

The numbers behind docs/performance.md ("Learner modes: `auto` is measured"). Compiled
against eager is the autotune's business (`wnrl.autotune`), not timed here.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from wnrl.config import Config, load_config
from wnrl.envs import make_env
from wnrl.learner import Learner
from wnrl.nn import fold_weight_norm
from wnrl.replay import Batch
from wnrl.training.parts import network_for

Timings = dict[str, list[float]]


def random_batch(cfg: Config, obs_shape: tuple[int, ...], num_actions: int) -> Batch:
    """A batch of `cfg.learner.batch_size` random uint8 observations."""
    b, rng = cfg.learner.batch_size, np.random.default_rng(0)
    obs = rng.integers(0, 256, (2, b, *obs_shape), dtype=np.uint8)
    return Batch(obs=obs[0], action=rng.integers(num_actions, size=b),
                 reward=rng.standard_normal(b).astype(np.float32),
                 discount=np.full(b, 0.99, np.float32), next_obs=obs[1],
                 weight=np.ones(b, np.float32), index=np.arange(b))


def _timed(times: Timings, name: str, fn: Callable[[], object]) -> None:
    start = time.perf_counter()
    fn()
    times.setdefault(name, []).append(time.perf_counter() - start)


def measure(cfg: Config, rounds: int) -> Timings:
    """Seconds per call of every variant, one entry per round (see the module doc)."""
    envs = {n: make_env(replace(cfg.env, num_threads=n), seed=cfg.seed, training=True)
            for n in (1, 2)}
    obs_shape, num_actions = envs[1].obs_shape, envs[1].num_actions
    lcfg = replace(cfg.learner, device="cpu", compile="false", precision="fp32")

    def learner(channels_last: bool) -> Learner:
        torch.manual_seed(cfg.seed)
        net_cfg = replace(cfg, network=replace(cfg.network, channels_last=channels_last))
        return Learner(network_for(net_cfg, obs_shape, num_actions), lcfg)

    batch = random_batch(cfg, obs_shape, num_actions)
    plain, nhwc, no_dnn = learner(False), learner(True), learner(False)
    actor = fold_weight_norm(plain.online).eval()
    obs = torch.as_tensor(batch.obs[:cfg.env.num_envs])
    actions = np.zeros(cfg.env.num_envs, dtype=np.int64)
    for env in envs.values():
        env.reset()
    threads, times = torch.get_num_threads(), {}
    for r in range(rounds + 1):  # the first round warms up and is dropped
        torch.set_num_threads(2)
        _timed(times, "update", lambda: plain.update(batch))
        _timed(times, "update channels_last", lambda: nhwc.update(batch))
        with torch.backends.mkldnn.flags(enabled=False):
            _timed(times, "update oneDNN off", lambda: no_dnn.update(batch))
        with torch.no_grad():
            _timed(times, "actor forward 2 threads", lambda: actor(obs))
            torch.set_num_threads(1)
            _timed(times, "actor forward 1 thread", lambda: actor(obs))
        _timed(times, "update 1 thread", lambda: plain.update(batch))
        for n, env in envs.items():
            _timed(times, f"env step {n} threads", lambda env=env: env.step(actions))
        if r == 0:
            times = {}
    torch.set_num_threads(threads)
    return times


# variant -> its reference, in the same round
PAIRS = {"update channels_last": "update", "update oneDNN off": "update",
         "update": "update 1 thread", "actor forward 2 threads": "actor forward 1 thread",
         "env step 2 threads": "env step 1 threads"}


def report(times: Timings) -> list[str]:
    """One line per pair: medians in ms and the per-round ratio (median, quartiles)."""
    lines = []
    for name, ref in PAIRS.items():
        ratios = [a / b for a, b in zip(times[name], times[ref], strict=True)]
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        lines.append(f"{name} / {ref}: {statistics.median(ratios):.3f} "
                     f"({q[0]:.3f}-{q[2]:.3f}); {1000 * statistics.median(times[name]):.2f} "
                     f"vs {1000 * statistics.median(times[ref]):.2f} ms")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m wnrl.experiments.levers",
                                description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/pong.yaml")
    p.add_argument("--rounds", type=int, default=16)
    opt = p.parse_args(argv)
    if opt.rounds < 1:
        p.error("--rounds must be at least 1")
    cfg = load_config(opt.config)
    print(f"{torch.get_num_threads()} torch threads, {opt.rounds} rounds, {opt.config}")
    for line in report(measure(cfg, opt.rounds)):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
