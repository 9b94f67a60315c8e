"""The group benchmark: aggregate env steps/s of K runs trained together vs a solo run.

    python scripts/benchmark.py --group 8 [--quick] [--device cuda] [--json benchmark_group.json]

For each setting (MinAtar: `configs/minatar_wn_dqn.yaml`; Pong: `configs/pong_wn_dqn.yaml`,
learner fp32 eager as the group's), a solo run (`build` + `Trainer`, the sync loop's
body) and a group of K (`build_group` + `GroupTrainer`) are built in this process with
their run directories in a temporary folder, both filled to `learning_starts` untimed,
then timed in turns: `rounds` rounds of `chunk` env steps per run (solo, group, solo,
group, ...), logging, replay sampling and the periodic work included. The figure is the
median over rounds of each round's ratio, group aggregate env steps/s (K x its steps /
its time) over solo env steps/s: ratios taken in one round share the machine's speed of
that moment. RSS per member is the process's resident memory growth while the group was
built and filled, divided by K (the solo run's growth is reported beside it). Learner
and actors run on `device` (fp32 eager, ungraphed: the group learner's mode); on CUDA a
second group with its update captured as one CUDA graph (`learner.cuda_graph=true`,
`wnrl.group.learner`) is timed in the same rounds, so the graph's lever on a group is a
ratio taken in one run (`graphed_ratio`: graphed over ungraphed group, median of rounds).

    python scripts/benchmark.py --group-sizes 2 5 10 16 [--group-agent ln_dqn]

The size sweep (`measure_sizes`) asks how big a group should be: groups of each size
on MinAtar Breakout in the fair study's settings (`FairProtocol.overrides`: one update
per 4 env steps), one torch thread as the study's group processes have, built and
filled to `learning_starts` untimed, then timed in turns (`rounds` rounds of `chunk`
env steps per member); the figure is each size's median aggregate env steps/s.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from wnrl.config import Config, load_config
from wnrl.group.members import member_configs
from wnrl.group.parts import build_group
from wnrl.group.trainer import GroupTrainer
from wnrl.logger import RunLogger
from wnrl.training import Trainer, build
from wnrl.training.loops import sync_steps

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@dataclasses.dataclass(frozen=True)
class GroupBench:
    """What the group section measures."""

    k: int = 8  # members of the group
    rounds: int = 5  # interleaved rounds (median of the per-round ratios)
    minatar_chunk: int = 2_000  # env steps per run per round, MinAtar
    pong_chunk: int = 400  # env steps per run per round, Pong
    minatar_starts: int = 2_000  # env steps filled before timing (learning starts here)
    pong_starts: int = 1_000
    pong_capacity: int = 20_000  # replay capacity per Pong run (memory: K of them)
    device: str = "cpu"  # the learners' and actors' device

    @classmethod
    def gpu(cls, k: int = 8, device: str = "cuda") -> GroupBench:
        """On a GPU: 3 rounds, short MinAtar chunks (its update ratio is 1 per env step)."""
        return cls(k=k, rounds=3, minatar_chunk=400, minatar_starts=500, device=device)

    @classmethod
    def quick(cls, k: int = 8, device: str = "cpu") -> GroupBench:
        return cls(k=k, rounds=3, minatar_chunk=400, pong_chunk=64, minatar_starts=500,
                   pong_starts=256, device=device)


def _rss_mib() -> float:
    """Resident memory of this process, MiB, after a full garbage collection.

    Collecting first frees what earlier work left for the cycle collector, so that it is
    not freed (and the RSS does not shrink) in the middle of a difference of two reads.
    """
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _settings(gb: GroupBench) -> dict[str, tuple[Path, list[str], int]]:
    common = ["train.eval_period=0", "train.noise_period=0", "train.total_steps=100000000",
              "train.checkpoint_period=100000000", "train.log_period=1000",
              "learner.precision=fp32", "learner.compile=false", "learner.cuda_graph=false",
              f"learner.device={gb.device}", f"actor.device={gb.device}"]
    return {
        "minatar": (CONFIGS / "minatar_wn_dqn.yaml",
                    [*common, f"train.learning_starts={gb.minatar_starts}"], gb.minatar_chunk),
        "pong": (CONFIGS / "pong_wn_dqn.yaml",
                 [*common, f"train.learning_starts={gb.pong_starts}",
                  f"replay.capacity={gb.pong_capacity}", "replay.prioritized=false"],
                 gb.pong_chunk),
    }


def _solo(cfg: Config, run_dir: Path) -> Trainer:
    run_dir.mkdir(parents=True)
    t = Trainer(cfg, run_dir, build(cfg))
    t.log = RunLogger(run_dir, cfg.train.total_steps, progress=False)
    return t


def _solo_steps(t: Trainer, n: int) -> None:
    """`n` env steps of the sync loop's body (act, store, learn, periodic work)."""
    sync_steps(t, t.parts.actor.env_steps + n)


