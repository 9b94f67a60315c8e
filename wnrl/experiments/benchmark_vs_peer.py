"""7. wnrl against its peer, Stable-Baselines3 DQN, both ways, in one run.

Four runs, each timed in parts by `benchmark_e2e.against_bound`, with one `Yardstick`
measured before, between and after the parts of every run: the learner-only bounds of
wnrl's `dqn` (the plain Nature CNN, in the benchmark's learner mode), of `sb3_zoo` and of
`sb3_matched` (`benchmark_peer`), interleaved so that they are taken at the same instants.

- `wnrl_sync`, `wnrl_async`: wnrl's `dqn` with `bc.num_envs` envs, reported apart;
- `sb3_zoo`: SB3 as its users run it (RL Zoo's Atari settings, one env);
- `sb3_matched`: SB3 with the same envs, network, update ratio and Adam settings.

Each run is compared to its own side's bound (`ratio_to_bound`, median over parts).
wnrl against a peer (`cross_ratio`): part i gives (wnrl part i / wnrl's bound) /
(peer part i / the peer's bound) x wnrl's bound / the peer's bound, the last ratio
being the median over every yardstick point of both runs, where the two bounds were
taken together. So the machine's drift between two runs minutes apart cancels; the
figure is the median over parts with their range, and `raw` is the plain ratio of the
two runs' rates.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable
from typing import Any

from wnrl.experiments.bench_config import BenchConfig
from wnrl.experiments.benchmark_e2e import Yardstick, against_bound, wnrl_runs, wnrl_update
from wnrl.experiments.benchmark_peer import PEERS, PeerRun, peer_settings, peer_update

WNRL_RUNS = ("wnrl_sync", "wnrl_async")


def cross_ratio(a: dict[str, Any], a_side: str, b: dict[str, Any],
                b_side: str) -> dict[str, Any]:
    """Run `a`'s env steps/s over run `b`'s, drift-corrected part by part (module doc);
    both timed by `against_bound` in the same number of parts."""
    points = a["yardstick"] + b["yardstick"]
    bounds = statistics.median(p[a_side] / p[b_side] for p in points)
    parts = [ca["ratio_to_bound"] / cb["ratio_to_bound"] * bounds
             for ca, cb in zip(a["chunks"], b["chunks"], strict=True)]
    return {"median": statistics.median(parts), "min": min(parts), "max": max(parts),
            "parts": parts, "bound_ratio": bounds,
            "raw": a["env_steps_per_s"] / b["env_steps_per_s"]}


def differences(bc: BenchConfig, mode: str) -> list[str]:
    """The settings in which wnrl's runs and the peer's differ (`mode`: wnrl's learner)."""
    compiled = mode.startswith("compiled")
    return [
        f"learner mode: wnrl {mode} (learner.compile={bc.compile}, learner.precision="
        f"{bc.precision}); SB3 eager fp32 (its DQN has no compile or bf16 option)",
        "Adam kernel: " + ("wnrl's foreach form fused by torch.compile" if compiled
                           else "wnrl fused") + "; sb3_matched fused (optimizer_kwargs); "
        "sb3_zoo SB3's default (single-tensor on CPU) with torch's eps 1e-8 "
        "(wnrl and sb3_matched: lr 1e-4, betas 0.9/0.999, eps 1.5e-4)",
        f"env stepping: wnrl steps its {bc.num_envs} envs in one call to ale-py's C++ vector "
        "env (preprocessing and frame stack in C++, its own threads); SB3 steps Python "
        "AtariWrapper chains one after another in a DummyVecEnv (OpenCV resize, NumPy "
        "frame stack)",
        "acting: wnrl's actor has its own copy of the network, refreshed from the learner "
        "after every update; SB3 acts with the learner's network",
        "replay: wnrl stores each frame once and rebuilds stacks when sampling; SB3 stores "
        "the observation and next observation stacks of each transition "
        "(optimize_memory_usage=False, as RL Zoo)",
        "update's outputs: wnrl copies loss, mean Q, gradient norm and per-sample |TD| to "
        "the host once per update; SB3 calls loss.item() once per update",
        f"sb3_zoo only: 1 env (wnrl {bc.num_envs}), target update every 1,000 env steps "
        f"(wnrl and sb3_matched: {4 * bc.target_update_period:,})",
        "the same everywhere: Nature CNN (wnrl `dqn`: plain; SB3 CnnPolicy's NatureCNN, no "
        "hidden layers after it), uint8 frames scaled by 1/255 in the network, Huber loss, "
        "gradient-norm clip 10, gamma 0.99, batch 32, buffer size, learning start, fixed "
        "epsilon 0.01, one update per 4 env steps, torch threads, and the game protocol "
        "(ALE v5, sticky actions 0.25, 30 no-ops, frame skip 4 with max-pool, life-loss "
        "terminals, clipped rewards, 84x84 gray, stack 4; RL Zoo itself plays "
        "NoFrameskip-v4, without sticky actions)",
    ]


def bench_vs_peer(bc: BenchConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """7. the four runs against the yardstick, their ratios, and what differs."""
    import stable_baselines3

    bc = dataclasses.replace(bc, agent="dqn", replay_devices=bc.replay_devices[:1])
    learner, update = wnrl_update(bc)
    yard = Yardstick(bc, {"wnrl": update, **{p: peer_update(bc, p) for p in PEERS}})
    runs = {f"wnrl_{k[4:]}": v for k, v in wnrl_runs(bc, yard, "wnrl", log).items()}
    for peer in PEERS:
        log(f"measuring the peer, {peer} (Stable-Baselines3 DQN) ...")
        runs[peer] = against_bound(PeerRun(bc, peer), peer, bc, yard)
    sides = {"wnrl": "wnrl", **{p: p for p in PEERS}}
    return {
        "agent": bc.agent, "mode": learner.mode, "version": stable_baselines3.__version__,
        "runs": runs,
        "bounds": {s: statistics.median(p[s] for p in yard.history) for s in sides},
        "learner_ratio": {p: statistics.median(h["wnrl"] / h[p] for h in yard.history)
                          for p in PEERS},
        "ratios": {f"{w}/{p}": cross_ratio(runs[w], "wnrl", runs[p], p)
                   for w in WNRL_RUNS for p in PEERS},
        "settings": {p: peer_settings(bc, p) for p in PEERS},
        "differences": differences(bc, learner.mode),
    }


def as_e2e(bc: BenchConfig, peer: dict[str, Any]) -> dict[str, Any]:
    """5. and 6. (`bound`, `e2e_sync`, `e2e_async`) read from the peer section's wnrl
    runs, when `bc.agent` is `dqn` and they are the runs the e2e section would time."""
    runs = [h["wnrl"] for w in WNRL_RUNS for h in peer["runs"][w]["yardstick"]]
    return {"e2e_sync": peer["runs"]["wnrl_sync"], "e2e_async": peer["runs"]["wnrl_async"],
            "bound": {"agent": bc.agent, "mode": peer["mode"],
                      "env_steps_per_s": statistics.median(runs),
                      "updates_per_s": statistics.median(runs) / 4, "runs": runs}}


def peer_rows(p: dict[str, Any]) -> list[tuple[str, ...]]:
    """The section's rows of the benchmark's table (measurement, value, ratio, target)."""
    b = p["bounds"]
    rows = [(f"learner-only bound, wnrl dqn {p['mode']} / sb3_matched / sb3_zoo",
             f"{b['wnrl']:.0f} / {b['sb3_matched']:.0f} / {b['sb3_zoo']:.0f} steps/s",
             f"wnrl {p['learner_ratio']['sb3_matched']:.2f}x / "
             f"{p['learner_ratio']['sb3_zoo']:.2f}x", "")]
    for name, r in p["runs"].items():
        lo = min(c["ratio_to_bound"] for c in r["chunks"])
        hi = max(c["ratio_to_bound"] for c in r["chunks"])
        envs = f"{r['num_envs']} env" + ("s" if r["num_envs"] > 1 else "")
        rows.append((f"end-to-end {name} ({envs})",
                     f"{r['env_steps_per_s']:.0f} steps/s",
                     f"{r['ratio_to_bound']:.2f} of own bound (parts {lo:.2f}-{hi:.2f})",
                     ">= 0.90" if name.startswith("wnrl") else ""))
    for name, x in p["ratios"].items():
        rows.append((f"{name} (SB3 {p['version']})", "",
                     f"{x['median']:.2f}x (parts {x['min']:.2f}-{x['max']:.2f}; "
                     f"raw {x['raw']:.2f}x)",
                     ">= 1.5 (stretch 2.5)" if name.endswith("matched") else ""))
    return rows
