"""The GPU check's report (called by scripts/gpu_check.sh; see there).

    python scripts/gpu_report.py versions --out DIR    # DIR/versions.json
    python scripts/gpu_report.py report --out DIR --run-dir RUN
        # reads DIR/{versions.json, steps.tsv, tests.xml, benchmark.json,
        # benchmark_graph.json, benchmark_group.json} and the training
        # run RUN; writes DIR/gpu_check.json and DIR/gpu_check.md and prints the Markdown
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("numpy", "ale-py", "gymnasium", "omegaconf", "tensorboard", "wnrl")


def versions() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "torch_cuda": torch.version.cuda, "cores": os.cpu_count(),
                            "cuda_available": torch.cuda.is_available(), "gpu": None}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, capability=f"{p.major}.{p.minor}",
                    cudnn=torch.backends.cudnn.version(),
                    gpu_memory_gib=round(p.total_memory / 2**30, 1))
        q = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True)
        info["driver"] = q.stdout.strip().splitlines()[0] if q.returncode == 0 else None
    for name in PACKAGES:
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = None
    return info


def tests(xml_path: Path) -> dict[str, Any] | None:
    if not xml_path.exists():
        return None
    root = ET.parse(xml_path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{c.get('classname')}.{c.get('name')}" for c in suite.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    return {**n, "passed": n["tests"] - n["failures"] - n["errors"] - n["skipped"],
            "failed": failed}


def train(run_dir: Path, seconds: float) -> dict[str, Any] | None:
    """Env steps/s and the last raw game scores of the training run: its final step (the
    checkpoint written at the stop), config.yaml and TensorBoard scalars."""
    import yaml
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from wnrl.checkpoint import list_checkpoints

    if not (run_dir / "config.yaml").exists():
        return None
    t = yaml.safe_load((run_dir / "config.yaml").read_text())["train"]
    ea = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    get = {k: ea.Scalars(k) if k in tags else [] for k in
           ("episode/return", "perf/env_steps_per_s", "perf/updates_per_s")}
    ckpts = list_checkpoints(run_dir / "checkpoints")
    steps = int(ckpts[-1].stem.split("_")[1]) if ckpts else None
    # throughput logged over intervals that lie wholly after the learning start
    learning = [(s.value, u.value) for s, u in zip(get["perf/env_steps_per_s"],
                                                   get["perf/updates_per_s"], strict=True)
                if s.step - t["log_period"] >= t["learning_starts"]]
    rets = [e.value for e in get["episode/return"]]
    return {"env_steps": steps, "seconds": seconds,
            "env_steps_per_s": steps / max(seconds, 1) if steps else None,
            "learning_starts": t["learning_starts"],
            "learning_env_steps_per_s": statistics.median(v for v, _ in learning)
            if learning else None,
            "learning_updates_per_s": statistics.median(u for _, u in learning)
            if learning else None,
            "episodes": len(rets), "last_returns": rets[-10:],
            "last10_mean": statistics.fmean(rets[-10:]) if rets else None}


def markdown(r: dict[str, Any]) -> str:
    v, out = r["versions"] or {}, ["# wnrl GPU check", ""]
    gpu = (f"GPU {v['gpu']} (compute {v['capability']}, {v['gpu_memory_gib']} GiB), driver "
           f"{v['driver']}, CUDA {v['torch_cuda']}, cuDNN {v['cudnn']}" if v.get("gpu")
           else "no GPU")
    out.append(f"{gpu}; torch {v.get('torch')}, Python {v.get('python')}, {v.get('cores')} "
               f"cores, ale-py {v.get('ale-py')}.")
    out += ["", "| step | exit code | seconds |", "|---|---|---|"]
    out += [f"| {s['step']} | {s['rc']} | {s['seconds']} |" for s in r["steps"]]
    t = r["tests"]
    out += ["", "## CUDA tests", "", "no result (see tests.log)" if t is None else
            f"{t['passed']} passed, {t['failures'] + t['errors']} failed, {t['skipped']} skipped"
            + "".join(f"\n- failed: {f}" for f in t["failed"])]
    for key, title in (("benchmark", "Benchmark"),
                       ("benchmark_graph", "Benchmark: the CUDA-graph lever")):
        if key == "benchmark_graph" and r.get(key) is None and not any(
                s["step"] == key for s in r["steps"]):
            continue  # not run (CPU)
        out += ["", f"## {title}", ""]
        if r.get(key) is None:
            out.append(f"no result (see {key}.log)")
        else:
            from wnrl.experiments.benchmark import format_table

            out.append(format_table(r[key]))
    if r.get("benchmark_group") is not None or any(s["step"] == "benchmark_group"
                                                   for s in r["steps"]):
        out += ["", "## Benchmark: the many-runs group on the GPU", ""]
        if r.get("benchmark_group") is None:
            out.append("no result (see benchmark_group.log)")
        else:
            from wnrl.experiments.benchmark_group import format_group_table

            out.append(format_group_table(r["benchmark_group"]["results"]))
    tr = r["train"]
    out += ["", "## Pong WN-DQN training run", ""]
    if tr is None:
        out.append("no result (see train.log)")
    else:
        def f(x: float | None, fmt: str = ".0f") -> str:
            return "-" if x is None else format(x, fmt)

        out += ["| env steps | seconds | env steps/s (whole run) | env steps/s (learning) | "
                "updates/s (learning) | episodes | mean of last 10 scores | last scores |",
                "|---|---|---|---|---|---|---|---|",
                f"| {f(tr['env_steps'], 'd')} | {tr['seconds']:.0f} | "
                f"{f(tr['env_steps_per_s'])} | "
                f"{f(tr['learning_env_steps_per_s'])} | {f(tr['learning_updates_per_s'])} | "
                f"{tr['episodes']} | {f(tr['last10_mean'], '.1f')} | "
                f"{' '.join(f'{x:.0f}' for x in tr['last_returns'])} |"]
    return "\n".join(out) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["versions", "report"])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--run-dir", type=Path)
    a = p.parse_args()
    d = a.out
    if a.what == "versions":
        info = versions()
        (d / "versions.json").write_text(json.dumps(info, indent=2) + "\n")
        print(json.dumps(info, indent=2))
        return 0

    def load(name: str) -> Any:
        return json.loads((d / name).read_text()) if (d / name).exists() else None

    steps = [dict(zip(("step", "rc", "seconds"), line.split("\t"), strict=True))
             for line in (d / "steps.tsv").read_text().splitlines() if line]
    train_s = next((float(s["seconds"]) for s in steps if s["step"] == "train"), 0.0)
    r = {"versions": load("versions.json"), "steps": steps, "tests": tests(d / "tests.xml"),
         "benchmark": load("benchmark.json"), "benchmark_graph": load("benchmark_graph.json"),
         "benchmark_group": load("benchmark_group.json"),
         "train": train(a.run_dir, train_s) if a.run_dir else None}
    (d / "gpu_check.json").write_text(json.dumps(r, indent=2, default=float) + "\n")
    md = markdown(r)
    (d / "gpu_check.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
