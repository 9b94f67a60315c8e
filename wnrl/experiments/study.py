"""The noise-sensitivity study: train agents x seeds, read their curves, summarize.

`scripts/compare.py` is a thin front end. The pieces:

- `plan_runs` names one run per (agent, seed): `<runs_dir>/<env tag>/<agent>_s<seed>`,
  trained from `<configs_dir>/<env tag>_<agent>.yaml` with `seed`, `train.total_steps`
  and any extra overrides. `train_runs` trains the missing ones in at most `parallel`
  `nice`d subprocesses (one torch thread each), resumes interrupted ones and skips
  finished ones, so a study can be re-run to complete or to re-read its runs.
- `read_run` reads a run's TensorBoard scalars back with `tbparse`; `learning_curve`
  bins its episode returns on a grid of env steps.
- `summarize` gives per agent the final and area-under-curve returns with IQM and
  bootstrap 95% intervals over seeds (rliable's estimators, in a few lines of SciPy),
  the logged `noise/` diagnostics and the update-cost ratios of `wnrl.experiments.study_measure`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import pandas as pd

from wnrl import atomic
from wnrl.checkpoint import checkpoint_name
from wnrl.experiments.study_results import AgentResults
from wnrl.minatar_env import is_minatar, minatar_game
from wnrl.stats import interval, iqm, resample

DEFAULT_AGENTS = ("dqn", "wn_dqn", "bn_dqn", "wn_mobn_dqn")
FINAL_FRACTION = 0.1  # "final return": episodes in the last 10% of env steps
NOISE_TAGS = ("q_std", "q_std_rel", "action_flip_frac", "train_eval_gap", "td_target_std",
              "td_target_std_if_train")
T = TypeVar("T", bound="Trainable")
_TRAIN = "import sys; from wnrl.cli import train_main; sys.exit(train_main(sys.argv[1:]))"


def env_tag(env_id: str) -> str:
    """Short lowercase name used in run and result names: CartPole-v1 -> cartpole,
    ALE/Pong-v5 -> pong, minatar/SpaceInvaders -> minatar_space_invaders."""
    if is_minatar(env_id):
        return "minatar_" + minatar_game(env_id)
    name = env_id.split("/")[-1]
    return re.sub(r"-v\d+$", "", name).replace("-", "_").lower()


def config_tag(env_id: str) -> str:
    """Prefix of the agent configs for `env_id`: `<prefix>_<agent>.yaml`. MinAtar games
    share one file per agent (`minatar_<agent>.yaml`, the game set by `env.id`)."""
    return "minatar" if is_minatar(env_id) else env_tag(env_id)


def env_overrides(env_id: str) -> tuple[str, ...]:
    """Overrides that select `env_id` in its config (the game, for shared MinAtar configs)."""
    return (f"env.id={env_id}",) if is_minatar(env_id) else ()


@dataclass(frozen=True)
class RunSpec:
    """One training run of the study."""

    agent: str
    seed: int
    config: Path  # YAML config of the agent on this env
    run_dir: Path  # <runs_dir>/<env tag>/<agent>_s<seed>
    total_steps: int  # env steps
    overrides: tuple[str, ...] = ()  # extra key=value overrides

    @property
    def finished(self) -> bool:
        """The run wrote its final checkpoint (at `total_steps`)."""
        return (self.run_dir / "checkpoints" / checkpoint_name(self.total_steps)).is_file()

    @property
    def log_path(self) -> Path:
        """Where `train_runs` writes the training process's output."""
        return self.run_dir.parent / f"{self.run_dir.name}.log"

    @property
    def label(self) -> str:
        return f"{self.agent} s{self.seed}"

    def command(self) -> list[str]:
        """The training command: resume an interrupted run, else start it."""
        base = [sys.executable, "-c", _TRAIN]
        if self.run_dir.is_dir() and any(self.run_dir.glob("checkpoints/ckpt_*.pt")):
            return [*base, "--resume", str(self.run_dir)]
        return [*base, "--config", str(self.config), f"seed={self.seed}",
                f"train.total_steps={self.total_steps}",
                f"train.runs_dir={self.run_dir.parent}", f"train.run_name={self.run_dir.name}",
                *self.overrides, *(["--force"] if self.run_dir.exists() else [])]


