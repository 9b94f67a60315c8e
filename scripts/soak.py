"""Soak test (not a CI test): train for a wall-clock budget and watch for growth.

    python scripts/soak.py --env cartpole --mode sync --minutes 30 [--out soak] [key=value ...]
    python scripts/soak.py --env pong --mode distributed --minutes 30

It starts `scripts/train.py` (sync, async or distributed Ape-X mode) in a
subprocess and every `--interval` seconds samples, for the training process
and for its whole process tree (Ray's processes included): resident memory
(RSS), open file descriptors and threads; and the run directory's size (event
files and the rest). When the budget is spent it stops the run with SIGINT
(which checkpoints) and reports the growth of each quantity per 100k env steps
after the replay has filled (a least-squares slope over the samples taken
from then on), as a Markdown table row and a JSON file with every sample.
Goals (docs/soak.md): RSS growth < 1% per 100k steps, fds and threads
constant, the run directory bounded by the kept checkpoints plus event files.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {("cartpole", False): "cartpole_dqn.yaml", ("cartpole", True): "cartpole_apex.yaml",
           ("pong", False): "pong_wn_dqn.yaml", ("pong", True): "pong_apex.yaml"}
# small replays so a short soak sees it full; checkpoints often so pruning is exercised
DEFAULTS = {"cartpole": {"replay.capacity": 5_000, "train.checkpoint_period": 5_000,
                         "train.log_period": 500},
            "pong": {"replay.capacity": 100_000, "train.checkpoint_period": 50_000,
                     "train.log_period": 5_000}}
PAGE = os.sysconf("SC_PAGE_SIZE")
STEP_LINE = re.compile(r"^step (\d+)/\d+")


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def _tree(pid: int) -> list[int]:
    kids, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _proc(pid: int) -> tuple[int, int, int] | None:
    """(RSS bytes, open fds, threads) of one process, or None if it is gone."""
    try:
        rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        threads = int(re.search(r"^Threads:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(),
                                re.M).group(1))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, AttributeError):
        return None
    return rss_pages * PAGE, fds, threads


def _label(pid: int) -> str:
    """A short name for a process: Ray sets worker titles (`ray::ReplayShard...`)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    first = args[0].decode(errors="replace")
    if first.startswith("ray::"):
        return first.split(".")[0].split(" ")[0][:40]
    words = [Path(a.decode(errors="replace")).name for a in args[:2] if a]
    return " ".join(words)[:40]


def _dir_size(run: Path) -> tuple[int, int]:
    """(event-file bytes, all other bytes) under the run directory."""
    events = other = 0
    for p in run.rglob("*"):
        try:
            if p.is_file():
                if p.name.startswith("events.out.tfevents"):
                    events += p.stat().st_size
                else:
                    other += p.stat().st_size
        except OSError:
            pass
    return events, other


def sample(pid: int, run: Path, step: int, t0: float) -> dict[str, float]:
    main = _proc(pid) or (0, 0, 0)
    procs = [(p, x) for p in _tree(pid) if (x := _proc(p)) is not None]
    tree = [x for _, x in procs]
    by_label: dict[str, int] = {}
    for p, x in procs:
        by_label[_label(p)] = by_label.get(_label(p), 0) + x[0]
    events, other = _dir_size(run)
    return {"t": time.time() - t0, "env_steps": step, "rss": main[0], "fds": main[1],
            "rss_by_process": by_label,
            "threads": main[2], "tree_rss": sum(x[0] for x in tree),
            "tree_fds": sum(x[1] for x in tree), "tree_threads": sum(x[2] for x in tree),
            "tree_procs": len(tree), "events_bytes": events, "other_bytes": other}


def growth(samples: list[dict[str, float]], key: str) -> float:
    """Least-squares slope of `key` per 100k env steps."""
    x = np.array([s["env_steps"] for s in samples], dtype=float)
    y = np.array([s[key] for s in samples], dtype=float)
    if len(x) < 3 or np.ptp(x) == 0:
        return float("nan")
    return float(np.polyfit(x, y, 1)[0] * 100_000)


