"""Resuming runs: the checkpoint a finished run names, unreadable checkpoints, changed
settings on resume (replay ratio, total steps, replay size), finished runs, stop-return
windows, and the errors a resume gives (the same as a new run's)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from wnrl import checkpoint as ckpt
from wnrl.cli import train_main
from wnrl.config import ConfigError, from_dict, load_config
from wnrl.logger import RunLogger
from wnrl.schedules import linear_epsilon
from wnrl.signals import StopFlag
from wnrl.training import Trainer, build
from wnrl.training.checkpointer import check_replay_settings
from wnrl.training.runner import resume_run, start_run
from wnrl.training.trainer import finished_reason

CONFIGS = Path(__file__).parent.parent / "configs"
CARTPOLE = str(CONFIGS / "cartpole_dqn.yaml")


def _overrides(tmp: Path, name: str, **extra: object) -> list[str]:
    base = {"train.runs_dir": str(tmp), "train.run_name": name, "train.total_steps": 800,
            "train.learning_starts": 400, "train.checkpoint_period": 400,
            "train.keep_checkpoints": 10, "train.log_period": 100, "train.noise_period": 0,
            "train.eval_period": 0, "learner.batch_size": 16,
            "replay.save_in_checkpoint": True, "replay.capacity": 4000}
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def _files(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in run.rglob("*")
            if p.is_file() and p.name != "wnrl.lock"}


def _latest(run: Path) -> dict:
    return ckpt.load_latest_valid(run)[1]


# ---- the checkpoint a finished async run names -------------------------------------------

def test_async_final_checkpoint_holds_the_catch_up(tmp_path: Path, capsys) -> None:
    """total_steps a multiple of checkpoint_period: the periodic save at the last step came
    before the learner's end-of-run catch-up, and the closing save was skipped as 'already
    saved', so the checkpoint the log names lacked the caught-up updates."""
    cfg = load_config(CARTPOLE, _overrides(tmp_path, "a", **{
        "train.mode": "async", "train.total_steps": 1000, "train.checkpoint_period": 500,
        "train.updates_per_step": 0.5}))
    trainer = Trainer(cfg, tmp_path / "a", build(cfg))
    trainer.log = RunLogger(tmp_path / "a", cfg.train.total_steps, progress=False)
    update = trainer.parts.learner.update

    def slow_update(batch):  # the learner lags: the actor ends within its band, ahead
        time.sleep(0.002)
        return update(batch)

    trainer.parts.learner.update = slow_update  # type: ignore[method-assign]
    assert trainer.run(StopFlag()) == 0
    trainer.log.close()
    out = capsys.readouterr().out
    assert "catches up" in out  # the catch-up happened after the last periodic step
    done = trainer.parts.learner.num_updates
    assert f"done: 1000 env steps, {done} updates" in out
    state = _latest(tmp_path / "a")
    assert state["env_steps"] == 1000 and state["learner"]["num_updates"] == done


# ---- unreadable checkpoints ----------------------------------------------------------------

def test_unreadable_newest_checkpoint_is_reported_set_aside_and_evaluate_skips_it(
        tmp_path: Path, capsys) -> None:
    run = tmp_path / "r"
    assert start_run(CARTPOLE, _overrides(tmp_path, "r", **{"train.keep_checkpoints": 2}),
                     progress=False) == 0
    newest = run / "checkpoints" / ckpt.checkpoint_name(800)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    capsys.readouterr()
    # evaluate of the run directory scores the newest readable checkpoint, and says so
    assert __import__("wnrl.cli").cli.evaluate_main([str(run), "--episodes", "1"]) == 0
    err = capsys.readouterr().err
    assert f"skipped unreadable checkpoint {newest.name}" in err and len(err.splitlines()) == 1
    # a resume says it skipped the file, and pruning (checkpoints at 600 and 700, keep 2)
    # sets the unreadable one aside instead of deleting the readable 400
    assert resume_run(str(run), ["train.total_steps=700", "train.checkpoint_period=100"],
                      progress=False) == 0
    out = capsys.readouterr().out
    assert f"skipped unreadable checkpoint {newest.name}" in out
    assert "resumed" in out and ckpt.checkpoint_name(400) in out
    assert f"set aside unreadable checkpoint {newest}{ckpt.UNREADABLE_SUFFIX}" in out
    names = [p.name for p in ckpt.list_checkpoints(run / "checkpoints")]
    assert names == [ckpt.checkpoint_name(s) for s in (600, 700)]
    assert (run / "checkpoints" / (newest.name + ckpt.UNREADABLE_SUFFIX)).exists()