def _group(cfgs: list[Config], root: Path) -> GroupTrainer:
    dirs = [root / c.train.run_name for c in cfgs]
    for d in dirs:
        d.mkdir(parents=True)
    g = GroupTrainer(cfgs, dirs, build_group(cfgs))
    for t, c in zip(g.trainers, cfgs):
        t.log = RunLogger(t.run_dir, c.train.total_steps, progress=False)
    return g


def _group_steps(g: GroupTrainer, n: int) -> None:
    step = g.trainers[0].parts.actor.env_steps
    end = step + n
    while step < end:
        step = g.advance(step)


def _quiet(fn: Any, *args: Any) -> None:
    """Run `fn` with the progress lines of its loggers going nowhere."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        fn(*args)


def measure_setting(name: str, path: Path, overrides: list[str], chunk: int, gb: GroupBench,
                    root: Path) -> dict[str, Any]:
    base = load_config(path, overrides)
    solo_cfg = dataclasses.replace(base, train=dataclasses.replace(base.train,
                                                                   run_name=f"{name}_solo"))
    group_base = dataclasses.replace(base, train=dataclasses.replace(
        base.train, seeds=tuple(range(gb.k)), run_name=f"{name}_group"))
    rss0 = _rss_mib()
    solo = _solo(solo_cfg, root / solo_cfg.train.run_name)
    _quiet(_solo_steps, solo, base.train.learning_starts + chunk // 4)
    rss1 = _rss_mib()
    group = _group(member_configs(group_base), root)
    _quiet(_group_steps, group, base.train.learning_starts + chunk // 4)
    rss2 = _rss_mib()
    graphed = None
    if torch.device(gb.device).type == "cuda":  # the same group, its update one CUDA graph
        graphed_base = dataclasses.replace(group_base, learner=dataclasses.replace(
            base.learner, cuda_graph="true"), train=dataclasses.replace(
            group_base.train, run_name=f"{name}_group_graphed"))
        graphed = _group(member_configs(graphed_base), root)
        _quiet(_group_steps, graphed, base.train.learning_starts + chunk // 4)
    ratios, solo_rates, group_rates, graphed_rates = [], [], [], []
    for _ in range(gb.rounds):
        t0 = time.perf_counter()
        _quiet(_solo_steps, solo, chunk)
        t1 = time.perf_counter()
        _quiet(_group_steps, group, chunk)
        t2 = time.perf_counter()
        solo_rate, group_rate = chunk / (t1 - t0), gb.k * chunk / (t2 - t1)
        solo_rates.append(solo_rate)
        group_rates.append(group_rate)
        ratios.append(group_rate / solo_rate)
        if graphed is not None:
            t3 = time.perf_counter()
            _quiet(_group_steps, graphed, chunk)
            graphed_rates.append(gb.k * chunk / (time.perf_counter() - t3))
    for t in [solo, *group.trainers, *(graphed.trainers if graphed else [])]:
        t.log.close()
    env = base.env
    out = {"setting": name, "env": env.id, "device": gb.device, "num_envs": env.num_envs,
           "k": gb.k, "updates_per_step": base.train.updates_per_step,
           "batch_size": base.learner.batch_size, "chunk_env_steps": chunk,
           "rounds": gb.rounds, "solo_env_steps_per_s": statistics.median(solo_rates),
           "group_env_steps_per_s": statistics.median(group_rates),
           "ratio": statistics.median(ratios), "ratios": ratios,
           "group_update_ms": group.learner.last_update_seconds * 1e3,
           "rss_solo_mib": rss1 - rss0, "rss_per_member_mib": (rss2 - rss1) / gb.k}
    if graphed is not None:
        out |= {"graphed_env_steps_per_s": statistics.median(graphed_rates),
                "graphed_ratio": statistics.median(
                    g / u for g, u in zip(graphed_rates, group_rates)),
                "graphed_update_ms": graphed.learner.last_update_seconds * 1e3}
    return out


def run_group_section(gb: GroupBench, settings: tuple[str, ...] = ("minatar", "pong"),
                      ) -> list[dict[str, Any]]:
    out = []
    table = _settings(gb)
    with tempfile.TemporaryDirectory(prefix="wnrl_group_bench_") as tmp:
        for name in settings:
            path, overrides, chunk = table[name]
            out.append(measure_setting(name, path, overrides, chunk, gb, Path(tmp)))
    return out


def measure_sizes(sizes: list[int], agent: str, gb: GroupBench) -> dict[str, Any]:
    """Aggregate env steps/s of groups of each size in `sizes`, timed in turns."""
    from wnrl.experiments.fair import FairProtocol

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    _, common, chunk = _settings(gb)["minatar"]
    base = load_config(CONFIGS / f"minatar_{agent}.yaml",
                       [*common, *FairProtocol().overrides, "env.id=minatar/breakout"])
    try:
        with tempfile.TemporaryDirectory(prefix="wnrl_group_sizes_") as tmp:
            groups = {}
            for k in sizes:
                cfg = dataclasses.replace(base, train=dataclasses.replace(
                    base.train, seeds=tuple(range(k)), run_name=f"k{k}"))
                groups[k] = _group(member_configs(cfg), Path(tmp))
                _quiet(_group_steps, groups[k], base.train.learning_starts + chunk // 4)
            rates: dict[int, list[float]] = {k: [] for k in sizes}
            for _ in range(gb.rounds):
                for k in sizes:
                    t0 = time.perf_counter()
                    _quiet(_group_steps, groups[k], chunk)
                    rates[k].append(k * chunk / (time.perf_counter() - t0))
            for g in groups.values():
                for t in g.trainers:
                    t.log.close()
    finally:
        torch.set_num_threads(threads)
    return {"setting": "sizes", "env": base.env.id, "agent": agent,
            "num_envs": base.env.num_envs, "updates_per_step": base.train.updates_per_step,
            "chunk_env_steps": chunk, "rounds": gb.rounds, "torch_threads": 1,
            "sizes": [{"k": k, "env_steps_per_s": statistics.median(rates[k]),
                       "per_member": statistics.median(rates[k]) / k, "rounds": rates[k]}
                      for k in sizes]}


def format_sizes_table(res: dict[str, Any]) -> str:
    lines = [f"{res['agent']} on {res['env']} ({res['num_envs']} envs per member, "
             f"{res['updates_per_step']:g} updates/step, one torch thread), median of "
             f"{res['rounds']} rounds of {res['chunk_env_steps']} env steps per member",
             "| members K | aggregate env steps/s | per member | rounds |", "|---|---|---|---|"]
    for r in res["sizes"]:
        lines.append(f"| {r['k']} | {r['env_steps_per_s']:.0f} | {r['per_member']:.0f} | "
                     f"{', '.join(f'{x:.0f}' for x in r['rounds'])} |")
    return "\n".join(lines)


def format_group_table(results: list[dict[str, Any]]) -> str:
    lines = ["| setting | K | solo env steps/s | group env steps/s (aggregate) | ratio "
             "(median of rounds) | graphed group env steps/s (x ungraphed) | "
             "RSS solo / per member (MiB) |", "|---|---|---|---|---|---|---|"]
    for r in results:
        graphed = (f"{r['graphed_env_steps_per_s']:.0f} ({r['graphed_ratio']:.2f}x)"
                   if "graphed_ratio" in r else "-")
        lines.append(f"| {r['setting']} ({r['env']}, {r['num_envs']} envs, "
                     f"{r['updates_per_step']:g} updates/step, {r.get('device', 'cpu')}) | "
                     f"{r['k']} | {r['solo_env_steps_per_s']:.0f} | "
                     f"{r['group_env_steps_per_s']:.0f} | "
                     f"{r['ratio']:.2f}x ({', '.join(f'{x:.2f}' for x in r['ratios'])}) | "
                     f"{graphed} | {r['rss_solo_mib']:.0f} / {r['rss_per_member_mib']:.0f} |")
    return "\n".join(lines)


def save_group_json(results: list[dict[str, Any]] | dict[str, Any], path: str | Path) -> None:
    from wnrl.atomic import write_text

    write_text(path, json.dumps({"cpu": os.cpu_count(), "results": results}, indent=1) + "\n")