def plan_runs(env_id: str, agents: Sequence[str], seeds: Sequence[int], total_steps: int,
              configs_dir: Path, runs_dir: Path, overrides: Sequence[str] = ()) -> list[RunSpec]:
    """One `RunSpec` per (seed, agent), seeds outermost so partial studies stay balanced."""
    tag = env_tag(env_id)
    specs = []
    for seed in seeds:
        for agent in agents:
            config = configs_dir / f"{config_tag(env_id)}_{agent}.yaml"
            if not config.is_file():
                raise FileNotFoundError(f"no config for agent {agent} on {env_id}: {config}")
            specs.append(RunSpec(agent, seed, config, runs_dir / tag / f"{agent}_s{seed}",
                                 total_steps, (*env_overrides(env_id), *overrides)))
    return specs


class Trainable(Protocol):
    """What `train_runs` needs of a unit of training (a `RunSpec`, or a group of runs in
    one process, `wnrl.experiments.fair.GroupSpec`)."""

    @property
    def finished(self) -> bool: ...
    @property
    def log_path(self) -> Path: ...
    @property
    def label(self) -> str: ...
    def command(self) -> list[str]: ...


def train_runs(specs: Sequence[T], parallel: int = 2, nice: int = 15,
               progress: bool = True, on_done: Callable[[T], None] | None = None) -> list[T]:
    """Train the unfinished specs, at most `parallel` processes at a time (one torch thread
    each); returns the ones that failed.

    Each process's output is appended to the spec's `log_path`; a progress bar counts
    finished specs. `on_done(spec)` is called as soon as a spec finishes (not for failed
    ones), so a long study can save what it has while other specs still train.
    """
    from tqdm import tqdm

    todo = [s for s in specs if not s.finished]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    failed: list[T] = []
    running: list[tuple[T, subprocess.Popen]] = []
    bar = tqdm(total=len(specs), initial=len(specs) - len(todo), unit="run",
               disable=not progress, desc="training runs")
    while todo or running:
        while todo and len(running) < parallel:
            spec = todo.pop(0)
            spec.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(spec.log_path, "a")  # noqa: SIM115
            proc = subprocess.Popen(spec.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                    preexec_fn=(lambda: os.nice(nice)) if nice else None)
            log.close()
            running.append((spec, proc))
        done = [(s, p) for s, p in running if p.poll() is not None]
        if not done:
            time.sleep(0.5)
            continue
        for spec, proc in done:
            running.remove((spec, proc))
            if proc.returncode != 0 or not spec.finished:
                failed.append(spec)
                bar.write(f"{spec.label} failed (exit {proc.returncode}); see {spec.log_path}")
            elif on_done is not None:
                on_done(spec)
            bar.set_postfix_str(f"{spec.label} done")
            bar.update(1)
    bar.close()
    return failed


def read_run(run_dir: Path) -> pd.DataFrame:
    """All scalars of a run as a DataFrame with columns step, tag, value (tbparse)."""
    from tbparse import SummaryReader

    df = SummaryReader(str(run_dir)).scalars
    if df.empty:
        raise ValueError(f"no TensorBoard scalars in {run_dir}")
    return df


def learning_curve(scalars: pd.DataFrame, total_steps: int, points: int = 25,
                   tag: str = "episode/return") -> np.ndarray:
    """float64[points]: mean `tag` value of the episodes that ended in each of `points`
    equal bins of env steps; a bin without episodes repeats the previous value (the first
    non-empty bin is used before it)."""
    ep = scalars[scalars.tag == tag]
    edges = np.linspace(0, total_steps, points + 1)
    bins = np.clip(np.searchsorted(edges, ep.step.to_numpy(), side="left") - 1, 0, points - 1)
    sums = np.bincount(bins, weights=ep.value.to_numpy(), minlength=points)
    counts = np.bincount(bins, minlength=points)
    curve = np.full(points, np.nan)
    curve[counts > 0] = sums[counts > 0] / counts[counts > 0]
    if np.isnan(curve).all():
        raise ValueError(f"no '{tag}' values to build a learning curve from")
    curve = pd.Series(curve).ffill().bfill().to_numpy()
    return curve


def final_return(scalars: pd.DataFrame, total_steps: int,
                 tag: str = "episode/return") -> float:
    """Mean return of the episodes that ended in the last `FINAL_FRACTION` of env steps."""
    ep = scalars[scalars.tag == tag]
    last = ep[ep.step > (1.0 - FINAL_FRACTION) * total_steps]
    return float((last if len(last) else ep.tail(1)).value.mean())