def report(samples: list[dict[str, float]], fill_step: int, mode: str, env: str,
           minutes: float) -> tuple[dict[str, float], str]:
    after = [s for s in samples if s["env_steps"] >= fill_step]
    if len(after) < 3:
        return {"samples_after_fill": len(after)}, (
            f"| {env} | {mode} | {minutes:.0f} | {samples[-1]['env_steps'] if samples else 0} | "
            f"replay not full (needs {fill_step} env steps) | | | | | |")
    first, last = after[0], after[-1]
    res = {"samples_after_fill": len(after), "env_steps_at_fill": first["env_steps"],
           "env_steps_end": last["env_steps"],
           "rss_at_fill_mib": first["rss"] / 2**20, "rss_end_mib": last["rss"] / 2**20,
           "rss_growth_pct_per_100k": 100 * growth(after, "rss") / first["rss"],
           "tree_rss_growth_pct_per_100k": 100 * growth(after, "tree_rss") / first["tree_rss"],
           "fds_range": [min(s["fds"] for s in after), max(s["fds"] for s in after)],
           "threads_range": [min(s["threads"] for s in after), max(s["threads"] for s in after)],
           "tree_fds_range": [min(s["tree_fds"] for s in after),
                              max(s["tree_fds"] for s in after)],
           "tree_threads_range": [min(s["tree_threads"] for s in after),
                                  max(s["tree_threads"] for s in after)],
           "tree_procs_range": [min(s["tree_procs"] for s in after),
                                max(s["tree_procs"] for s in after)],
           "events_kib_per_100k": growth(after, "events_bytes") / 1024,
           "other_bytes_range_mib": [min(s["other_bytes"] for s in after) / 2**20,
                                     max(s["other_bytes"] for s in after) / 2**20]}
    labels = set().union(*(s["rss_by_process"] for s in after))
    per = {lb: growth([{"env_steps": s["env_steps"], "v": s["rss_by_process"].get(lb, 0)}
                       for s in after], "v") / 2**20 for lb in labels}
    res["rss_growth_mib_per_100k_by_process"] = dict(sorted(per.items(), key=lambda kv: -kv[1]))
    r = res
    row = (f"| {env} | {mode} | {minutes:.0f} | {r['env_steps_at_fill']:,}-"
           f"{r['env_steps_end']:,} | {r['rss_at_fill_mib']:.0f} -> {r['rss_end_mib']:.0f} MiB "
           f"({r['rss_growth_pct_per_100k']:+.2f}%; "
           f"tree {r['tree_rss_growth_pct_per_100k']:+.2f}%) "
           f"| {r['fds_range'][0]}-{r['fds_range'][1]} (tree {r['tree_fds_range'][0]}-"
           f"{r['tree_fds_range'][1]}) | {r['threads_range'][0]}-{r['threads_range'][1]} "
           f"(tree {r['tree_threads_range'][0]}-{r['tree_threads_range'][1]}) "
           f"| {r['events_kib_per_100k']:.0f} KiB | {r['other_bytes_range_mib'][0]:.1f}-"
           f"{r['other_bytes_range_mib'][1]:.1f} MiB |")
    return res, row


HEADER = ("| env | mode | minutes | env steps after fill | RSS (growth per 100k steps) | "
          "open fds | threads | event files per 100k steps | checkpoints + config |\n"
          "|---|---|---|---|---|---|---|---|---|")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", choices=["cartpole", "pong"], default="cartpole")
    p.add_argument("--mode", choices=["sync", "async", "distributed"], default="sync")
    p.add_argument("--minutes", type=float, default=30.0, help="wall-clock budget of the run")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--out", type=Path, default=Path("soak"), help="runs and results go here")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    opt = p.parse_args(argv)
    # stop cleanly (the run checkpoints) on SIGINT or SIGTERM, even if started with `&`,
    # which makes a non-interactive shell's children ignore SIGINT
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    distributed = opt.mode == "distributed"
    name = f"soak_{opt.env}_{opt.mode}_{time.strftime('%Y%m%d-%H%M%S')}"
    ov = {**DEFAULTS[opt.env], "train.total_steps": 10**10, "train.stop_return": "null",
          "train.eval_period": 0, "train.noise_period": 0, "train.run_name": name,
          "train.runs_dir": str(opt.out.resolve())}
    if not distributed:
        ov["train.mode"] = opt.mode
    ov.update(dict(o.split("=", 1) for o in opt.overrides))
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "--config",
           str(ROOT / "configs" / CONFIGS[(opt.env, distributed)]),
           *[f"{k}={v}" for k, v in ov.items()]]
    run = opt.out.resolve() / name
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={"OMP_NUM_THREADS": "1", **os.environ,
                                                "PYTHONUNBUFFERED": "1"})
    step = [0]
    log = opt.out / f"{name}.log"
    opt.out.mkdir(parents=True, exist_ok=True)

    def read() -> None:
        with open(log, "w") as f:
            for line in proc.stdout:  # type: ignore[union-attr]
                f.write(line)
                f.flush()
                if m := STEP_LINE.match(line):
                    step[0] = int(m.group(1))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    t0 = time.time()
    samples: list[dict[str, float]] = []
    try:
        while time.time() - t0 < 60 * opt.minutes and proc.poll() is None:
            time.sleep(opt.interval)
            if proc.poll() is None:
                samples.append(sample(proc.pid, run, step[0], t0))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        code = proc.wait()
        reader.join(timeout=10)
    capacity = int(ov["replay.capacity"])
    fill = capacity + int(ov.get("train.learning_starts", 0))
    res, row = report(samples, fill, opt.mode, opt.env, (time.time() - t0) / 60)
    out = {"command": " ".join(cmd), "exit_code": code, "fill_step": fill, "result": res,
           "samples": samples}
    (opt.out / f"{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    print(HEADER)
    print(row)
    print(json.dumps(res, indent=1))
    print(f"exit code {code}; samples and log in {opt.out / name}.json / .log")
    return 0 if code in (0, 130) else 1


if __name__ == "__main__":
    sys.exit(main())