# ---- changed settings on resume ------------------------------------------------------------

@pytest.mark.parametrize("new_ratio, expected", [(2.0, 201 + 8), (0.25, 201 + 100)])
def test_changed_replay_ratio_counts_from_the_resume(tmp_path: Path, capsys,
                                                      new_ratio: float, expected: int) -> None:
    """800 env steps at 0.5 updates per step from 400: 201 updates. Raised to 2.0, the
    count restarted from the learning start (809 updates due at once, 1208 in the issue);
    lowered to 0.25, it stalled (201 updates due until step 1200)."""
    run = tmp_path / "r"
    assert start_run(CARTPOLE, _overrides(tmp_path, "r", **{"train.updates_per_step": 0.5}),
                     progress=False) == 0
    assert _latest(run)["learner"]["num_updates"] == 201
    total = 804 if new_ratio > 1 else 1200
    assert resume_run(str(run), [f"train.updates_per_step={new_ratio}",
                                 f"train.total_steps={total}"], progress=False) == 0
    assert _latest(run)["learner"]["num_updates"] == expected
    assert "train.updates_per_step changed from 0.5" in capsys.readouterr().out


def test_extended_total_steps_keeps_the_schedules(tmp_path: Path, capsys) -> None:
    """Epsilon and PER beta are fractions of total_steps: extending it reset exploration."""
    run = tmp_path / "r"
    ov = _overrides(tmp_path, "r", **{"actor.eps_start": 1.0, "actor.eps_end": 0.02,
                                      "actor.eps_fraction": 1.0, "replay.prioritized": True,
                                      "replay.priority_beta_start": 0.4})
    assert start_run(CARTPOLE, ov, progress=False) == 0
    assert resume_run(str(run), ["train.total_steps=1600"], progress=False) == 0
    from tests.test_train import _scalars

    eps = dict(_scalars(run, "train/epsilon"))
    assert eps[800] == pytest.approx(0.02) and eps[1200] == pytest.approx(0.02)  # not 0.51
    assert "keep their schedules over the first 800 env steps" in capsys.readouterr().out
    cfg = from_dict(_latest(run)["config"])
    assert cfg.train.total_steps == 1600 and cfg.train.schedule_steps == 800
    trainer = Trainer(cfg, tmp_path / "probe", build(cfg))
    assert trainer.beta(1200) == pytest.approx(1.0)  # not 0.4 + 0.6 * 1200 / 1600
    assert trainer.parts.actor.epsilon == pytest.approx(linear_epsilon(0, 800, 1.0, 0.02, 1.0))


def test_changed_replay_size_names_the_key(tmp_path: Path, capsys) -> None:
    run = tmp_path / "r"
    assert start_run(CARTPOLE, _overrides(tmp_path, "r"), progress=False) == 0
    before = _files(run)
    assert train_main(["--resume", str(run), "train.total_steps=1200",
                       "replay.capacity=2000"]) == 2
    err = capsys.readouterr().err.strip()
    assert "replay.capacity=4000" in err and "replay.capacity=2000" in err
    assert len(err.splitlines()) == 1
    assert _files(run) == before