def noise_of_run(scalars: pd.DataFrame) -> dict[str, float]:
    """Mean over the run's log points of each `noise/` diagnostic (absent tags: NaN)."""
    out = {}
    for name in NOISE_TAGS:
        v = scalars[scalars.tag == f"noise/{name}"].value
        out[name] = float(v.mean()) if len(v) else float("nan")
    return out


def load_results(specs: Sequence[RunSpec], points: int = 25) -> dict[str, AgentResults]:
    """Read every finished run of `specs`, grouped by agent (agents in `specs` order)."""
    grouped: dict[str, list[tuple[np.ndarray, float, dict[str, float]]]] = {}
    for s in specs:
        if not s.finished:
            continue
        df = read_run(s.run_dir)
        grouped.setdefault(s.agent, []).append(
            (learning_curve(df, s.total_steps, points), final_return(df, s.total_steps),
             noise_of_run(df)))
    return {a: AgentResults(np.stack([r[0] for r in rows]), np.array([r[1] for r in rows]),
                            [r[2] for r in rows]) for a, rows in grouped.items()}


def interval_estimates(per_seed: dict[str, np.ndarray], reps: int = 2000,
                       seed: int = 0) -> dict[str, dict[str, Any]]:
    """IQM and mean over seeds with 95% percentile-bootstrap intervals (seeds resampled
    with replacement; with one task this is rliable's stratified bootstrap).

    per_seed: agent -> float[S]. Returns agent -> {iqm, iqm_ci: [lo, hi], mean, mean_ci}.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for agent, values in per_seed.items():
        v = np.asarray(values, dtype=np.float64).ravel()
        samples = resample(v, rng, reps)  # [reps, S]
        boot = {"iqm": iqm(samples, axis=1), "mean": samples.mean(axis=1)}
        point = {"iqm": iqm(v), "mean": float(v.mean())}
        out[agent] = {k2: val for k in ("iqm", "mean") for k2, val in (
            (k, point[k]), (f"{k}_ci", interval(boot[k])))}
    return out


def summarize(results: dict[str, AgentResults], costs: dict[str, dict[str, float]],
              reps: int = 2000) -> dict[str, dict[str, Any]]:
    """Per agent: final and AUC return estimates, per-seed values, noise, update costs.

    costs: agent -> {name: ratio or ms} from `study_measure.update_costs` (may be {}).
    """
    final = interval_estimates({a: r.final for a, r in results.items()}, reps)
    auc = interval_estimates({a: r.curves.mean(axis=1) for a, r in results.items()}, reps)
    out: dict[str, dict[str, Any]] = {}
    for a, r in results.items():
        noise = {k: float(np.nanmean([n[k] for n in r.noise]))
                 if not np.isnan([n[k] for n in r.noise]).all() else None for k in NOISE_TAGS}
        out[a] = {"seeds": len(r.final), "final_return": final[a], "auc_return": auc[a],
                  "final_per_seed": [float(x) for x in r.final],
                  "auc_per_seed": [float(x) for x in r.curves.mean(axis=1)], "noise": noise,
                  "update_cost": costs.get(a, {})}
    return out


@dataclass(frozen=True)
class StudyOptions:
    """Everything `run_study` needs (the command-line options of scripts/compare.py)."""

    env_id: str
    agents: tuple[str, ...] = DEFAULT_AGENTS
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    total_steps: int = 50_000
    configs_dir: Path = Path("configs")
    runs_dir: Path = Path("runs/study")
    out_dir: Path = Path("docs/results")
    overrides: tuple[str, ...] = ()
    parallel: int = 2
    nice: int = 15
    train: bool = True  # False: only read the existing runs
    sweep_sizes: tuple[int, ...] = (32, 64, 256, 1024)
    timing_repeats: int = 20
    cnn_cost: bool = True  # also time the agents' Nature CNN (Atari shape) updates
    points: int = 25  # learning-curve bins
    command: str = ""  # recorded in the summary


def run_study(opt: StudyOptions, log: Any = print) -> dict[str, Any]:
    """Train (unless `opt.train` is False), read, measure, and write `<out_dir>/<env tag>/`
    {figure.png, summary.md, summary.json}. Returns the JSON summary."""
    import json

    import torch

    from wnrl.envs import make_env
    from wnrl.experiments import study_measure as sm
    from wnrl.experiments.study_plot import markdown_table, plot_study

    tag = env_tag(opt.env_id)
    specs = plan_runs(opt.env_id, opt.agents, opt.seeds, opt.total_steps, opt.configs_dir,
                      opt.runs_dir, opt.overrides)
    if opt.train:
        failed = train_runs(specs, opt.parallel, opt.nice)
        if failed:
            log(f"{len(failed)} run(s) failed; summarizing the finished ones")
    results = load_results(specs, opt.points)
    if not results:
        raise RuntimeError(f"no finished runs under {opt.runs_dir / tag}")
    log(f"read {sum(len(r.final) for r in results.values())} runs; measuring update costs")
    ctag, env_ov = config_tag(opt.env_id), list(env_overrides(opt.env_id))
    cfgs = sm.load_agent_configs(opt.configs_dir, ctag, list(results), env_ov)
    first = cfgs[next(iter(cfgs))]
    bn_run = next((s.run_dir for s in specs if s.agent == "bn_dqn" and s.finished), None)
    bn_cfg = cfgs.get("bn_dqn") or load_config_for(opt.configs_dir, ctag, "bn_dqn", env_ov)
    with torch.random.fork_rng():
        probe_env = make_env(first.env, seed=0, training=True)
        obs_shape, num_actions = probe_env.obs_shape, probe_env.num_actions
        probe_env.close()
        bn_net = sm.network_for(bn_cfg, obs_shape, num_actions, bn_run)
        states = sm.collect_states(bn_cfg, bn_net, max(opt.sweep_sizes, default=256) + 1040)
        costs = sm.update_costs(cfgs, states, num_actions, opt.timing_repeats)
        cnn_costs: dict[str, dict[str, float]] = {}
        if opt.cnn_cost and len(obs_shape) != 3:  # time the Atari-shaped net too
            atari = sm.load_agent_configs(opt.configs_dir, "pong", list(results))
            frames = np.random.default_rng(0).integers(0, 256, (256, *sm.ATARI_SHAPE), np.uint8)
            cnn_costs = sm.update_costs(atari, frames, 6, max(3, opt.timing_repeats // 3))
        elif opt.cnn_cost:
            cnn_costs = costs
        log("measuring batch norm against minibatch size")
        base_cfg = cfgs.get("dqn") or load_config_for(opt.configs_dir, ctag, "dqn", env_ov)
        sweep = sm.bn_sweep(bn_cfg, base_cfg, bn_net, states, num_actions, opt.sweep_sizes,
                            repeats=max(3, opt.timing_repeats // 2)) if opt.sweep_sizes else []
    summary = summarize(results, costs)
    out = opt.out_dir / tag
    out.mkdir(parents=True, exist_ok=True)
    plot_study(out / "figure.png", opt.env_id, opt.total_steps, results, summary, sweep)
    doc = {"env": opt.env_id, "total_steps": opt.total_steps, "agents": summary,
           "update_cost_nature_cnn": cnn_costs, "bn_minibatch_sweep": sweep,
           "bn_sweep_network": str(bn_run) if bn_run else "freshly initialized",
           "command": opt.command, "torch_threads": torch.get_num_threads()}
    atomic.write_text(out / "summary.json", json.dumps(doc, indent=2) + "\n")
    header = (f"# {opt.env_id}: noise study\n\n{opt.total_steps} env steps per run; final "
              f"return = mean training-episode return over the last "
              f"{int(100 * FINAL_FRACTION)}% of env steps; AUC = mean of the learning curve. "
              f"Noise columns are means of the `noise/` diagnostics logged during training.\n\n"
              f"Reproduce: `{opt.command}`\n\n![figure](figure.png)\n\n")
    bn_network = (f"bn_dqn network trained in {bn_run}" if bn_run else
                  "freshly initialized bn_dqn network: no bn_dqn run has finished")
    atomic.write_text(out / "summary.md",
                      header + markdown_table(summary, sweep, cnn_costs, bn_network))
    log(f"wrote {out / 'figure.png'}, {out / 'summary.md'}, {out / 'summary.json'}")
    return doc


def load_config_for(configs_dir: Path, tag: str, agent: str,
                    overrides: Sequence[str] = ()) -> Any:
    """The config of `agent` on env `tag` (for measurements of agents not in the study)."""
    from wnrl.config import load_config

    return load_config(configs_dir / f"{tag}_{agent}.yaml", list(overrides))
