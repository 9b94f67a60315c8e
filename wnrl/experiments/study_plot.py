"""Figure and markdown table of the noise study (see `wnrl.experiments.study`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wnrl import atomic
from wnrl.experiments.study_results import AgentResults
from wnrl.stats import interval, resample

COLORS = {"dqn": "tab:gray", "wn_dqn": "tab:blue", "bn_dqn": "tab:red",
          "wn_mobn_dqn": "tab:green"}


def bootstrap_band(curves: np.ndarray, reps: int = 1000, seed: int = 0) -> np.ndarray:
    """95% percentile-bootstrap interval of the mean over seeds: curves float[S, T] ->
    float[2, T] (lower, upper)."""
    means = resample(curves, np.random.default_rng(seed), reps).mean(axis=1)  # [reps, T]
    return np.asarray(interval(means))


def plot_curves(ax: Any, results: dict[str, AgentResults], total_steps: int) -> None:
    """Mean learning curve per agent over its seeds, with a 95% bootstrap band."""
    for agent, r in results.items():
        x = np.linspace(0, total_steps, r.curves.shape[1] + 1)[1:]
        c = COLORS.get(agent, "k")
        ax.plot(x, r.curves.mean(axis=0), color=c, label=f"{agent} (n={r.curves.shape[0]} seeds)")
        if r.curves.shape[0] > 1:
            lo, hi = bootstrap_band(r.curves)
            ax.fill_between(x, lo, hi, color=c, alpha=0.2)


def _bar(ax: Any, agents: Sequence[str], values: Sequence[float | None], title: str,
         fmt: str) -> None:
    vals = [np.nan if v is None else v for v in values]
    ax.bar(range(len(agents)), np.nan_to_num(vals), color=[COLORS.get(a, "k") for a in agents])
    for i, v in enumerate(vals):
        ax.annotate("n/a" if np.isnan(v) else format(v, fmt), (i, np.nan_to_num(v)),
                    ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(agents)), agents, rotation=20, fontsize=8)
    ax.set_title(title, fontsize=10)


def plot_study(path: Path, env_id: str, total_steps: int, results: dict[str, AgentResults],
               summary: dict[str, dict[str, Any]], sweep: list[dict[str, float]]) -> None:
    """2x3 panels: learning curves; relative Q noise; greedy-action flips; update cost
    relative to the standard network; batch norm's noise and cost against minibatch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(15, 8.5), layout="constrained")
    grid = fig.add_gridspec(2, 3)
    ax = fig.add_subplot(grid[0, :2])
    plot_curves(ax, results, total_steps)
    ax.set_xlabel("env steps")
    ax.set_ylabel("training episode return")
    ax.set_title(f"{env_id}: learning curves (mean over seeds, 95% bootstrap band)")
    ax.legend(fontsize=9)
    ax.grid(alpha=0.3)

    agents = list(results)
    noise = [summary[a]["noise"] for a in agents]
    _bar(fig.add_subplot(grid[0, 2]), agents,
         [None if n["q_std_rel"] is None else 100 * n["q_std_rel"] for n in noise],
         "batch dependence in training:\nstd of Q(s) across minibatches / |Q| (%)", ".2f")
    _bar(fig.add_subplot(grid[1, 0]), agents,
         [None if n["action_flip_frac"] is None else 100 * n["action_flip_frac"] for n in noise],
         "probe states whose greedy action\nchanges with the minibatch (%)", ".1f")
    _bar(fig.add_subplot(grid[1, 1]), agents,
         [summary[a]["update_cost"].get("ratio") for a in agents],
         "update time / standard network's\n(Learner.update, median, CPU)", ".2f")

    ax = fig.add_subplot(grid[1, 2])
    if sweep:
        b = [r["batch_size"] for r in sweep]
        ax.plot(b, [100 * r["q_std_rel"] for r in sweep], "o-", color="tab:red",
                label="Q noise (% of |Q|)")
        ax.plot(b, [100 * r["action_flip_frac"] for r in sweep], "s--", color="tab:orange",
                label="action flips (%)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(b, [str(v) for v in b])
        ax.set_xlabel("minibatch size")
        ax.set_ylabel("noise (%)")
        ax2 = ax.twinx()
        ax2.plot(b, [r["update_ms_bn"] for r in sweep], "^-", color="tab:purple",
                 label="bn update (ms)")
        ax2.plot(b, [r["update_ms_standard"] for r in sweep], "v:", color="tab:gray",
                 label="standard update (ms)")
        ax2.set_ylabel("ms per update")
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="upper center")
    ax.set_title("batch norm: noise and update cost\nvs minibatch size", fontsize=10)
    with atomic.atomic_path(path, keep_suffix=True) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def _ci(est: dict[str, Any], key: str) -> str:
    lo, hi = est[f"{key}_ci"]
    return f"{est[key]:.1f} [{lo:.1f}, {hi:.1f}]"