def test_replay_settings_check_names_each_key() -> None:
    saved = {"env": {"num_envs": 4, "frame_stack": 4}, "replay": {"capacity": 4000},
             "distributed": {"enabled": True, "num_replay_shards": 2}}
    now = {"env": {"num_envs": 4, "frame_stack": 4},
           "replay": {"capacity": 4000, "n_step": 1, "prioritized": False},
           "learner": {"gamma": 0.99},
           "distributed": {"enabled": True, "num_actors": 2, "num_replay_shards": 1}}
    with pytest.raises(ckpt.CheckpointError, match="resume with distributed.num_replay_shards=2"):
        check_replay_settings(saved, now, "c.pt")
    saved["distributed"]["num_replay_shards"] = 1
    check_replay_settings(saved, now, "c.pt")  # keys the old checkpoint lacks are not checked
    # a single-machine run does not care about the (unused) Ape-X layout
    saved["distributed"] = {"enabled": False, "num_replay_shards": 2}
    check_replay_settings(saved, now | {"distributed": now["distributed"] | {"enabled": False}},
                          "c.pt")
    with pytest.raises(ckpt.CheckpointError, match="distributed.enabled=False"):
        check_replay_settings(saved, now, "c.pt")


def test_malformed_override_is_reported_as_for_a_new_run(tmp_path: Path, capsys) -> None:
    assert start_run(CARTPOLE, _overrides(tmp_path, "r"), progress=False) == 0
    assert train_main(["--config", CARTPOLE, "foo"]) == 2
    new = capsys.readouterr().err
    assert train_main(["--resume", str(tmp_path / "r"), "foo"]) == 2
    assert capsys.readouterr().err == new == "error: override 'foo' is not of the form key=value\n"


