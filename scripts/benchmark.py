"""Speed, overhead and memory figures of wnrl (targets: docs/performance.md).

See `wnrl.experiments.benchmark`.

    python scripts/benchmark.py [--quick] [--device cpu|cuda] [--game pong] [--num-envs 8]
        [--repeats 7] [--measure-steps 20000] [--e2e-chunks 4] [--learning-starts 5000]
        [--no-peer] [--modes eager-fp32 compiled-bf16 eager-bf16-graph ...] [--compile auto]
        [--precision auto] [--cuda-graph false] [--sections learner e2e ...]
        [--replay-devices host learner]
        [--json benchmark.json]
    python scripts/benchmark.py --group 8 [--quick] [--json benchmark_group.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from wnrl.accel import resolve_device
from wnrl.experiments.benchmark import (
    SECTIONS,
    BenchConfig,
    check_device,
    format_table,
    run,
    save_json,
)


def positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="about a minute: fewer, shorter runs")
    p.add_argument("--device", help="cpu | cuda | auto")
    p.add_argument("--game", help="Atari game (default pong)")
    p.add_argument("--num-envs", type=positive, help="envs in the vector env")
    p.add_argument("--batch-sizes", type=positive, nargs="+", help="learner batch sizes")
    p.add_argument("--repeats", type=positive, help="interleaved rounds per timing (median)")
    p.add_argument("--env-seconds", type=float, help="seconds of raw env stepping")
    p.add_argument("--replay-capacity", type=positive, help="end-to-end and peer buffer size")
    p.add_argument("--learning-starts", type=positive, help="env steps before updates")
    p.add_argument("--measure-steps", type=positive, help="env steps timed after learning starts")
    p.add_argument("--e2e-chunks", type=positive,
                   help="parts each end-to-end run is timed in, the bound measured between")
    p.add_argument("--agent", choices=["dqn", "wn_dqn", "wn_mobn_dqn"],
                   help="agent of the bound and e2e runs (default wn_dqn; the peer section "
                        "always runs dqn, and with --agent dqn its runs are the e2e ones)")
    p.add_argument("--no-peer", action="store_true",
                   help="skip Stable-Baselines3 (the peer section: SB3 as RL Zoo runs it, "
                        "and with wnrl's envs, network and update ratio)")
    p.add_argument("--modes", nargs="+",
                   choices=[f"{c}-{q}{g}" for g in ("", "-graph") for c in ("eager", "compiled")
                            for q in ("fp32", "bf16")],
                   help="learner modes to time per norm (default: all this machine runs; "
                        "-graph: CUDA-graphed)")
    p.add_argument("--sections", nargs="+", choices=SECTIONS,
                   help="measurements to take (default: all; e2e includes the bound)")
    p.add_argument("--compile", choices=["auto", "true", "false"],
                   help="learner.compile of the bound and end-to-end runs (default auto)")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"],
                   help="learner.precision of the bound and end-to-end runs (default auto)")
    p.add_argument("--cuda-graph", choices=["auto", "true", "false"],
                   help="learner.cuda_graph of the bound and end-to-end runs (default false)")
    p.add_argument("--actor-device", choices=["auto", "cpu", "cuda"],
                   help="the end-to-end runs' actor.device (default auto: the learner's)")
    p.add_argument("--replay-devices", nargs="+", choices=["auto", "host", "learner"],
                   help="the end-to-end runs' replay.device, each timed (the first is the "
                        "headline; default auto)")
    p.add_argument("--group", type=positive, metavar="K",
                   help="only the group section: K runs trained together vs a solo run, "
                        "aggregate env steps/s on MinAtar and Pong (wnrl.experiments."
                        "benchmark_group), on --device (default cpu; on cuda also the "
                        "graphed group, in 3 shorter rounds); with --quick, shorter")
    p.add_argument("--group-sizes", type=positive, nargs="+", metavar="K",
                   help="only the group-size sweep: aggregate env steps/s of groups of each "
                        "size on MinAtar Breakout in the fair study's settings, timed in turns")
    p.add_argument("--group-agent", choices=["dqn", "wn_dqn", "ln_dqn", "bn_dqn",
                                             "wn_mobn_dqn"], default="wn_dqn",
                   help="the agent of --group-sizes (default wn_dqn)")
    p.add_argument("--json", default="benchmark.json", help="where to write the results")
    a = p.parse_args(argv)
    if a.group and a.group_sizes:
        print("error: --group and --group-sizes are two sections: give one", file=sys.stderr)
        return 2
    if a.group_sizes:
        from wnrl.experiments import benchmark_group as bg

        if a.device not in (None, "cpu"):
            print(f"error: --group-sizes times the CPU study's groups (one torch thread); "
                  f"--device {a.device} is not measured there: drop it, or use --group K",
                  file=sys.stderr)
            return 2
        sizes = list(dict.fromkeys(a.group_sizes))
        gb = bg.GroupBench.quick() if a.quick else bg.GroupBench(rounds=3, minatar_chunk=1_000)
        res = bg.measure_sizes(sizes, a.group_agent, gb)
        print(bg.format_sizes_table(res))
        bg.save_group_json(res, a.json)
        print(f"results written to {a.json}")
        return 0
    if a.group:
        from wnrl.experiments import benchmark_group as bg

        if problem := check_device(a.device or "cpu"):
            print(f"error: {problem}", file=sys.stderr)
            return 2
        device = str(resolve_device(a.device or "cpu"))
        gb = (bg.GroupBench.quick(a.group, device) if a.quick
              else bg.GroupBench.gpu(a.group, device) if device.startswith("cuda")
              else bg.GroupBench(k=a.group, device=device))
        results = bg.run_group_section(gb)
        print(bg.format_group_table(results))
        bg.save_group_json(results, a.json)
        print(f"results written to {a.json}")
        return 0
    names = {f.name for f in dataclasses.fields(BenchConfig)}
    kw = {k: v for k, v in vars(a).items() if k in names and v is not None}
    if a.batch_sizes:
        kw["batch_sizes"] = tuple(a.batch_sizes)
    if a.no_peer:
        kw["peer"] = False
    if a.modes:
        kw["modes"] = tuple(m.replace("-", " ") for m in a.modes)
    if a.sections:
        kw["sections"] = tuple(a.sections)
    if a.replay_devices:
        kw["replay_devices"] = tuple(dict.fromkeys(a.replay_devices))
    bc = BenchConfig.quick(**kw) if a.quick else BenchConfig(**kw)
    if problem := check_device(bc.device):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    res = run(bc)
    print(format_table(res))
    save_json(res, a.json)
    print(f"results written to {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
