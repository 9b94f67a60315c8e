"""The command line as a user meets it: a tiny Pong run end to end, bad input, signals."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from wnrl import checkpoint as ckpt

ROOT = Path(__file__).parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=timeout)


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), *args], cwd=ROOT,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _cartpole(tmp: Path, name: str, *extra: str) -> list[str]:
    return ["--config", str(ROOT / "configs" / "cartpole_dqn.yaml"), f"train.runs_dir={tmp}",
            f"train.run_name={name}", "train.noise_period=0", *extra]


def _one_line_error(res: subprocess.CompletedProcess, *fragments: str) -> None:
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def test_pong_end_to_end_then_evaluate(tmp_path: Path) -> None:
    res = _run("train.py", "--config", str(ROOT / "configs" / "pong_wn_dqn.yaml"),
               f"train.runs_dir={tmp_path}", "train.run_name=pong", "env.num_envs=2",
               "env.max_episode_frames=2000",
               "train.total_steps=2400", "train.learning_starts=1600", "replay.capacity=3000",
               "learner.batch_size=8", "train.checkpoint_period=1200", "train.eval_period=0",
               "train.noise_period=2000", "train.log_period=400",
               "eval.max_episode_frames=3000",
               # eager: the compiled update is tested in test_learner.py; a cold compile in
               # this subprocess would add ~25 s on 2 cores
               "learner.compile=false")
    assert res.returncode == 0, res.stderr[-2000:]
    run = tmp_path / "pong"
    assert (run / "config.yaml").is_file()
    names = [p.name for p in ckpt.list_checkpoints(run / "checkpoints")]
    assert names[-1] == ckpt.checkpoint_name(2400)
    ea = EventAccumulator(str(run))
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    for tag in ("episode/return", "episode/length", "train/epsilon", "train/loss", "train/q_mean",
                "train/grad_norm", "perf/env_steps_per_s", "perf/updates_per_s"):
        assert tag in tags, (tag, sorted(tags))
    assert any(t.startswith("noise/") for t in tags)
    out, gif = tmp_path / "scores.json", tmp_path / "pong.gif"
    res = _run("evaluate.py", str(run / "checkpoints" / names[-1]), "--episodes", "1",
               "--json", str(out), "--video", str(gif), "--video-max-frames", "30")
    assert res.returncode == 0, res.stderr[-2000:]
    scores = json.loads(out.read_text())
    assert scores["episodes"] == 1 and len(scores["returns"]) == 1
    assert -21 <= scores["mean"] <= 21 and "iqm" in scores and "human_normalized" in scores
    assert "mean" in res.stdout and f"video: {gif}" in res.stdout
    assert scores["seeds"]["seed"] == 0 and scores["seeds"]["env_seeds"][0] >= 2**30
    assert scores["video"]["frames"] == 30 and scores["video"]["width"] == 160
    assert gif.stat().st_size == scores["video"]["bytes"]
    _one_line_error(_run("evaluate.py", str(run), "--video", str(tmp_path / "v.avi")),
                    "--video", ".mp4 or .gif")


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["learner.lrr=1"], ["learner.lrr", "did you mean 'learner.lr'"]),
        (["learner.lr=fast"], ["learner.lr"]),
        (["learner.lr=-0.1"], ["learner.lr", "> 0"]),
        (["env.id=pongg"], ["pongg", "pong"]),
        (["actor.eps_end=2"], ["actor.eps_end"]),
        (["train.learning_starts=10000000"], ["train.learning_starts"]),
        (["env.num_envs=100000"], ["env.num_envs"]),
        (["replay.capacity=1000000000000", "env.id=pong"], ["bytes"]),
        (["learner.compile=maybe"], ["learner.compile", "auto, true, false"]),
        (["learner.precision=fp16"], ["learner.precision", "auto, bf16, fp32"]),
        (["learner.cuda_graph=always"], ["learner.cuda_graph", "auto, true, false"]),
        (["actor.device=gpu"], ["actor.device", "cpu, cuda, auto"]),
        (["actor.cuda_graph=always"], ["actor.cuda_graph", "auto, true, false"]),
        *([(["learner.device=cuda"], ["learner.device=cuda", "no CUDA device"]),
           (["actor.device=cuda"], ["actor.device=cuda", "no CUDA device"]),
           (["learner.cuda_graph=true"], ["learner.cuda_graph=true", "CUDA"]),
           (["actor.cuda_graph=true"], ["actor.cuda_graph=true", "CUDA", "actor"])]
          if not torch.cuda.is_available() else []),
    ],
)
def test_bad_train_input_is_one_line_exit_2(tmp_path: Path, args: list[str],
                                            fragments: list[str]) -> None:
    _one_line_error(_run("train.py", *_cartpole(tmp_path, "bad", *args)), *fragments)
    assert not (tmp_path / "bad").exists()


def test_missing_config_and_existing_run_dir(tmp_path: Path) -> None:
    _one_line_error(_run("train.py", "--config", str(tmp_path / "none.yaml")), "not found")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    _one_line_error(_run("train.py", *_cartpole(tmp_path, "taken")), "already exists", "--resume")
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


def test_force_reuses_a_run_dir_without_deleting_checkpoints(tmp_path: Path) -> None:
    args = _cartpole(tmp_path, "f", "train.total_steps=400", "train.learning_starts=200")
    assert _run("train.py", *args).returncode == 0
    old = {p.name: p.read_bytes() for p in (tmp_path / "f" / "checkpoints").iterdir()}
    assert _run("train.py", *args, "--force", "seed=1").returncode == 0
    (aside,) = (tmp_path / "f").glob("previous-*")
    assert {p.name: p.read_bytes() for p in (aside / "checkpoints").iterdir()} == old
    assert ckpt.list_checkpoints(tmp_path / "f" / "checkpoints")


def test_bad_checkpoints_for_evaluate(tmp_path: Path) -> None:
    _one_line_error(_run("evaluate.py", str(tmp_path / "nope.pt")), "not found")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(1000))
    _one_line_error(_run("evaluate.py", str(garbage)), str(garbage))
    _one_line_error(_run("evaluate.py", str(garbage), "--episodes", "0"), "--episodes")
    _one_line_error(_run("evaluate.py", str(garbage), "--seed", "-1"), "--seed")
    _one_line_error(_run("evaluate.py", str(garbage), "--video-max-frames", "0"),
                    "--video-max-frames")


def test_incompatible_resume_is_refused_and_run_untouched(tmp_path: Path) -> None:
    assert _run("train.py", *_cartpole(tmp_path, "cp", "train.total_steps=600",
                                       "train.learning_starts=200")).returncode == 0
    run = tmp_path / "cp"
    before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    more = "train.total_steps=1200"  # the run is finished at 600: a resume to 600 does nothing
    _one_line_error(_run("train.py", "--resume", str(run), more, "env.id=Acrobot-v1"),
                    "incompatible")
    _one_line_error(_run("train.py", "--resume", str(run), more, "agent=wn_dqn"), "incompatible")
    _one_line_error(_run("train.py", "--resume", str(tmp_path / "nowhere")), "not found")
    _one_line_error(_run("evaluate.py", str(run), "--video", str(tmp_path / "v.mp4")), "--video")
    after = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert before == after


def _wait_for_checkpoint(run: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while not ckpt.list_checkpoints(run / "checkpoints"):
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout
        time.sleep(0.2)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_checkpoints_and_exits(tmp_path: Path, sig: int, code: int) -> None:
    proc = _start(*_cartpole(tmp_path, "s", "train.total_steps=1000000",
                             "train.checkpoint_period=500", "train.learning_starts=200"))
    run = tmp_path / "s"
    _wait_for_checkpoint(run, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert f"--resume {run}" in out + err
    path, state = ckpt.load_latest_valid(run)
    assert state["env_steps"] > 0
    res = _run("train.py", "--resume", str(run), f"train.total_steps={state['env_steps'] + 300}")
    assert res.returncode == 0, res.stderr[-2000:]


def test_a_live_run_refuses_a_second_writer(tmp_path: Path) -> None:
    """A second --resume, and a --force, of a run that is training are refused in one line
    naming its PID; the first run goes on untouched and a --resume after it works."""
    args = _cartpole(tmp_path, "live", "train.total_steps=1000000",
                     "train.checkpoint_period=500", "train.learning_starts=200")
    proc = _start(*args)
    run = tmp_path / "live"
    _wait_for_checkpoint(run, proc)
    config = (run / "config.yaml").read_bytes()
    _one_line_error(_run("train.py", "--resume", str(run)), "in use", f"process {proc.pid}")
    _one_line_error(_run("train.py", *args, "--force"), "in use", f"process {proc.pid}")
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "error" not in out + err
    assert (run / "config.yaml").read_bytes() == config
    assert len(list(run.glob("events.out.tfevents.*"))) == 1 and not list(run.glob("previous-*"))
    step = ckpt.load_latest_valid(run)[1]["env_steps"]
    res = _run("train.py", "--resume", str(run), f"train.total_steps={step + 100}")
    assert res.returncode == 0, res.stderr[-2000:]


def test_sigkill_at_random_moments_never_loses_the_run(tmp_path: Path) -> None:
    """Kill -9 repeatedly (checkpoints with the replay are written every 100 steps, so many
    kills land mid-write); each time the latest checkpoint loads and --resume goes on at
    once: the run directory's lock died with the killed process."""
    rng = random.Random(1234)
    run = tmp_path / "k"
    args = _cartpole(tmp_path, "k", "train.total_steps=3000", "train.checkpoint_period=100",
                     "train.learning_starts=200", "replay.save_in_checkpoint=true",
                     "replay.capacity=50000")
    proc = _start(*args)
    last, killed = -1, []
    for _ in range(4):
        _wait_for_checkpoint(run, proc)
        time.sleep(rng.uniform(0.0, 1.5))
        proc.kill()
        proc.wait()
        killed.append(str(proc.pid))
        assert (run / "wnrl.lock").read_text().strip() in killed  # a stale PID, no lock
        path, state = ckpt.load_latest_valid(run)  # must always succeed
        assert state["env_steps"] >= last
        last = state["env_steps"]
        for p in ckpt.list_checkpoints(run / "checkpoints"):
            ckpt.load(p)  # no partial file ever carries a checkpoint name
        proc = _start("--resume", str(run))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert ckpt.load_latest_valid(run)[1]["env_steps"] >= 3000
