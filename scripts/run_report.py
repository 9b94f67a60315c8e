"""A run's learning curves from its TensorBoard events: a PNG and a Markdown table.

    python scripts/run_report.py RUN_DIR [RUN_DIR ...] --png curve.png [--md table.md]
        [--bin 50000]

The table lists, per run, every evaluation (mean / median / IQM over whole games at
the evaluation epsilon) with the wall time since the run's first event, and the
training episodes' raw return binned by env step. The figure plots both. Needs
matplotlib (`pip install -e ".[study]"`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def scalars(run: Path, tag: str) -> list[tuple[int, float, float]]:
    """(step, value, wall time) of `tag` in `run`'s event files, in step order."""
    ea = EventAccumulator(str(run), size_guidance={"scalars": 0})
    ea.Reload()
    if tag not in ea.Tags()["scalars"]:
        return []
    return sorted((e.step, e.value, e.wall_time) for e in ea.Scalars(tag))


def report(runs: list[Path], bin_steps: int) -> tuple[str, dict[str, dict[str, list]]]:
    lines, data = [], {}
    for run in runs:
        ev = {k: scalars(run, f"eval/return_{k}") for k in ("mean", "median", "iqm")}
        ep = scalars(run, "episode/return")
        start = min((w for s in (*ev.values(), ep) for _, _, w in s), default=0.0)
        data[run.name] = {"eval": ev["mean"], "episodes": ep}
        lines += [f"### {run.name}", "", "| env step | eval mean | median | IQM | wall time |",
                  "|---:|---:|---:|---:|---:|"]
        for (s, m, w), (_, md, _), (_, q, _) in zip(ev["mean"], ev["median"], ev["iqm"]):
            lines.append(f"| {s:,} | {m:.2f} | {md:.2f} | {q:.2f} | {(w - start) / 60:.0f} min |")
        lines += ["", "| env steps (bin end) | mean training return | games |", "|---:|---:|---:|"]
        steps = np.array([s for s, _, _ in ep])
        rets = np.array([v for _, v, _ in ep])
        for end in range(bin_steps, int(steps.max(initial=0)) + bin_steps, bin_steps):
            sel = (steps > end - bin_steps) & (steps <= end)
            if sel.any():
                lines.append(f"| {end:,} | {rets[sel].mean():.2f} | {int(sel.sum())} |")
        lines.append("")
    return "\n".join(lines), data


def plot(data: dict[str, dict[str, list]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, d in data.items():
        if d["episodes"]:
            s, v, _ = zip(*d["episodes"])
            ax.plot(s, v, ".", alpha=0.25, ms=3, label=f"{name}: training games")
        if d["eval"]:
            s, v, _ = zip(*d["eval"])
            ax.plot(s, v, "o-", label=f"{name}: evaluation mean")
    ax.set_xlabel("env steps")
    ax.set_ylabel("raw game score")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--png", type=Path, required=True)
    p.add_argument("--md", type=Path)
    p.add_argument("--bin", type=int, default=50_000, help="env steps per training-return bin")
    a = p.parse_args(argv)
    for run in a.runs:
        if not run.is_dir():
            print(f"error: run directory {run} not found", file=sys.stderr)
            return 2
    table, data = report(a.runs, a.bin)
    plot(data, a.png)
    if a.md:
        a.md.write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
