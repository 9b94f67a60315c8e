"""The training loop in-process: determinism, exact resume, NaN guard, replay ratio."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from wnrl import checkpoint as ckpt
from wnrl.config import load_config
from wnrl.replay import VALID, ReplayBuffer
from wnrl.signals import StopFlag
from wnrl.training import Trainer, build
from wnrl.training.loops import sync_loop
from wnrl.training.runner import resume_run, start_run

CONFIGS = Path(__file__).parent.parent / "configs"


def _overrides(tmp: Path, name: str, **extra: object) -> list[str]:
    base = {"train.runs_dir": str(tmp), "train.run_name": name, "train.total_steps": 1600,
            "train.learning_starts": 400, "train.checkpoint_period": 800,
            "train.keep_checkpoints": 10, "train.log_period": 200, "train.noise_period": 0,
            "learner.batch_size": 16, "learner.target_update_period": 50,
            "replay.save_in_checkpoint": True, "replay.capacity": 4000}
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def _scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    ea = EventAccumulator(str(run), size_guidance={"scalars": 0})
    ea.Reload()
    return [(e.step, e.value) for e in ea.Scalars(tag)] if tag in ea.Tags()["scalars"] else []


def _final_state(run: Path) -> dict:
    return ckpt.load_latest_valid(run)[1]


def _assert_same_weights(a: dict, b: dict) -> None:
    for k, v in a["learner"]["online"].items():
        assert torch.equal(v, b["learner"]["online"][k]), k


@pytest.mark.parametrize("agent", ["dqn", "wn_dqn"])
def test_same_seed_same_run(tmp_path: Path, agent: str) -> None:
    cfg = str(CONFIGS / f"cartpole_{agent}.yaml")
    for name in ("a", "b"):
        assert start_run(cfg, _overrides(tmp_path, name), progress=False) == 0
    _assert_same_weights(_final_state(tmp_path / "a"), _final_state(tmp_path / "b"))
    assert _scalars(tmp_path / "a", "train/loss") == _scalars(tmp_path / "b", "train/loss")
    assert _scalars(tmp_path / "a", "episode/return") == _scalars(tmp_path / "b", "episode/return")


def test_resume_with_replay_is_exact(tmp_path: Path) -> None:
    cfg = str(CONFIGS / "cartpole_wn_dqn.yaml")
    ov = _overrides(tmp_path, "full", **{"train.exact_resume": True})
    assert start_run(cfg, ov, progress=False) == 0
    # a copy of the run as it was at its first checkpoint (step 800), then resumed
    part = tmp_path / "part"
    shutil.copytree(tmp_path / "full", part)
    for p in ckpt.list_checkpoints(part / "checkpoints"):
        if int(p.stem.split("_")[1]) > 800:
            p.unlink()
    assert resume_run(str(part), [], progress=False) == 0
    _assert_same_weights(_final_state(tmp_path / "full"), _final_state(part))
    for tag in ("train/loss", "train/q_mean", "episode/return"):
        full, resumed = _scalars(tmp_path / "full", tag), _scalars(part, tag)
        assert full == resumed, tag  # same points, no duplicates after the purge
        steps = [s for s, _ in resumed]
        assert steps == sorted(steps)
    # the resumed run's first rates count from the checkpoint (updates too): both rates share
    # one time interval, so their quotient is the replay ratio (0.5), whatever the speed
    (s1, ups), = [(s, v) for s, v in _scalars(part, "perf/updates_per_s") if s > 800][:1]
    (s2, sps), = [(s, v) for s, v in _scalars(part, "perf/env_steps_per_s") if s > 800][:1]
    assert s1 == s2 == 1000 and ups / sps == pytest.approx(0.5, abs=0.03)


def _trainer(tmp: Path, name: str, **extra: object) -> Trainer:
    from wnrl.logger import RunLogger

    cfg = load_config(CONFIGS / "cartpole_dqn.yaml", _overrides(tmp, name, **extra))
    trainer = Trainer(cfg, tmp / name, build(cfg))
    trainer.log = RunLogger(tmp / name, cfg.train.total_steps, progress=False)
    return trainer


def test_trainer_fits_the_loop_contract(tmp_path: Path) -> None:
    """The loops see the trainer as `LoopHost`: every member it lists is there."""
    from wnrl.training.loop_api import LoopHost

    assert isinstance(_trainer(tmp_path, "contract"), LoopHost)


@pytest.mark.parametrize("exact", [False, True])
def test_checkpoints_cut_games_only_for_exact_resume(tmp_path: Path, exact: bool) -> None:
    """Checkpoints every 40 env steps (10 per env): games run longer than that unless
    `exact_resume` cuts them; and every env step is accounted for: logged games, one
    autoreset step after each game, and the games still in progress."""
    t = _trainer(tmp_path, "cuts", **{"train.checkpoint_period": 40, "train.exact_resume": exact,
                                      "train.total_steps": 2000, "actor.eps_start": 0.0,
                                      "actor.eps_end": 0.0})
    lengths: list[int] = []
    t.record_episodes = lambda eps, step: lengths.extend(e.length for e in eps)  # type: ignore
    assert sync_loop(t, StopFlag()) == 2000
    per_env_between_ckpts = 40 // t.parts.env.num_envs
    if exact:
        assert max(lengths) <= per_env_between_ckpts
    else:
        assert max(lengths) > 3 * per_env_between_ckpts
        actor = t.parts.actor
        in_progress = int(actor._ep_length.sum())
        pending_resets = int(np.asarray(t.parts.env._done).sum())  # games over, reset step next
        assert sum(lengths) + len(lengths) - pending_resets + in_progress == actor.env_steps
    t.log.close()


def test_resume_without_exact_starts_new_games_and_closes_streams(tmp_path: Path,
                                                                   capsys) -> None:
    cfg = str(CONFIGS / "cartpole_dqn.yaml")
    assert start_run(cfg, _overrides(tmp_path, "r", **{"train.total_steps": 800}),
                     progress=False) == 0
    state = _final_state(tmp_path / "r")
    assert state["open_obs"].shape == (4, 4)  # the obs the open episodes continue from
    assert resume_run(str(tmp_path / "r"), ["train.total_steps=1200"], progress=False) == 0
    assert "new games start here" in capsys.readouterr().out
    # in the resumed replay, the row after the checkpoint's (step 800 = row 200 of each
    # of the 4 streams) is the invalid row that closed every stream
    replay = ReplayBuffer(4000, (4,), np.float32, 4, frame_stack=1)
    replay.load_state_dict(_final_state(tmp_path / "r")["replay"])
    flags = replay._rings(replay._flags)
    assert (flags[:, 200] & VALID == 0).all()
    assert (flags[:, 199] & VALID != 0).any() and (flags[:, 201] & VALID != 0).all()


def test_resume_without_replay_refills_first(tmp_path: Path, capsys) -> None:
    cfg = str(CONFIGS / "cartpole_dqn.yaml")
    ov = _overrides(tmp_path, "r", **{"replay.save_in_checkpoint": False})
    assert start_run(cfg, ov + ["train.total_steps=800"], progress=False) == 0
    before = _final_state(tmp_path / "r")["learner"]["num_updates"]
    assert resume_run(str(tmp_path / "r"), ["train.total_steps=1000"], progress=False) == 0
    out = capsys.readouterr().out
    assert "refilling" in out
    after = _final_state(tmp_path / "r")
    assert after["env_steps"] >= 1000
    assert after["learner"]["num_updates"] == before  # 200 steps < learning_starts: no update


def test_replay_ratio_is_held(tmp_path: Path) -> None:
    """Sync mode does floor((steps - learning_starts) * ratio) + 1 updates: one at the
    learning start itself; async and distributed modes do one fewer (see test_async_loop)."""
    cfg = str(CONFIGS / "cartpole_dqn.yaml")
    ov = _overrides(tmp_path, "ratio", **{"train.updates_per_step": 0.25})
    assert start_run(cfg, ov, progress=False) == 0
    st = _final_state(tmp_path / "ratio")
    assert st["env_steps"] == 1600 and st["learner"]["num_updates"] == (1600 - 400) // 4 + 1


def test_nan_stops_without_checkpointing_it(tmp_path: Path, monkeypatch, capsys) -> None:
    from wnrl.learner import Learner

    cfg_path = str(CONFIGS / "cartpole_dqn.yaml")

    real_update = Learner.update

    def poisoned(self, batch):
        if self.num_updates == 60:  # env step ~640: after the checkpoint at 500
            with torch.no_grad():
                next(self.online.parameters()).fill_(float("nan"))
        return real_update(self, batch)

    monkeypatch.setattr(Learner, "update", poisoned)
    assert start_run(cfg_path, _overrides(tmp_path, "nan", **{"train.checkpoint_period": 500}),
                     progress=False) == 1
    err = capsys.readouterr().err
    assert "non-finite" in err and "env step" in err
    names = [p.name for p in ckpt.list_checkpoints(tmp_path / "nan" / "checkpoints")]
    assert names == [ckpt.checkpoint_name(500)]
    state = _final_state(tmp_path / "nan")
    assert all(torch.isfinite(v).all() for v in state["learner"]["online"].values())


@pytest.mark.parametrize("mode, ratio", [("sync", 0.25), ("async", 0.5)])
def test_divergence_never_reaches_a_checkpoint(tmp_path: Path, capsys, mode: str,
                                               ratio: float) -> None:
    """The issue's reproduction: lr=1e30 makes the weights non-finite in one step while
    that step's loss (computed before it) is finite, with a checkpoint every vector step."""
    cfg = str(CONFIGS / "cartpole_wn_dqn.yaml")
    ov = _overrides(tmp_path, "div", **{"train.mode": mode, "learner.lr": 1e30,
                                        "train.updates_per_step": ratio,
                                        "train.checkpoint_period": 4, "train.keep_checkpoints": 3})
    assert start_run(cfg, ov, progress=False) == 1
    saved = ckpt.list_checkpoints(tmp_path / "div" / "checkpoints")
    for p in saved:
        for k, v in ckpt.load(p)["learner"]["online"].items():
            assert torch.isfinite(v).all(), (p.name, k)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: non-finite"), err
    assert saved and f"latest checkpoint: {saved[-1]}" in err[0]  # the message is true


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_env_failure_is_one_line(tmp_path: Path, capsys, monkeypatch, mode: str) -> None:
    from wnrl.envs import VecEnv

    real_step, calls = VecEnv.step, [0]

    def failing(self, actions):
        calls[0] += 1
        if calls[0] == 150:
            raise RuntimeError("emulator died\nC++ backtrace follows")
        return real_step(self, actions)

    monkeypatch.setattr(VecEnv, "step", failing)
    ov = _overrides(tmp_path, "env", **{"train.mode": mode})
    assert start_run(str(CONFIGS / "cartpole_dqn.yaml"), ov, progress=False) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: the env failed after env step 596: RuntimeError: emulator died; "
                   "training stopped; no checkpoint was written"], err


