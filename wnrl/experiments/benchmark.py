"""Speed, overhead and memory figures (targets in docs/performance.md), all measured in one run.

    python scripts/benchmark.py [--quick] [--device cpu] [--game pong] [--json PATH]

Shared machines are noisy, so every comparison is a ratio of timings taken
interleaved in the same process (A, B, C, A, B, C, ...), each the median of
repeats. The seven measurements:

1. learner update (forward, backward, optimizer step, target forward) per norm,
   batch size and learner mode (eager or compiled, fp32 or bf16, on CUDA also
   CUDA-graphed), as ratios to the
   standard network in the same mode and to the eager fp32 update of the same norm;
2. actor forward over N envs: folded WN, unfolded WN, standard (on CUDA also folded
   WN as one graph replay, `actor.cuda_graph`); and the fold (`Learner.weights()`)
   paid at every actor weight sync;
3. replay: bytes per transition at capacity 1M (allocated), add and sample times; a
   batch of 32 on the learner's device from either replay (`replay.device` host or
   learner, `bench_replay_placement`);
4. raw env steps/s of the Atari vector env;
5. the learner-only bound: updates/s x env steps per update, in the default mode;
6. end-to-end env steps/s after learning starts, sync and async, vs the bound, for
   each of `BenchConfig.replay_devices`;
7. against the peer, Stable-Baselines3 DQN, both as its users run it and with wnrl's
   envs, network and update ratio, wnrl's `dqn` sync and async apart, each run against
   its own bound (`wnrl.experiments.benchmark_vs_peer`).

`BenchConfig.sections` picks some of them (learner, actor, replay, env, e2e, peer;
e2e includes the bound).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wnrl import atomic
from wnrl.accel import compiler_available, native_bf16, resolve_device
from wnrl.config import (
    EnvConfig,
    LearnerConfig,
)
from wnrl.experiments.bench_config import OBS, BenchConfig, random_batch
from wnrl.experiments.benchmark_e2e import bench_e2e_and_bound, bench_update_runs
from wnrl.experiments.benchmark_vs_peer import as_e2e
from wnrl.learner import Learner
from wnrl.networks import make_q_network
from wnrl.nn import fold_weight_norm
from wnrl.recipe import NORMS
from wnrl.replay import ReplayBuffer, Transition
from wnrl.timing import interleaved, mean_time


def check_device(device: str) -> str | None:
    """Why `device` cannot be benchmarked here (one line), or None if it can."""
    try:
        dev = resolve_device(device)
    except RuntimeError as exc:
        return f"--device {device!r} is invalid: {str(exc).splitlines()[0]}"
    if dev.type not in ("cpu", "cuda"):
        return f"--device {device!r} is invalid: must be cpu, cuda or auto"
    if dev.type == "cuda" and not torch.cuda.is_available():
        return f"--device {device!r} is invalid: no CUDA device is available (use cpu)"
    return None


SECTIONS = ("learner", "actor", "replay", "env", "e2e", "peer")
Mode = tuple[str, str, str]  # (compile, precision, cuda_graph) as LearnerConfig takes them


def learner_modes(device: str, only: tuple[str, ...] = ()) -> list[Mode]:
    """Learner modes to time on `device`: eager and compiled (where a compiler works), fp32
    and bf16 (where bf16 is native), plain and CUDA-graphed (on CUDA); eager fp32 (the
    reference) always, and of the others only those named in `only` if it is not empty."""
    dev = resolve_device(device)
    compiles = ["false"] + (["true"] if compiler_available(dev) is None else [])
    precisions = ["fp32"] + (["bf16"] if native_bf16(dev) else [])
    graphs = ["false"] + (["true"] if dev.type == "cuda" else [])
    return [(c, p, g) for g in graphs for c in compiles for p in precisions
            if not only or mode_name(c, p, g) in only or (c, p, g) == ("false", "fp32", "false")]


def mode_name(compile_: str, precision: str, cuda_graph: str = "false") -> str:
    """The mode as `Learner.mode` names it, e.g. "compiled bf16" or "eager fp32 graph"."""
    return f"{'compiled' if compile_ == 'true' else 'eager'} {precision}" \
        + (" graph" if cuda_graph == "true" else "")


def bench_learner(bc: BenchConfig, num_actions: int = 6) -> dict[str, Any]:
    """1. ms per update for every norm, batch size and learner mode (all interleaved);
    `ratio`: to norm=none in the same mode; `speedup`: eager fp32 time / this time."""
    rng, out = np.random.default_rng(0), {}
    modes = learner_modes(bc.device, bc.modes)
    for b in bc.batch_sizes:
        batch = random_batch(rng, b, num_actions)
        learners = {}
        for c, p, g in modes:
            cfg = LearnerConfig(optimizer="adam", batch_size=b, device=bc.device, compile=c,
                                precision=p, cuda_graph=g)
            for n in NORMS:
                learners[(mode_name(c, p, g), n)] = Learner(make_q_network(OBS, num_actions,
                                                                           norm=n), cfg)
        t = interleaved({k: (lambda lr=lr, b=batch: lr.update(b)) for k, lr in learners.items()},
                        bc.updates_per_round, bc.repeats)
        out[f"batch{b}"] = {
            m: {n: {"ms": 1e3 * t[(m, n)], "ratio": t[(m, n)] / t[(m, "none")],
                    "speedup": t[("eager fp32", n)] / t[(m, n)]} for n in NORMS}
            for m in dict.fromkeys(m for m, _ in learners)}
    return out


def bench_actor(bc: BenchConfig, num_actions: int = 6) -> dict[str, Any]:
    """2. ms per actor forward over N envs, and ms per fold (one actor weight sync)."""
    dev = resolve_device(bc.device)
    obs = torch.as_tensor(np.random.default_rng(1).integers(
        0, 256, (bc.num_envs, *OBS), dtype=np.uint8), device=dev)
    wn = make_q_network(OBS, num_actions, norm="weight").to(dev).eval()
    nets = {"standard": make_q_network(OBS, num_actions, norm="none").to(dev).eval(),
            "folded_wn": fold_weight_norm(wn).to(dev).eval(), "unfolded_wn": wn}

    def forward(net: torch.nn.Module) -> np.ndarray:
        with torch.inference_mode():
            return net(obs).argmax(dim=1).cpu().numpy()

    fns = {k: (lambda m=m: forward(m)) for k, m in nets.items()}
    if dev.type == "cuda":  # the actor.cuda_graph lever: one graph replay per forward
        from wnrl.cuda_graph import GraphedGreedy

        with torch.inference_mode():
            graph = GraphedGreedy(nets["folded_wn"], obs)

        def graphed() -> np.ndarray:
            with torch.inference_mode():
                return graph(obs).cpu().numpy()

        fns["folded_wn_graphed"] = graphed
    n = 5 * bc.updates_per_round
    t = interleaved(fns, n, bc.repeats)
    out: dict[str, Any] = {k: {"ms": 1e3 * v, "ratio": v / t["standard"]} for k, v in t.items()}
    learner = Learner(make_q_network(OBS, num_actions, norm="weight"),
                      LearnerConfig(device=bc.device, compile="false", precision="fp32"))
    out["fold_ms"] = 1e3 * statistics.median(
        mean_time(learner.weights, bc.updates_per_round) for _ in range(bc.repeats))
    return out


def bench_replay(bc: BenchConfig) -> dict[str, Any]:
    """3. bytes per transition at capacity 1M (allocated), add per vector step, sample."""
    n = bc.num_envs
    replay = ReplayBuffer(1_000_000, OBS, np.uint8, n, frame_stack=4, n_step=3)
    rng = np.random.default_rng(2)
    obs = rng.integers(0, 256, (n, *OBS), dtype=np.uint8)
    row = Transition(obs, np.zeros(n, np.int64), np.zeros(n, np.float32), np.zeros(n, bool),
                     np.zeros(n, bool), np.ones(n, bool))
    fill = 4 * bc.updates_per_round * 100
    t0 = time.perf_counter()
    for _ in range(fill):
        replay.add(row)
    out: dict[str, Any] = {"bytes_per_transition": replay.nbytes / replay.capacity,
                           "capacity": replay.capacity,
                           "add_us_per_vector_step": 1e6 * (time.perf_counter() - t0) / fill,
                           "num_envs": n}
    t = interleaved({b: (lambda b=b: replay.sample(b)) for b in bc.batch_sizes},
                    20 * bc.updates_per_round, bc.repeats)
    out.update({f"sample{b}_ms": 1e3 * v for b, v in t.items()})
    out["to_learner"] = bench_replay_placement(bc, row)
    return out


def bench_replay_placement(bc: BenchConfig, row: Transition) -> dict[str, Any]:
    """3b. a batch of 32 on the learner's device (`bc.device`), at the end-to-end capacity,
    both replays filled with the same rows: the host replay's sample plus the copy
    (`Learner.to_tensors`) against `DeviceReplay`'s sample on the device, interleaved,
    each waiting for the device."""
    from wnrl.replay.device import DeviceReplay

    dev = resolve_device(bc.device)
    learner = Learner(make_q_network(OBS, 6, norm="none"), LearnerConfig(device=str(dev)))
    args = (bc.replay_capacity, OBS, np.uint8, bc.num_envs)
    host = ReplayBuffer(*args, frame_stack=4, n_step=3)
    device = DeviceReplay(*args, frame_stack=4, n_step=3, device=dev)
    for _ in range(bc.replay_capacity // bc.num_envs + 8):  # full: the ring has wrapped
        host.add(row)
        device.add(row)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def host_side() -> None:
        learner.to_tensors(host.sample(32))
        sync()

    def device_side() -> None:
        learner.to_tensors(device.sample(32))
        sync()

    t = interleaved({"host": host_side, "learner": device_side}, 20 * bc.updates_per_round,
                    bc.repeats)
    return {"device": str(dev), "capacity": host.capacity, "host_sample32_copy_ms":
            1e3 * t["host"], "device_sample32_ms": 1e3 * t["learner"],
            "speedup": t["host"] / t["learner"]}


def bench_env(bc: BenchConfig) -> dict[str, Any]:
    """4. raw env steps/s (random actions) of the vector env."""
    from wnrl.envs import make_env

    env = make_env(EnvConfig(id=bc.game, num_envs=bc.num_envs), seed=0, training=True)
    env.reset(seed=0)
    rng, steps = np.random.default_rng(3), 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < bc.env_seconds:
        env.step(rng.integers(0, env.num_actions, bc.num_envs))
        steps += bc.num_envs
    rate = steps / (time.perf_counter() - t0)
    env.close()
    return {"env_steps_per_s": rate, "num_envs": bc.num_envs}


def run(bc: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The seven measurements (those in `bc.sections`, all if it is empty); returns the
    JSON-ready results."""
    res: dict[str, Any] = {"config": dataclasses.asdict(bc), "machine": machine_info(bc)}
    wanted = set(bc.sections or SECTIONS)
    for name, fn in [("learner", bench_learner), ("actor", bench_actor),
                     ("replay", bench_replay), ("env", bench_env)]:
        if name in wanted:
            log(f"measuring {name} ...")
            res[name] = fn(bc)
    if "peer" in wanted and bc.peer:
        res["peer"] = _peer(bc, log)
        if "e2e" in wanted and bc.agent == "dqn" and "runs" in res["peer"]:
            res.update(as_e2e(bc, res["peer"]))  # the same runs: not timed twice
    if "e2e" in wanted and "bound" not in res:
        res.update(bench_e2e_and_bound(bc, log))
    elif "e2e" in wanted and len(bc.replay_devices) > 1:  # the first device's were the peer's
        more = bench_e2e_and_bound(bc, log, bc.replay_devices[1:])
        res.update({k: v for k, v in more.items() if k != "bound"})
    if "e2e" in wanted:
        log("measuring update runs ...")
        res["update_runs"] = bench_update_runs(bc)
    return res