def _pct(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{100 * v:.{digits}f}%"


def markdown_table(summary: dict[str, dict[str, Any]], sweep: list[dict[str, float]],
                   cnn_costs: dict[str, dict[str, float]], bn_network: str) -> str:
    """The summary tables in markdown (agents, then the batch-norm sweep on `bn_network`,
    which says whether that network was trained or freshly initialized)."""
    lines = ["| agent | seeds | final return IQM [95% CI] | final mean [95% CI] | "
             "AUC return IQM [95% CI] | Q noise (std / mean \\|Q\\|) | action flips | "
             "train-eval gap | TD-target std (eval target / if train) | "
             "update time vs dqn (env net) | (Nature CNN) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for a, s in summary.items():
        n, cost = s["noise"], s["update_cost"]
        tgt = ("n/a" if n["td_target_std"] is None else
               f"{n['td_target_std']:.3g} / {n['td_target_std_if_train']:.3g}")
        gap = "n/a" if n["train_eval_gap"] is None else f"{n['train_eval_gap']:.3g}"
        env_cost = f"{cost['ratio']:.2f}x ({cost['ms']:.2f} ms)" if cost else "n/a"
        cnn = cnn_costs.get(a)
        cnn_cost = f"{cnn['ratio']:.2f}x ({cnn['ms']:.1f} ms)" if cnn else "n/a"
        lines.append(f"| {a} | {s['seeds']} | {_ci(s['final_return'], 'iqm')} | "
                     f"{_ci(s['final_return'], 'mean')} | {_ci(s['auc_return'], 'iqm')} | "
                     f"{_pct(n['q_std_rel'])} | {_pct(n['action_flip_frac'], 1)} | {gap} | "
                     f"{tgt} | {env_cost} | {cnn_cost} |")
    if sweep:
        lines += ["", f"Batch norm against minibatch size ({bn_network}; states from "
                  "its epsilon-greedy policy):", "",
                  "| minibatch | Q noise (std / mean \\|Q\\|) | action flips | bn update (ms) | "
                  "standard update (ms) | bn / standard |", "|---|---|---|---|---|---|"]
        for r in sweep:
            lines.append(f"| {r['batch_size']} | {_pct(r['q_std_rel'])} | "
                         f"{_pct(r['action_flip_frac'], 1)} | {r['update_ms_bn']:.2f} | "
                         f"{r['update_ms_standard']:.2f} | "
                         f"{r['update_ms_bn'] / r['update_ms_standard']:.2f}x |")
    return "\n".join(lines) + "\n"


def plot_games(path: Path, summary: dict[str, Any], curves: dict[str, dict[str, AgentResults]],
               total_steps: int) -> None:
    """Top row: one learning-curve panel per game (mean over seeds, 95% bootstrap band).
    Bottom row: IQM of normalized final and AUC returns per agent (95% stratified-bootstrap
    intervals) and the probability of improvement per game and overall."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    games = summary["games"]
    fig = plt.figure(figsize=(5 * max(3, len(games)), 9), layout="constrained")
    grid = fig.add_gridspec(2, max(3, len(games)))
    for i, g in enumerate(games):
        ax = fig.add_subplot(grid[0, i])
        plot_curves(ax, curves[g], total_steps)
        ax.axhline(summary["random_score"][g], color="k", ls=":", lw=1, label="random policy")
        ax.set_title(f"{g}: training episode return", fontsize=10)
        ax.set_xlabel("env steps")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_steps_label))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    agents = summary["agents"]
    for j, (key, title) in enumerate((("final_iqm", "final return"), ("auc_iqm", "AUC"))):
        ax = fig.add_subplot(grid[1, j])
        for k, a in enumerate(agents):
            est = summary[key][a]
            lo, hi = est["iqm_ci"]
            ax.errorbar(est["iqm"], k, xerr=[[est["iqm"] - lo], [hi - est["iqm"]]], fmt="o",
                        color=COLORS.get(a, "k"), capsize=4)
        ax.set_yticks(range(len(agents)), agents)
        ax.set_ylim(-0.5, len(agents) - 0.5)
        ax.set_xlabel("normalized score: (x - random) / (best run - random)")
        ax.set_title(f"IQM across games of the {title}\n(95% stratified-bootstrap CI)",
                     fontsize=10)
        ax.grid(alpha=0.3)
    if "improvement_final" in summary:
        ax = fig.add_subplot(grid[1, 2])
        for key, off, label in (("improvement_final", -0.15, "final"),
                                ("improvement_auc", 0.15, "AUC")):
            imp = summary[key]
            rows = [*((g, imp["per_game"][g]) for g in games), ("all games", imp)]
            for k, (_, v) in enumerate(rows):
                lo, hi = v["ci"]
                ax.errorbar(v["p"], k + off, xerr=[[v["p"] - lo], [hi - v["p"]]], fmt="o",
                            color="tab:blue" if label == "final" else "tab:purple",
                            capsize=4, label=label if k == 0 else None)
            ax.set_yticks(range(len(rows)), [r[0] for r in rows])
        ax.axvline(0.5, color="k", ls=":", lw=1)
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"P({imp['x']} > {imp['y']})")
        ax.set_title("probability of improvement\n(95% stratified-bootstrap CI)", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _steps_label(v: float, _pos: int) -> str:
    """Axis label for a count of env steps: 20000 -> '20k', 1500000 -> '1.5M'."""
    return f"{v / 1e6:g}M" if abs(v) >= 1e6 else f"{v / 1e3:g}k" if abs(v) >= 1e3 else f"{v:g}"


def _iv(v: float, ci: Sequence[float], fmt: str = ".2f") -> str:
    return f"{v:{fmt}} [{ci[0]:{fmt}}, {ci[1]:{fmt}}]"


def games_markdown(summary: dict[str, Any]) -> str:
    """The cross-game tables in markdown: per-game means, aggregate IQMs, improvement,
    noise diagnostics."""
    games, agents = summary["games"], summary["agents"]
    lines = ["| game | random policy | best run (final) | "
             + " | ".join(f"{a} final mean" for a in agents) + " |",
             "|---|---|---|" + "---|" * len(agents)]
    for g in games:
        pg = summary["per_game"][g]
        means = [f"{pg[a]['final_mean']:.2f} (n={len(pg[a]['final_per_seed'])})" for a in agents]
        lines.append(f"| {g} | {summary['random_score'][g]:.2f} | "
                     f"{summary['best_final'][g]:.2f} | " + " | ".join(means) + " |")
    lines += ["", "| agent | runs | final return IQM, normalized [95% CI] | "
              "AUC IQM, normalized [95% CI] |", "|---|---|---|---|"]
    for a in agents:
        f, u = summary["final_iqm"][a], summary["auc_iqm"][a]
        lines.append(f"| {a} | {f['runs']} | {_iv(f['iqm'], f['iqm_ci'])} | "
                     f"{_iv(u['iqm'], u['iqm_ci'])} |")
    if "improvement_final" in summary:
        fi, au = summary["improvement_final"], summary["improvement_auc"]
        lines += ["", f"| game | P({fi['x']} > {fi['y']}), final [95% CI] | "
                  f"P, AUC [95% CI] | final mean {fi['x']} - {fi['y']} [95% CI] |",
                  "|---|---|---|---|"]
        for g in games:
            d = summary["difference_final"][g]
            lines.append(f"| {g} | {_iv(fi['per_game'][g]['p'], fi['per_game'][g]['ci'])} | "
                         f"{_iv(au['per_game'][g]['p'], au['per_game'][g]['ci'])} | "
                         f"{_iv(d['diff'], d['ci'])} |")
        lines.append(f"| all games | {_iv(fi['p'], fi['ci'])} | {_iv(au['p'], au['ci'])} | |")
    lines += ["", "| game | agent | Q noise (std / mean \\|Q\\|) | action flips | "
              "train-eval gap |", "|---|---|---|---|---|"]
    for g in games:
        for a in agents:
            n = summary["noise"][g][a]
            gap = "n/a" if n["train_eval_gap"] is None else f"{n['train_eval_gap']:.3g}"
            lines.append(f"| {g} | {a} | {_pct(n['q_std_rel'])} | "
                         f"{_pct(n['action_flip_frac'], 1)} | {gap} |")
    return "\n".join(lines) + "\n"