def test_data_dependent_init_runs_before_learning(tmp_path: Path) -> None:
    cfg = load_config(CONFIGS / "cartpole_wn_dqn.yaml", _overrides(tmp_path, "ddi"))
    parts = build(cfg)
    trainer = Trainer(cfg, tmp_path, parts)
    from wnrl.logger import RunLogger

    trainer.log = RunLogger(tmp_path, cfg.train.total_steps, progress=False)
    while parts.actor.env_steps < cfg.train.learning_starts:
        parts.replay.add(parts.actor.step()[0])
    g_before = [m.g.clone() for m in parts.learner.online.modules() if hasattr(m, "g")]
    trainer.learn(parts.actor.env_steps)
    assert trainer.initialized
    g_after = [m.g for m in parts.learner.online.modules() if hasattr(m, "g")]
    assert any(not torch.equal(a, b) for a, b in zip(g_before, g_after))
    for k, v in parts.learner.target.state_dict().items():  # target follows the init
        if k.endswith(".g"):
            assert np.isfinite(v.numpy()).all()
    trainer.log.close()


@pytest.mark.parametrize("total, expected", [(1600, [800, 1600]), (1700, [800, 1600, 1700])])
def test_evaluations_once_per_step_and_one_at_the_end(tmp_path: Path, total: int,
                                                      expected: list[int]) -> None:
    """Periodic evaluations every eval_period, plus one at the end unless the last
    period ended exactly there (no second evaluation of the same weights)."""
    cfg = str(CONFIGS / "cartpole_wn_dqn.yaml")
    over = _overrides(tmp_path, "ev", **{"train.total_steps": total, "train.eval_period": 800,
                                         "eval.episodes": 2})
    assert start_run(cfg, over, progress=False) == 0
    assert [s for s, _ in _scalars(tmp_path / "ev", "eval/return_mean")] == expected


