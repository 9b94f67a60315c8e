"""The study across several games: plan, normalize, aggregate (rliable's estimators).

`plan_study` orders the runs of every (seed, game, agent) with seeds outermost, so an
interrupted study stays balanced across games and agents. `write_games_summary`
reads the per-game results that `wnrl.study.run_study` wrote and adds, across games:

- scores normalized per game as `(x - random) / (best - random)`: `random` is the mean
  return of a uniformly random policy in the same env (measured here, `random_scores`),
  `best` the highest final return of any run of the study on that game (MinAtar has no
  published human or reference scores to normalize by);
- the IQM of the normalized final and AUC returns per agent, with 95%
  stratified-bootstrap intervals (`stratified_iqm`: runs resampled within each game);
- the probability of improvement P(X > Y) (`probability_of_improvement`): the chance
  that a run of X beats a run of Y on a game drawn uniformly, with its stratified
  bootstrap interval, overall and per game.

These are the estimators of Agarwal et al. (2021, "Deep RL at the edge of the
statistical precipice"), written with NumPy/SciPy because rliable is not installed.
"""

from __future__ import annotations

from collections.abc import Sequence

from wnrl.study import RunSpec, StudyOptions, plan_runs

CI_LEVEL = 95.0


def plan_study(env_ids: Sequence[str], opt: StudyOptions) -> list[RunSpec]:
    """The runs of every env in `env_ids`, ordered (seed, env, agent)."""
    per_env = [plan_runs(e, opt.agents, opt.seeds, opt.total_steps, opt.configs_dir,
                         opt.runs_dir, opt.overrides) for e in env_ids]
    return [s for seed in opt.seeds for specs in per_env for s in specs if s.seed == seed]