def _peer(bc: BenchConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """7., or why it was skipped."""
    from wnrl.experiments.benchmark_peer import peer_available

    if not peer_available():
        return {"skipped": "stable-baselines3 not installed (pip install -e '.[bench]')"}
    from wnrl.experiments.benchmark_vs_peer import bench_vs_peer

    return bench_vs_peer(bc, log)


CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")  # reported


def machine_info(bc: BenchConfig) -> dict[str, Any]:
    """CPU model, family/model numbers and the SIMD flags that decide the learner's speed
    (`CPU_FLAGS`), cores, torch and its threads, device."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    cpu = next((x.split(":", 1)[1].strip() for x in lines if x.startswith("model name")),
               platform.processor())
    flags = next((x.split(":", 1)[1].split() for x in lines if x.startswith("flags")), [])
    family = {k: next((x.split(":", 1)[1].strip() for x in lines if x.split(":")[0].strip() == k),
                      None) for k in ("cpu family", "model")}
    dev = resolve_device(bc.device)
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else None
    return {"cpu": cpu, "cpu_family_model": [family["cpu family"], family["model"]],
            "cpu_flags": [f for f in CPU_FLAGS if f in flags],
            "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "device": str(dev), "gpu": gpu}


def save_json(res: dict[str, Any], path: str | Path) -> None:
    atomic.write_text(path, json.dumps(res, indent=2, default=float) + "\n")


def _actor_rows(res: dict[str, Any]) -> list[tuple[str, ...]]:
    a, rows = res["actor"], []
    for k in ("standard", "folded_wn", "unfolded_wn", "folded_wn_graphed"):
        if k not in a:
            continue
        rows.append((f"actor forward {res['config']['num_envs']} envs, {k}",
                     f"{a[k]['ms']:.2f} ms", f"{a[k]['ratio']:.3f}",
                     "<= 1.02" if k == "folded_wn" else ""))
    rows.append(("fold per actor weight sync", f"{a['fold_ms']:.2f} ms", "", ""))
    return rows


def _replay_rows(r: dict[str, Any]) -> list[tuple[str, ...]]:
    rows = [("replay bytes/transition (1M)", f"{r['bytes_per_transition']:.0f} B", "",
             "<= 7200"),
            (f"replay add ({r['num_envs']} rows)", f"{r['add_us_per_vector_step']:.1f} us",
             "", "")]
    for k in (k for k in r if k.startswith("sample")):
        rows.append((f"replay {k[:-3]}", f"{r[k]:.3f} ms", "", "< 0.3" if "32" in k else ""))
    if p := r.get("to_learner"):
        rows += [(f"batch 32 on {p['device']}: host replay sample + copy ({p['capacity']:,})",
                  f"{p['host_sample32_copy_ms']:.3f} ms", "", ""),
                 (f"batch 32 on {p['device']}: DeviceReplay sample ({p['capacity']:,})",
                  f"{p['device_sample32_ms']:.3f} ms", f"x{p['speedup']:.2f} vs host", "")]
    return rows


def _e2e_rows(res: dict[str, Any]) -> list[tuple[str, ...]]:
    b = res["bound"]
    rows = [(f"learner-only bound ({b['agent']}, {b['mode']}, batch 32)",
             f"{b['env_steps_per_s']:.0f} steps/s ({b['updates_per_s']:.0f} updates/s)", "", "")]
    if u := res.get("update_runs"):
        rows.append((f"{u['run']} updates one at a time -> one update_many ({u['mode']})",
                     f"{u['single_ms_per_update']:.3f} -> {u['runs_ms_per_update']:.3f} ms "
                     "per update", f"x{u['speedup']:.2f}", ""))
    for mode in ("sync", "async"):
        head = res[f"e2e_{mode}"]
        for key in (k for k in res if k == f"e2e_{mode}" or k.startswith(f"e2e_{mode}_replay_")):
            e, replay = res[key], res[key].get("replay_device")
            where = f", replay.device={replay}" if replay is not None else ""
            ratio = f"{e['ratio_to_bound']:.3f} of bound"
            if e is not head:
                ratio += f" (x{e['ratio_to_bound'] / head['ratio_to_bound']:.2f} vs the first)"
            rows.append((f"end-to-end {mode} ({res['config']['num_envs']} envs{where})",
                         f"{e['env_steps_per_s']:.0f} steps/s", ratio,
                         ">= 0.90" if e is head else ""))
    return rows


def format_table(res: dict[str, Any]) -> str:
    """The results as a Markdown table with the target (docs/performance.md) beside each ratio."""
    rows = [("measurement", "value", "ratio", "target")]
    for bkey, modes in res.get("learner", {}).items():
        for mode, per in modes.items():
            for n, v in per.items():
                tgt = {"weight": "<= 1.05", "batch": "(paper: ~1.16)"}.get(n, "")
                rows.append((f"update {bkey}, {mode}, norm={n}", f"{v['ms']:.2f} ms",
                             f"{v['ratio']:.3f} (x{v['speedup']:.2f} vs eager fp32)", tgt))
    if "actor" in res:
        rows += _actor_rows(res)
    if "replay" in res:
        rows += _replay_rows(res["replay"])
    if "env" in res:
        rows.append(("env steps/s (raw, random actions)",
                     f"{res['env']['env_steps_per_s']:.0f}", "", ""))
    if "bound" in res:
        rows += _e2e_rows(res)
    p = res.get("peer")
    if p and "runs" in p:
        from wnrl.experiments.benchmark_vs_peer import peer_rows

        rows += peer_rows(p)
    elif p:
        rows.append(("peer", p.get("skipped", "?"), "", ""))
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "|---|---|---|---|")
    m = res["machine"]
    return "\n".join(lines) + (f"\n\nCPU: {m['cpu']} ({m['cores']} cores; "
                               f"{' '.join(m.get('cpu_flags', []))}), torch {m['torch']} "
                               f"({m['torch_threads']} threads), device {m['device']}"
                               + (f" ({m['gpu']})" if m["gpu"] else ""))