@pytest.mark.parametrize("period", [1, 3])
def test_one_actor_refresh_per_learn_call(tmp_path: Path, monkeypatch, period: int) -> None:
    """Several updates in one `learn` call refresh the actor once, with the weights of the
    last update that was due (a multiple of actor.weight_sync_period)."""
    trainer = _trainer(tmp_path, f"sync{period}", **{"train.updates_per_step": 2.0,
                                                     "actor.weight_sync_period": period,
                                                     "train.learning_starts": 64})
    learner, actor = trainer.parts.learner, trainer.parts.actor
    due_weights: dict[int, dict] = {}
    update = learner.update

    def recording_update(batch):
        m = update(batch)
        if learner.num_updates % period == 0:
            due_weights[learner.num_updates] = learner.weights(actor.device)
        return m

    monkeypatch.setattr(learner, "update", recording_update)
    refreshes: list[int] = []
    set_weights = actor.set_weights
    monkeypatch.setattr(actor, "set_weights",
                        lambda w: (refreshes.append(learner.num_updates), set_weights(w)))
    learn_calls = 0
    while actor.env_steps < 200:
        transition, _ = trainer.act(actor.env_steps)
        trainer.parts.replay.add(transition)
        before = learner.num_updates
        trainer.learn(actor.env_steps)
        if learner.num_updates == before:
            continue
        learn_calls += 1
        assert before == 0 or learner.num_updates - before >= 2  # several per call
        if learner.num_updates < period:
            continue  # the actor still holds the init's weights
        last_due = max(n for n in due_weights if n <= learner.num_updates)
        for k, v in due_weights[last_due].items():
            assert torch.equal(actor.net.state_dict()[k], v), (k, last_due)
    assert learn_calls > 0 and len(refreshes) <= learn_calls + 1  # +1: the init's refresh


