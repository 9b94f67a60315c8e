"""The study ledger: one JSON line per finished run, the only input of the study's tables.

A `RunRecord` keeps what the statistics need of a run: its 25-point learning curve, final
return, AUC, the mean `noise/` diagnostics and, for runs that had one, the evaluation
phase's returns. Records are keyed by (phase, env, agent, seed, rate, env steps); the
file is sorted by key and written atomically, so it diffs cleanly and is never half
written. Runs of the first MinAtar study, whose run directories no longer exist, enter
through `first_study_records` (final and AUC per seed, from its per-game summary.json).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wnrl import atomic
from wnrl.checkpoint import checkpoint_name
from wnrl.experiments.study import final_return, learning_curve, noise_of_run, read_run

CURVE_POINTS = 25
FORMAT = 1


@dataclass(frozen=True)
class RunRecord:
    """One finished run. Returns are raw game scores (unclipped)."""

    phase: str  # "tune" or "main"
    env_id: str
    agent: str
    seed: int
    lr: float
    total_steps: int
    final: float  # mean training return (epsilon at its floor) over the last 10% of steps
    auc: float  # mean of the 25-point learning curve
    curve: tuple[float, ...] | None = None  # float[25], None for first-study runs
    noise: dict[str, float | None] | None = None  # mean `noise/` diagnostics
    eval_returns: tuple[float, ...] | None = None  # evaluation phase, whole games
    eval_epsilon: float | None = None
    source: str = ""  # the run directory, or where a first-study record was read

    @property
    def key(self) -> tuple[str, str, str, int, str, int]:
        return record_key(self.phase, self.env_id, self.agent, self.seed, self.lr,
                          self.total_steps)

    @property
    def eval_mean(self) -> float | None:
        return None if self.eval_returns is None else float(np.mean(self.eval_returns))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self) | {"format": FORMAT}, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        d = {k: v for k, v in d.items() if k != "format"}
        for k in ("curve", "eval_returns"):
            if d.get(k) is not None:
                d[k] = tuple(float(x) for x in d[k])
        return cls(**d)


def record_key(phase: str, env_id: str, agent: str, seed: int, lr: float,
               total_steps: int) -> tuple[str, str, str, int, str, int]:
    """The ledger key of a run (the rate as run names write it, so 2.5e-4 == 0.00025)."""
    return (phase, env_id, agent, seed, f"{lr:g}", total_steps)


def same_rate(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9)


class Ledger:
    """The records of one study, read from and saved to `path` (JSON lines)."""

    def __init__(self, path: Path, records: Iterable[RunRecord] = ()) -> None:
        self.path = Path(path)
        self.records: dict[tuple, RunRecord] = {r.key: r for r in records}

    @classmethod
    def load(cls, path: Path) -> Ledger:
        """The ledger at `path` (empty if there is no file yet)."""
        path = Path(path)
        if not path.is_file():
            return cls(path)
        records = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(RunRecord.from_dict(json.loads(line)))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{path} line {n} is not a run record: {exc}") from None
        return cls(path, records)

    def save(self) -> None:
        lines = [self.records[k].to_json() for k in sorted(self.records)]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(self.path, "".join(line + "\n" for line in lines))

    def add(self, record: RunRecord) -> None:
        self.records[record.key] = record

    def has(self, phase: str, env_id: str, agent: str, seed: int, lr: float,
            total_steps: int) -> bool:
        return record_key(phase, env_id, agent, seed, lr, total_steps) in self.records

    def select(self, phase: str, env_id: str | None = None, agent: str | None = None,
               lr: float | None = None, total_steps: int | None = None) -> list[RunRecord]:
        """Records matching every given field, by seed."""
        out = [r for r in self.records.values() if r.phase == phase
               and (env_id is None or r.env_id == env_id)
               and (agent is None or r.agent == agent)
               and (lr is None or same_rate(r.lr, lr))
               and (total_steps is None or r.total_steps == total_steps)]
        return sorted(out, key=lambda r: (r.env_id, r.agent, r.lr, r.seed))


def record_of_run(run_dir: Path, phase: str, env_id: str, agent: str, seed: int, lr: float,
                  total_steps: int, eval_episodes: int = 0,
                  eval_epsilon: float = 0.001) -> RunRecord:
    """Read a finished run's TensorBoard scalars; with `eval_episodes`, play the evaluation
    phase on its final checkpoint (whole games at `eval_epsilon`, evaluation seeds of
    `seed`, scores also written to `<run_dir>/eval_final.json`)."""
    from wnrl.evaluate import evaluate_checkpoint

    df = read_run(run_dir)
    curve = learning_curve(df, total_steps, CURVE_POINTS)
    noise = {k: (None if math.isnan(v) else v) for k, v in noise_of_run(df).items()}
    returns = None
    if eval_episodes:
        final_ckpt = run_dir / "checkpoints" / checkpoint_name(total_steps)
        res, _ = evaluate_checkpoint(final_ckpt, eval_episodes, eval_epsilon, seed=seed,
                                     json_path=str(run_dir / "eval_final.json"))
        returns = tuple(float(x) for x in res.returns)
    return RunRecord(phase, env_id, agent, seed, float(lr), total_steps,
                     final_return(df, total_steps), float(curve.mean()),
                     tuple(float(x) for x in curve), noise, returns,
                     eval_epsilon if eval_episodes else None, str(run_dir))


def first_study_records(summary_json: Path, phase: str, lr: float) -> list[RunRecord]:
    """The first MinAtar study's runs (seeds 0..n-1 at the shared rate `lr`) from one
    game's summary.json: final and AUC per seed; no curve, noise or evaluation phase."""
    doc = json.loads(Path(summary_json).read_text())
    out = []
    for agent, a in doc["agents"].items():
        for seed, (final, auc) in enumerate(zip(a["final_per_seed"], a["auc_per_seed"])):
            out.append(RunRecord(phase, doc["env"], agent, seed, float(lr),
                                 int(doc["total_steps"]), float(final), float(auc),
                                 source=f"first study: {summary_json.as_posix()}"))
    return out