def test_exact_resume_needs_the_saved_replay(tmp_path: Path, capsys) -> None:
    """Without the replay a resume refills it, so it is not exact (801 vs 602 updates)."""
    with pytest.raises(ConfigError, match="replay.save_in_checkpoint=true"):
        load_config(CARTPOLE, ["train.exact_resume=true", "replay.save_in_checkpoint=false"])
    assert train_main(["--config", CARTPOLE, f"train.runs_dir={tmp_path}",
                       "train.exact_resume=true", "replay.save_in_checkpoint=false"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: train.exact_resume=True is invalid") and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


# ---- finished runs -------------------------------------------------------------------------

def test_resuming_a_finished_run_writes_nothing(tmp_path: Path, capsys) -> None:
    run = tmp_path / "r"
    assert start_run(CARTPOLE, _overrides(tmp_path, "r"), progress=False) == 0
    before = _files(run)
    capsys.readouterr()
    assert train_main(["--resume", str(run)]) == 0
    out = capsys.readouterr().out
    final = run / "checkpoints" / ckpt.checkpoint_name(800)
    assert out == (f"run {run} is finished: it reached train.total_steps=800 (at env step "
                   f"800); its final checkpoint is {final}\n")
    assert _files(run) == before


def test_a_run_stopped_on_stop_return_stays_finished(tmp_path: Path, capsys) -> None:
    run = tmp_path / "r"
    ov = _overrides(tmp_path, "r", **{"train.total_steps": 4000, "train.stop_return": 0,
                                      "train.stop_window": 3})
    assert start_run(CARTPOLE, ov, progress=False) == 0
    state = _latest(run)
    assert state["env_steps"] < 4000 and len(state["recent_returns"]) == 3
    before = _files(run)
    capsys.readouterr()
    assert train_main(["--resume", str(run)]) == 0
    assert "is finished: the mean return of its last 3 episodes reached" in capsys.readouterr().out
    assert _files(run) == before


def test_stop_return_window_survives_a_resume(tmp_path: Path) -> None:
    """A run cut before its window met stop_return goes on with the saved window: the next
    episode's return decides, not 'stop_window' fresh episodes."""
    run = tmp_path / "r"
    ov = _overrides(tmp_path, "r", **{"train.stop_return": 10_000, "train.stop_window": 5})
    assert start_run(CARTPOLE, ov, progress=False) == 0
    window = _latest(run)["recent_returns"]
    assert len(window) == 5
    # a target the saved window already meets: the run is finished without a step more
    assert finished_reason(load_config(CARTPOLE, ov + [
        f"train.stop_return={sum(window) / 5}", "train.total_steps=9000"]), _latest(run))
    # one it does not: the resumed trainer starts from the saved window
    cfg = load_config(CARTPOLE, ov + ["train.total_steps=9000"])
    trainer = Trainer(cfg, tmp_path / "probe", build(cfg))
    trainer.restore(_latest(run), "ckpt")
    assert list(trainer.recent_returns) == window


def test_a_catch_up_cut_by_a_signal_is_not_finished() -> None:
    cfg = load_config(CARTPOLE, ["train.total_steps=1000", "train.learning_starts=400"])
    state = {"env_steps": 1000, "owed_updates": 0, "recent_returns": []}
    assert finished_reason(cfg, state) == "it reached train.total_steps=1000 (at env step 1000)"
    assert finished_reason(cfg, state | {"owed_updates": 12}) is None
    assert finished_reason(cfg, state | {"env_steps": 996}) is None


# ---- exact resume from a stop signal ---------------------------------------------------------

def test_exact_resume_after_a_stop_signal_is_bit_identical(tmp_path: Path, capsys) -> None:
    """The stop's checkpoint (step 1000, between the periodic ones at 800 and 1600) used to
    cut the games where the uninterrupted run does not; it now saves their actions since
    the last cut, and the resume plays them again."""
    from tests.test_async_loop import StopAfter
    from tests.test_train import _assert_same_weights, _scalars
    from wnrl.rundir import create_run_dir

    ov = _overrides(tmp_path, "full", **{"train.total_steps": 1600, "train.exact_resume": True,
                                         "train.checkpoint_period": 800})
    assert start_run(CARTPOLE, ov, progress=False) == 0
    cfg = load_config(CARTPOLE, ov + ["train.run_name=part"])
    run_dir, lock = create_run_dir(cfg)
    trainer = Trainer(cfg, run_dir, build(cfg))
    trainer.log = RunLogger(run_dir, cfg.train.total_steps, progress=False)
    with lock:
        assert trainer.run(StopAfter(trainer, 1000)) == 130
    trainer.log.close()
    stopped = _latest(run_dir)
    assert stopped["env_steps"] == 1000 and stopped["open_games"]["actions"].shape == (50, 4)
    assert resume_run(str(run_dir), [], progress=False) == 0
    _assert_same_weights(_latest(tmp_path / "full"), _latest(run_dir))
    for tag in ("train/loss", "episode/return"):
        assert _scalars(tmp_path / "full", tag) == _scalars(run_dir, tag), tag
    assert "the games in progress at env step 1000 go on" in capsys.readouterr().out


@pytest.mark.parametrize("game", ["CartPole-v1", "minatar/breakout", "pong"])
def test_replayed_actions_bring_the_games_back(game: str) -> None:
    """What the closing checkpoint's replay relies on: a vector env reset with a seed and
    stepped with the same actions (sticky actions, no-op starts and autoresets included)
    reaches the same observation, episode returns and lengths."""
    import numpy as np

    from wnrl.actor import Actor
    from wnrl.config import ActorConfig, EnvConfig
    from wnrl.envs import make_env
    from wnrl.networks import make_q_network

    env = make_env(EnvConfig(id=game, num_envs=2, max_episode_frames=400), seed=3)
    net = make_q_network(env.obs_shape, env.num_actions, norm="none")
    actor = Actor(env, net, ActorConfig(fixed_epsilons=(1.0, 1.0)), total_steps=1,
                  clip_rewards=True, terminal_on_life_loss=True, seed=3)
    actor.reset_envs(11)
    actions = []
    for _ in range(150):
        actions.append(actor.step()[0].action)
    obs, ret, length = actor.obs.copy(), actor._ep_return.copy(), actor._ep_length.copy()
    steps, rng = actor.env_steps, actor._rng.bit_generator.state
    actor.step()  # elsewhere now
    actor.env_steps, actor._rng.bit_generator.state = steps, rng
    np.testing.assert_array_equal(actor.replay_games(11, np.stack(actions)), obs)
    np.testing.assert_array_equal(actor._ep_return, ret)
    np.testing.assert_array_equal(actor._ep_length, length)
    assert actor.env_steps == steps and actor._rng.bit_generator.state == rng
    env.close()