@pytest.mark.parametrize("replay_device", ["host", "learner"])
def test_updates_in_runs_take_the_steps_of_one_at_a_time(tmp_path: Path, monkeypatch,
                                                         replay_device: str) -> None:
    """The sync loop's runs of updates (batches drawn first, then `Learner.update_many`)
    train exactly as one update at a time: 4 envs at 1.5 updates per env step (6 per
    vector step), the actor's weights refreshed every 4 updates (inside a run) and the
    target synced every 5; the same weights, losses and games."""
    import wnrl.training.trainer as trainer_module

    cfg = str(CONFIGS / "cartpole_wn_dqn.yaml")  # folded weights: the actor has a copy
    extra = {"train.total_steps": 800, "train.updates_per_step": 1.5,
             "actor.weight_sync_period": 4, "learner.target_update_period": 5,
             "replay.device": replay_device,  # a large rate and little exploration: the
             "learner.lr": 0.01, "actor.eps_start": 0.05}  # actor's weights show in its games
    calls: list[int] = []
    Trainer = trainer_module.Trainer
    update_run, learn, sync_weights = Trainer.update_run, Trainer.learn, Trainer.sync_weights
    synced: list[int] = []

    def counted(self, step: int, beta: float, count: int) -> None:
        calls.append(count)
        update_run(self, step, beta, count)

    def checked(self, step: int) -> None:
        """One refresh of the actor per call, after the last update that completes 4."""
        before, initialized = self.parts.learner.num_updates, self.initialized
        synced.clear()
        learn(self, step)
        after = self.parts.learner.num_updates
        last = after - after % 4
        if initialized:
            assert synced == ([last] if last > before else []), (before, after, synced)

    def recorded(self) -> None:
        synced.append(self.parts.learner.num_updates)
        sync_weights(self)

    monkeypatch.setattr(Trainer, "update_run", counted)
    monkeypatch.setattr(Trainer, "learn", checked)
    monkeypatch.setattr(Trainer, "sync_weights", recorded)
    assert start_run(cfg, _overrides(tmp_path, "runs", **extra), progress=False) == 0
    assert max(calls) >= 4 and len(calls) < sum(calls) / 2  # mostly runs of several
    monkeypatch.setattr(trainer_module, "MAX_UPDATES_PER_RUN", 1)
    calls.clear()
    assert start_run(cfg, _overrides(tmp_path, "single", **extra), progress=False) == 0
    assert set(calls) == {1}
    _assert_same_weights(_final_state(tmp_path / "runs"), _final_state(tmp_path / "single"))
    for tag in ("train/loss", "episode/return"):
        assert _scalars(tmp_path / "runs", tag) == _scalars(tmp_path / "single", tag), tag
