"""The study across several games: plan, normalize, aggregate (rliable's estimators).

`plan_study` orders the runs of every (seed, game, agent) with seeds outermost, so an
interrupted study stays balanced across games and agents. `write_games_summary`
reads the per-game results that `wnrl.experiments.study.run_study` returned and adds, across games:

- scores normalized per game as `(x - random) / (best - random)`: `random` is the mean
  return of a uniformly random policy in the same env (measured, `random_score`),
  `best` the highest final return of any run of the study on that game (MinAtar has no
  published human or reference scores to normalize by; see `normalize` for the case
  where no run beats random);
- the IQM of the normalized final and AUC returns per agent, with 95%
  stratified-bootstrap intervals (`stratified_iqm`: runs resampled within each game);
- the probability of improvement P(X > Y) (`probability_of_improvement`): the chance
  that a run of X beats a run of Y on a game drawn uniformly, with its stratified
  bootstrap interval, overall and per game.

These are the estimators of Agarwal et al. (2021, "Deep RL at the edge of the
statistical precipice"), written with NumPy/SciPy because rliable is not installed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from wnrl.experiments.study import (
    RunSpec,
    StudyOptions,
    config_tag,
    env_overrides,
    env_tag,
    plan_runs,
)
from wnrl.stats import interval, iqm, prob_greater, resample


def plan_study(env_ids: Sequence[str], opt: StudyOptions) -> list[RunSpec]:
    """The runs of every env in `env_ids`, ordered (seed, env, agent)."""
    per_env = [plan_runs(e, opt.agents, opt.seeds, opt.total_steps, opt.configs_dir,
                         opt.runs_dir, opt.overrides) for e in env_ids]
    return [s for seed in opt.seeds for specs in per_env for s in specs if s.seed == seed]


def normalize(scores: dict[str, dict[str, np.ndarray]], low: dict[str, float],
              high: dict[str, float]) -> dict[str, dict[str, np.ndarray]]:
    """game -> agent -> float[S] scores mapped to (x - low[game]) / (high[game] - low[game]);
    where high[game] <= low[game] (no run beats the random policy) the divisor is
    max(|low[game]|, 1) instead, so the map stays defined and increasing."""
    def scale(g: str) -> float:
        return high[g] - low[g] if high[g] > low[g] else max(abs(low[g]), 1.0)

    return {g: {a: (np.asarray(x, np.float64) - low[g]) / scale(g)
                for a, x in per_agent.items()} for g, per_agent in scores.items()}


def stratified_iqm(scores: dict[str, dict[str, np.ndarray]], reps: int = 2000,
                   seed: int = 0) -> dict[str, dict[str, Any]]:
    """IQM over all (game, run) scores per agent with a 95% stratified-bootstrap interval.

    scores: game -> agent -> float[S] (normalized). Each replicate resamples the runs of
    every game separately (rliable's `StratifiedBootstrap`) and takes the IQM of the
    pooled resamples. Returns agent -> {iqm, iqm_ci: [lo, hi], runs}."""
    rng = np.random.default_rng(seed)
    agents = list(next(iter(scores.values())))
    out = {}
    for a in agents:
        per_game = [np.asarray(scores[g][a], np.float64) for g in scores]
        point = iqm(np.concatenate(per_game))
        boot = np.concatenate([resample(x, rng, reps) for x in per_game], axis=1)
        out[a] = {"iqm": point, "iqm_ci": interval(iqm(boot, axis=1)),
                  "runs": int(sum(len(x) for x in per_game))}
    return out


def probability_of_improvement(scores: dict[str, dict[str, np.ndarray]], x: str, y: str,
                               reps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """P(X > Y) averaged over games, with a 95% stratified-bootstrap interval (runs of X and
    of Y resampled independently within each game), and the same per game.

    Returns {p, ci: [lo, hi], per_game: {game: {p, ci}}}."""
    rng = np.random.default_rng(seed)
    per_game, boots = {}, []
    for g, s in scores.items():
        xs, ys = np.asarray(s[x], np.float64), np.asarray(s[y], np.float64)
        boot = prob_greater(resample(xs, rng, reps), resample(ys, rng, reps))
        boots.append(boot)
        per_game[g] = {"p": float(prob_greater(xs, ys)), "ci": interval(boot)}
    mean = np.mean(boots, axis=0)
    return {"x": x, "y": y, "p": float(np.mean([v["p"] for v in per_game.values()])),
            "ci": interval(mean), "per_game": per_game}


def mean_difference(x: np.ndarray, y: np.ndarray, reps: int = 2000,
                    seed: int = 0) -> dict[str, Any]:
    """mean(x) - mean(y) with a 95% bootstrap interval (runs resampled independently)."""
    rng = np.random.default_rng(seed)
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    boot = resample(x, rng, reps).mean(axis=1) - resample(y, rng, reps).mean(axis=1)
    return {"diff": float(x.mean() - y.mean()), "ci": interval(boot)}


def random_score(env_id: str, config: Any, episodes: int = 200, seed: int = 12345) -> float:
    """Mean raw return of a uniformly random policy over `episodes` whole episodes in the
    env of `config` (its sticky actions and action set), env i seeded `seed + i`."""
    import dataclasses

    from wnrl.envs import make_env

    cfg = dataclasses.replace(config.env, id=env_id, num_envs=8)
    rng = np.random.default_rng(seed)
    env = make_env(cfg, seed=seed, training=False)
    env.reset()
    returns: list[float] = []
    running = np.zeros(env.num_envs)
    while len(returns) < episodes:
        res = env.step(rng.integers(env.num_actions, size=env.num_envs))
        running += np.where(res.reset_step, 0.0, res.reward)
        done = res.terminated | res.truncated
        returns += running[done].tolist()
        running[done] = 0.0
    env.close()
    return float(np.mean(returns[:episodes]))


def games_summary(docs: Sequence[dict[str, Any]], random: dict[str, float],
                  improvement: tuple[str, str] = ("wn_dqn", "dqn"),
                  reps: int = 2000) -> dict[str, Any]:
    """Cross-game statistics from `run_study`'s per-game summaries (`docs`) and the random
    policy's score per game (`random`, keyed by env id). Only agents present on every
    game are aggregated; each game contributes the runs it has."""
    games = [d["env"] for d in docs]
    agents = [a for a in docs[0]["agents"] if all(a in d["agents"] for d in docs)]
    final = {d["env"]: {a: np.array(d["agents"][a]["final_per_seed"]) for a in agents}
             for d in docs}
    auc = {d["env"]: {a: np.array(d["agents"][a]["auc_per_seed"]) for a in agents}
           for d in docs}
    best = {g: float(max(v.max() for v in final[g].values())) for g in games}
    out: dict[str, Any] = {
        "games": games, "agents": agents, "random_score": random, "best_final": best,
        "final_iqm": stratified_iqm(normalize(final, random, best), reps),
        "auc_iqm": stratified_iqm(normalize(auc, random, best), reps)}
    x, y = improvement
    if x in agents and y in agents:
        out["improvement_final"] = probability_of_improvement(final, x, y, reps)
        out["improvement_auc"] = probability_of_improvement(auc, x, y, reps)
        out["difference_final"] = {g: mean_difference(final[g][x], final[g][y], reps)
                                   for g in games}
    out["per_game"] = {g: {a: {"final_mean": float(final[g][a].mean()),
                               "final_per_seed": final[g][a].tolist(),
                               "auc_mean": float(auc[g][a].mean())} for a in agents}
                       for g in games}
    out["noise"] = {d["env"]: {a: d["agents"][a]["noise"] for a in agents} for d in docs}
    return out


def write_games_summary(docs: Sequence[dict[str, Any]], opt: StudyOptions,
                        improvement: tuple[str, str] = ("wn_dqn", "dqn")) -> dict[str, Any]:
    """Write <out_dir>/games.json, games.md and games.png for the per-game `docs`."""
    from wnrl.experiments.study import load_results
    from wnrl.experiments.study_measure import load_agent_configs
    from wnrl.experiments.study_plot import games_markdown, plot_games

    random = {}
    for d in docs:
        env = d["env"]
        cfg = next(iter(load_agent_configs(opt.configs_dir, config_tag(env), ["dqn"],
                                           env_overrides(env)).values()))
        random[env] = random_score(env, cfg)
    summary = games_summary(docs, random, improvement)
    summary["total_steps"] = opt.total_steps
    summary["command"] = opt.command
    summary["overrides"] = list(opt.overrides)
    curves = {d["env"]: load_results(plan_runs(d["env"], summary["agents"], opt.seeds,
                                               opt.total_steps, opt.configs_dir,
                                               opt.runs_dir, opt.overrides), opt.points)
              for d in docs}
    opt.out_dir.mkdir(parents=True, exist_ok=True)
    (opt.out_dir / "games.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_games(opt.out_dir / "games.png", summary, curves, opt.total_steps)
    (opt.out_dir / "games.md").write_text(games_markdown(summary))
    print(f"wrote {opt.out_dir / 'games.png'}, games.md, games.json "
          f"({', '.join(env_tag(g) for g in summary['games'])})")
    return summary
