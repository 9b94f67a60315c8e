"""The fair study: every agent at its own tuned learning rate, more seeds, a ledger.

Protocol (`FairProtocol`): the first study's MinAtar protocol (configs/minatar_<agent>.yaml
with one update per 4 env steps and a target sync every 1,000 env steps), plus

- **tuning**: agents x games x `rates` x `tune_seeds`, `tune_steps` env steps each, with
  epsilon on the schedule of a `steps`-long run (`train.schedule_steps`), so a tuning run
  is the first `tune_steps` of a full run; the rate of an agent is chosen by the
  across-game IQM of normalized AUC (`wnrl.experiments.fair_report.choose_rates`);
- **main runs**: `seeds` x games at `steps` env steps for each (agent, rate) asked for
  (its tuned rate, and the shared rate), each ended by an evaluation phase
  (`eval_episodes` whole games at epsilon 0.001 on the final checkpoint);
- **the rate check** (`plan_cross`): each of `first_agents` also at the other first
  agents' tuned rates, on the first `cross_seeds` seeds, trained after everything else:
  it tells whether an agent that did not choose a rate copes with it at `steps`.

Training is one group process per (phase, game, agent[, rate]) (`GroupSpec`: the seeds,
and in tuning the rates, of one agent trained in one process by `wnrl.group`), two at a
time (`wnrl.experiments.study.train_runs`). Run directories:

    <runs_dir>/tune/<env tag>/<agent>_s<seed>_lr<rate>
    <runs_dir>/main/<env tag>/lr<rate>/<agent>_s<seed>

Every finished run becomes one `RunRecord` in the ledger (`<out>/runs.jsonl`, see
`wnrl.experiments.ledger`): the tables are computed from the ledger alone, so they are
reproduced from a fresh clone, and a later session adds seeds without retraining.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wnrl.checkpoint import checkpoint_name
from wnrl.experiments.ledger import Ledger, RunRecord, record_of_run
from wnrl.experiments.study import _TRAIN, config_tag, env_overrides, env_tag

TUNE, MAIN = "tune", "main"
AGENTS = ("dqn", "wn_dqn", "ln_dqn", "bn_dqn", "wn_mobn_dqn")
GAMES = ("minatar/breakout", "minatar/seaquest", "minatar/space_invaders")


@dataclass(frozen=True)
class FairProtocol:
    """Everything that defines the study's runs (the defaults are the study's)."""

    games: tuple[str, ...] = GAMES
    agents: tuple[str, ...] = AGENTS
    rates: tuple[float, ...] = (6.25e-5, 2.5e-4, 1e-3, 4e-3)  # log grid around 2.5e-4
    first_agents: tuple[str, ...] = ("dqn", "wn_dqn", "ln_dqn")  # trained first (plan_main)
    shared_rate: float = 2.5e-4
    tune_seeds: tuple[int, ...] = (100, 101)  # never used in the comparison
    tune_steps: int = 120_000
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    # the pre-registered cut (docs/results/minatar/README.md, "Budget"): the agents after
    # `first_agents` (the batch-statistics ones) are compared on the first `late_seeds` of
    # `seeds` only, at every rate: their shared-rate cells keep the first study's 3 seeds
    # and their tuned cells get 3; None trains them on every seed
    late_seeds: int | None = 3
    # the rate check (added before any of its runs, when the tuned comparison turned out
    # to hinge on `dqn`'s rate at 1M): `first_agents` at each other's tuned rates, on the
    # first `cross_seeds` of `seeds`; None: no check
    cross_seeds: int | None = 3
    steps: int = 1_000_000
    overrides: tuple[str, ...] = ("train.updates_per_step=0.25",
                                  "learner.target_update_period=250")
    eval_episodes: int = 10
    eval_epsilon: float = 0.001
    configs_dir: Path = Path("configs")
    runs_dir: Path = Path("runs/fair")

    def config(self, agent: str, env_id: str) -> Path:
        path = self.configs_dir / f"{config_tag(env_id)}_{agent}.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"no config for agent {agent} on {env_id}: {path}")
        return path


def rate_tag(lr: float) -> str:
    """How a rate is written in run names: 0.00025, 6.25e-05 (as `wnrl.group` names them)."""
    return f"{lr:g}"


@dataclass(frozen=True)
class GroupSpec:
    """One group process: the runs of `agent` on `env_id` for `seeds` x `rates`."""

    phase: str  # TUNE or MAIN
    agent: str
    env_id: str
    seeds: tuple[int, ...]
    rates: tuple[float, ...]
    total_steps: int
    schedule_steps: int
    config: Path
    dir: Path  # parent of the member run directories
    overrides: tuple[str, ...] = ()

    def member_dir(self, seed: int, lr: float) -> Path:
        suffix = f"_lr{rate_tag(lr)}" if len(self.rates) > 1 else ""
        return self.dir / f"{self.agent}_s{seed}{suffix}"

    @property
    def members(self) -> list[tuple[int, float, Path]]:
        """(seed, rate, run directory) per member, seeds outer (as `wnrl.group` orders them)."""
        return [(s, lr, self.member_dir(s, lr)) for s in self.seeds for lr in self.rates]

    def member_finished(self, run_dir: Path) -> bool:
        return (run_dir / "checkpoints" / checkpoint_name(self.total_steps)).is_file()

    @property
    def finished(self) -> bool:
        return all(self.member_finished(d) for _, _, d in self.members)

    @property
    def log_path(self) -> Path:
        return self.dir / f"{self.agent}.log"

    @property
    def label(self) -> str:
        rates = "" if len(self.rates) > 1 else f" lr {rate_tag(self.rates[0])}"
        return f"{self.phase} {env_tag(self.env_id)} {self.agent}{rates}"

    def command(self) -> list[str]:
        """Resume the group from a member with a checkpoint, else start it."""
        base = [sys.executable, "-c", _TRAIN]
        started = [d for _, _, d in self.members if any(d.glob("checkpoints/ckpt_*.pt"))]
        if started:
            return [*base, "--resume", str(started[0])]
        lr = (f"learner.lr=[{','.join(rate_tag(r) for r in self.rates)}]"
              if len(self.rates) > 1 else f"learner.lr={rate_tag(self.rates[0])}")
        exists = any(d.exists() for _, _, d in self.members)
        return [*base, "--config", str(self.config), *env_overrides(self.env_id),
                "--seeds", ",".join(str(s) for s in self.seeds), lr,
                f"train.total_steps={self.total_steps}",
                f"train.schedule_steps={self.schedule_steps}",
                f"train.runs_dir={self.dir}", f"train.run_name={self.agent}",
                *self.overrides, *(["--force"] if exists else [])]


def plan_tuning(p: FairProtocol, ledger: Ledger) -> list[GroupSpec]:
    """One group per (game, agent): tune_seeds x rates, tune_steps each; only the groups
    with a run the ledger lacks (a finished run is never trained again, even where its
    run directory is gone)."""
    specs = [GroupSpec(TUNE, agent, game, p.tune_seeds, p.rates, p.tune_steps, p.steps,
                       p.config(agent, game), p.runs_dir / TUNE / env_tag(game), p.overrides)
             for game in p.games for agent in p.agents]
    return [s for s in specs if not all(ledger.has(s.phase, s.env_id, s.agent, seed, lr,
                                                   s.total_steps) for seed, lr, _ in s.members)]


def plan_main(p: FairProtocol, rates: dict[str, Sequence[float]],
              ledger: Ledger) -> list[GroupSpec]:
    """One group per (game, agent, rate) for the seeds of `p.seeds` the ledger lacks, in
    the order of the study's priorities, so that a study cut short stays coherent:
    the batch-independent agents (`p.first_agents`) at their first rate (tuned), then at
    the others (shared), then the remaining agents the same way (on `p.late_seeds` seeds:
    the pre-registered cut); games innermost.

    rates: agent -> the rates it is compared at (its tuned rate first, the shared rate)."""
    order = []
    for tier in (True, False):
        for k in range(max((len(dict.fromkeys(v)) for v in rates.values()), default=0)):
            for agent in p.agents:
                lrs = list(dict.fromkeys(rates.get(agent, ())))
                if (agent in p.first_agents) == tier and k < len(lrs):
                    order += [(game, agent, lrs[k]) for game in p.games]
    return _main_groups(p, order, ledger, lambda agent: (
        p.seeds if agent in p.first_agents or p.late_seeds is None
        else p.seeds[:p.late_seeds]))


def cross_rates(p: FairProtocol, chosen: dict[str, float]) -> dict[str, tuple[float, ...]]:
    """agent -> the rates the rate check runs it at: the other first agents' tuned rates
    that are neither its own nor the shared rate (empty when `p.cross_seeds` is None)."""
    if p.cross_seeds is None:
        return {}
    first = [a for a in p.agents if a in p.first_agents and a in chosen]
    return {a: rates for a in first if (rates := tuple(dict.fromkeys(
        chosen[b] for b in first if chosen[b] not in (chosen[a], p.shared_rate))))}


def plan_cross(p: FairProtocol, chosen: dict[str, float], ledger: Ledger) -> list[GroupSpec]:
    """The rate check's groups (`cross_rates`) for the first `p.cross_seeds` seeds the
    ledger lacks: agents outermost, games innermost."""
    order = [(game, agent, lr) for agent, rates in cross_rates(p, chosen).items()
             for lr in rates for game in p.games]
    return _main_groups(p, order, ledger, lambda agent: p.seeds[:p.cross_seeds])


def _main_groups(p: FairProtocol, order: Sequence[tuple[str, str, float]], ledger: Ledger,
                 seeds_of: Callable[[str], Sequence[int]]) -> list[GroupSpec]:
    """One main-phase group per (game, agent, rate) of `order`, of the seeds in
    `seeds_of(agent)` the ledger lacks (none: no group)."""
    specs = []
    for game, agent, lr in order:
        have = {r.seed for r in ledger.select(MAIN, game, agent, lr, p.steps)}
        todo = tuple(s for s in seeds_of(agent) if s not in have)
        if todo:
            specs.append(GroupSpec(MAIN, agent, game, todo, (lr,), p.steps, p.steps,
                                   p.config(agent, game), p.runs_dir / MAIN / env_tag(game)
                                   / f"lr{rate_tag(lr)}", p.overrides))
    return specs


@dataclass
class Recorder:
    """Turns the finished members of groups into ledger records (with the evaluation phase
    for main runs) and saves the ledger after each one."""

    protocol: FairProtocol
    ledger: Ledger
    log: Callable[[str], None] = print
    added: list[RunRecord] = field(default_factory=list)

    def record(self, specs: Sequence[GroupSpec]) -> None:
        for spec in specs:
            for seed, lr, run_dir in spec.members:
                if self.ledger.has(spec.phase, spec.env_id, spec.agent, seed, lr,
                                   spec.total_steps) or not spec.member_finished(run_dir):
                    continue
                evaluate = spec.phase == MAIN
                rec = record_of_run(
                    run_dir, spec.phase, spec.env_id, spec.agent, seed, lr, spec.total_steps,
                    eval_episodes=self.protocol.eval_episodes if evaluate else 0,
                    eval_epsilon=self.protocol.eval_epsilon)
                self.ledger.add(rec)
                self.ledger.save()
                self.added.append(rec)
                self.log(f"recorded {spec.phase} {env_tag(spec.env_id)} {spec.agent} s{seed} "
                         f"lr {rate_tag(lr)}: final {rec.final:.2f}, AUC {rec.auc:.2f}"
                         + (f", eval {rec.eval_mean:.2f}" if rec.eval_mean is not None else ""))


def random_scores(p: FairProtocol) -> dict[str, float]:
    """The uniformly random policy's mean return per game (200 whole episodes, seeded)."""
    from wnrl.config import load_config
    from wnrl.experiments.study_games import random_score

    return {g: random_score(g, load_config(p.config("dqn", g), list(env_overrides(g))))
            for g in p.games}


def import_first_study(ledger: Ledger, p: FairProtocol, first_study_dir: Path,
                       log: Callable[[str], None] = print) -> int:
    """Add the first study's runs (`<dir>/<env tag>/summary.json`: seeds 0..2 at the
    shared rate, same protocol) that the ledger lacks; returns how many were added."""
    from wnrl.experiments.ledger import first_study_records

    added = 0
    for game in p.games:
        path = first_study_dir / env_tag(game) / "summary.json"
        if not path.is_file():
            continue
        for rec in first_study_records(path, MAIN, p.shared_rate):
            if rec.total_steps == p.steps and rec.agent in p.agents and rec.seed in p.seeds \
                    and rec.key not in ledger.records:
                ledger.add(rec)
                added += 1
    if added:
        ledger.save()
        log(f"imported {added} first-study runs from {first_study_dir}")
    return added


def env_steps(specs: Sequence[GroupSpec]) -> int:
    """Env steps the unfinished members of `specs` still have to train (upper bound:
    a started member counts whole)."""
    return sum(g.total_steps for g in specs for _, _, d in g.members
               if not g.member_finished(d))
