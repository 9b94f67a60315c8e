"""Ape-X on Ray (`wnrl.distributed`): shard semantics without Ray, then short CartPole runs
on a local Ray (2 CPUs, no dashboard, small object store, temporary directory, token
authentication with a per-session token) and on a two-node simulated cluster."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

# Token authentication with a fresh token for this test session, so that nothing is read
# from or written to ~/.ray. Ray reads these when it is first imported, hence here.
os.environ.setdefault("RAY_AUTH_MODE", "token")
if "RAY_AUTH_TOKEN" not in os.environ and "RAY_AUTH_TOKEN_PATH" not in os.environ:
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")  # Ray's own, in workers
ray = pytest.importorskip("ray")

from wnrl import checkpoint as ckpt  # noqa: E402
from wnrl.cli import train_main  # noqa: E402
from wnrl.config import ConfigError, load_config  # noqa: E402
from wnrl.distributed import cluster  # noqa: E402
from wnrl.distributed.apex import ApexTrainer, _env_spec, build_apex  # noqa: E402
from wnrl.distributed.pool import ActorPool, ShardedReplay  # noqa: E402
from wnrl.distributed.sampling import merge  # noqa: E402
from wnrl.distributed.shard import ReplayShard  # noqa: E402
from wnrl.distributed.workers import ActorWorker  # noqa: E402
from wnrl.evaluate import load_policy  # noqa: E402
from wnrl.logger import RunLogger  # noqa: E402
from wnrl.rundir import create_run_dir  # noqa: E402
from wnrl.schedules import apex_epsilons  # noqa: E402
from wnrl.signals import StopFlag  # noqa: E402

CONFIG = str(Path(__file__).parents[1] / "configs" / "cartpole_apex.yaml")
SMALL = ["train.learning_starts=400", "train.updates_per_step=0.25", "train.log_period=400",
         "train.checkpoint_period=100000", "distributed.chunk_steps=10",
         "distributed.call_timeout_s=90", "replay.capacity=8000", "learner.batch_size=32"]
OBJECT_STORE = 120 * 2**20


def _cfg(tmp: Path, *overrides: str):
    return load_config(CONFIG, [*SMALL, f"train.runs_dir={tmp}", *overrides])


@pytest.fixture(scope="module")
def ray_env():
    """A short temporary directory for Ray's sessions (socket paths have a length limit)."""
    temp = tempfile.mkdtemp(prefix="wnrl-ray-", dir="/tmp")
    yield temp
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def local_ray(ray_env):
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=OBJECT_STORE,
             _temp_dir=ray_env, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _trainer(cfg) -> ApexTrainer:
    """What `wnrl.training.runner.start_run` does, keeping the trainer for inspection."""
    parts, trainer_cls = build_apex(cfg)
    run_dir, lock = create_run_dir(cfg)
    trainer = trainer_cls(cfg, run_dir, parts)
    trainer.log = RunLogger(run_dir, cfg.train.total_steps, progress=False)
    trainer.run_lock = lock  # type: ignore[attr-defined]  # released by _run, as the runner does
    return trainer


def _run(trainer: ApexTrainer) -> int:
    try:
        return trainer.run(StopFlag())
    finally:
        trainer.log.close()
        trainer.run_lock.release()  # type: ignore[attr-defined]


# ---- replay shard semantics (no Ray) ---------------------------------------------------------

def test_shard_stores_every_worker_closes_restarted_streams_and_routes_ids(tmp_path):
    cfg = _cfg(tmp_path, "distributed.num_actors=2", "replay.prioritized=true")
    spec = _env_spec(cfg)
    shard = ReplayShard(cfg, spec.obs_shape, spec.obs_dtype, spec.num_envs, [0, 1], 2)
    w0, w1 = ActorWorker(cfg, 0, 0.4), ActorWorker(cfg, 1, 0.4**8)
    first = w0.collect(10)
    assert first.frames.shape == (10, 4, 4)
    # initial priorities for every valid row whose 1-step window ends inside the chunk
    assert (np.isfinite(first.priority[:-1]) == first.valid[:-1]).all()
    assert (np.isfinite(first.priority[-1]) == (first.valid[-1] & first.terminal[-1])).all()
    shard.add_chunk(first)
    shard.add_chunk(w1.collect(10))
    assert shard.stats()["rows_added"] == [40, 40]
    # a restarted worker 0 (new incarnation): the old streams end by truncation and
    # bootstrap from the last observation the dead incarnation saw
    shard.add_chunk(ActorWorker(cfg, 0, 0.4).collect(10))
    assert shard.stats()["restarts_seen"] == [1, 0]
    open_rows = np.flatnonzero(~(first.terminal[-1] | first.truncated[-1]) & first.valid[-1])
    if len(open_rows):
        b = shard.buffers[0].get(9 * 4 + open_rows)
        np.testing.assert_array_equal(b.next_obs, first.last_frame[open_rows])
        np.testing.assert_allclose(b.discount, cfg.learner.gamma)
    assert not np.isin(10 * 4 + np.arange(4), shard.buffers[0].sampleable_indices()).any()
    batch = merge([shard.sample(64)], beta=0.4)
    ids, k = np.divmod(batch.index, 2)
    assert set(k) == {0, 1}
    for j in (0, 1):
        np.testing.assert_array_equal(batch.obs[k == j], shard.buffers[j].get(ids[k == j]).obs)
    shard.update_priorities(batch.index, np.full(64, 7.0, np.float32))
    p = (7.0 + cfg.replay.priority_eps) ** cfg.replay.priority_alpha
    for j in (0, 1):
        row, stream = np.divmod(ids[k == j], 4)
        ring = shard.buffers[j].ring
        np.testing.assert_allclose(shard.buffers[j].priorities[stream, row % ring], p)


def test_resumed_workers_play_new_games(tmp_path):
    """Worker seeds come from the env step a run starts at (as the local path's resets do):
    a resumed Ape-X run replayed the first run's games and exploration draws."""
    cfg = _cfg(tmp_path, "distributed.num_actors=1")
    workers = [ActorWorker(cfg, 0, 0.4), ActorWorker(cfg, 0, 0.4, None, 0),
               ActorWorker(cfg, 0, 0.4, None, 800)]
    rngs = [w.actor._rng.bit_generator.state["state"] for w in workers]  # exploration draws
    first = [w.collect(1).frames[0] for w in workers]  # the games' first observations
    assert rngs[0] == rngs[1] and rngs[0] != rngs[2]  # a new run: as before
    np.testing.assert_array_equal(first[0], first[1])
    assert not np.array_equal(first[0], first[2])

    class Recorder:  # stands in for the Ray actor class: what each worker is started with
        calls: list[tuple] = []

        @classmethod
        def remote(cls, *args):
            cls.calls.append(args)
            return object()

    ActorPool(cfg, Recorder, [None], cfg.env.num_envs, start_step=800)
    assert [c[-1] for c in Recorder.calls] == [800]


# ---- Ray: local instance ---------------------------------------------------------------------

def test_two_workers_feed_the_learner_and_write_a_normal_run(local_ray, tmp_path):
    cfg = _cfg(tmp_path, "train.total_steps=2000", "distributed.num_actors=2",
               "train.run_name=apex")
    trainer = _trainer(cfg)
    assert [w.epsilon for w in trainer.pool.workers] == list(apex_epsilons(2))
    assert _run(trainer) == 0
    report = trainer.worker_report()
    stats = trainer.replay.stats()[0]
    assert all(r["env_steps"] > 0 for r in report)  # transitions from every worker...
    assert stats["worker_ids"] == [0, 1] and min(stats["rows_added"]) > 0  # ...in the replay
    steps = trainer.pool.env_steps
    assert steps >= 2000 and steps == sum(stats["rows_added"])  # the checkpoint waited
    want = (steps - 400) * 0.25  # the replay ratio, within the rate limiter's tolerance
    # The final checkpoint waits for the chunks still in flight (at most max_chunks_in_flight
    # per worker): their env steps count in `steps` but reached the learner after its last
    # update, so they may lack their updates.
    d = cfg.distributed
    drained = d.num_actors * d.max_chunks_in_flight * d.chunk_steps * cfg.env.num_envs
    low = (want - drained * 0.25) * (1 - 0.1) - 2
    assert low <= trainer.parts.learner.num_updates <= want * (1 + 0.1) + 2
    cfg_saved, net, state = load_policy(tmp_path / "apex")  # what scripts/evaluate.py reads
    assert cfg_saved.distributed.enabled and state["env_steps"] == steps
    assert state["learner"]["num_updates"] == trainer.parts.learner.num_updates
    # --resume through the CLI continues the same run directory on the same Ray
    code = train_main(["--resume", str(tmp_path / "apex"), "train.total_steps=2600"])
    assert code == 0
    latest = ckpt.load(tmp_path / "apex")
    assert latest["env_steps"] >= 2600 and latest["env_steps"] > steps
    assert latest["learner"]["num_updates"] > trainer.parts.learner.num_updates


def test_killed_worker_is_restarted_and_training_continues(local_ray, tmp_path):
    cfg = _cfg(tmp_path, "train.total_steps=2400", "distributed.num_actors=1",
               "replay.prioritized=true")
    trainer = _trainer(cfg)
    w = trainer.pool.workers[0]
    killed_at: list[int] = []

    def kill_when_learning() -> None:
        deadline = time.monotonic() + 120
        while trainer.parts.learner.num_updates < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        killed_at.append(w.env_steps)
        ray.kill(w.handle, no_restart=False)

    killer = threading.Thread(target=kill_when_learning, daemon=True)
    killer.start()
    assert _run(trainer) == 0
    killer.join(5)
    assert killed_at and killed_at[0] < 2400
    assert w.restarts == 1 and w.env_steps >= 2400 > killed_at[0]  # the only worker came back
    assert trainer.replay.stats()[0]["restarts_seen"] == [1]
    assert trainer.parts.learner.num_updates >= 0.9 * (trainer.pool.env_steps - 400) * 0.25 - 2


def test_the_learner_samples_while_a_worker_is_still_collecting(local_ray, tmp_path):
    """Shard calls never wait for a chunk still being collected (a driver-submitted
    `add_chunk(chunk_ref)` held every later call of the driver to that shard)."""
    cfg = _cfg(tmp_path, "distributed.num_actors=1", "replay.prioritized=true",
               "distributed.call_timeout_s=30")
    spec = _env_spec(cfg)
    shard = ray.remote(ReplayShard).options(num_cpus=0).remote(
        cfg, spec.obs_shape, spec.obs_dtype, spec.num_envs, [0], 1)
    local = ActorWorker(cfg, 0, 0.4)
    ray.get(shard.add_chunk.remote(local.collect(30)))
    gate = tmp_path / "gate"

    class GatedWorker(ActorWorker):
        def push(self, *args):
            while not gate.exists():  # the chunk is not collected before the gate opens
                time.sleep(0.02)
            return super().push(*args)

    pool = ActorPool(cfg, ray.remote(GatedWorker).options(num_cpus=1), [shard], spec.num_envs)
    try:
        pool.set_weights(local.actor.net.state_dict())
        pool.request(0)
        batch = ShardedReplay([shard], 30, 32).sample(32)  # DistributedError if it waited
        assert len(batch.index) == 32 and len(pool.poll(0.0)) == 0
        gate.touch()
        assert [r["steps"] for r in pool.drain()] == [10 * 4]
        assert ray.get(shard.stats.remote())["rows_added"] == [30 * 4 + 10 * 4]
    finally:
        pool.shutdown()


def test_a_checkpoint_counts_chunks_stored_but_not_yet_polled(local_ray, tmp_path):
    cfg = _cfg(tmp_path, "distributed.num_actors=1", "train.run_name=cut")
    trainer = _trainer(cfg)
    try:
        trainer.pool.refill(lambda steps: True)  # max_chunks_in_flight chunks requested
        shard = trainer.replay.shards[0]
        deadline = time.monotonic() + 60
        while sum(ray.get(shard.stats.remote())["rows_added"]) < 2 * 10 * 4:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert trainer.pool.env_steps == 0  # stored, not polled
        trainer.save_checkpoint(trainer.pool.env_steps)
        assert ckpt.load(tmp_path / "cut")["env_steps"] == 2 * 10 * 4
    finally:
        trainer.log.close()
        trainer.pool.shutdown()


def test_cluster_too_small_is_refused_in_one_line(local_ray, tmp_path):
    with pytest.raises(ConfigError, match=r"distributed.num_actors=3 needs 3 CPUs .* has 2"):
        cluster.check_resources(_cfg(tmp_path, "distributed.num_actors=3"))
    code = train_main(["--config", CONFIG, f"train.runs_dir={tmp_path}", "train.run_name=x",
                       "distributed.num_actors=5"])
    assert code == 2 and not (tmp_path / "x").exists()


# ---- Ray: two simulated nodes ----------------------------------------------------------------

def test_workers_are_placed_on_both_nodes_of_a_cluster(ray_env, tmp_path, monkeypatch):
    from ray.cluster_utils import Cluster

    # Ray writes the cluster's address under its default temp dir, which need not exist
    # on a fresh machine (/tmp/ray): keep everything in this module's own temp dir
    monkeypatch.setenv("RAY_TMPDIR", ray_env)
    os.makedirs(os.path.join(ray_env, "ray"), exist_ok=True)
    if ray.is_initialized():
        ray.shutdown()  # the module's local instance
    nodes = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "object_store_memory": OBJECT_STORE, "include_dashboard": False,
        "temp_dir": ray_env})
    try:
        nodes.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)
        ray.init(address=nodes.address, log_to_driver=False, configure_logging=False)
        nodes.wait_for_nodes()
        cfg = _cfg(tmp_path, "train.total_steps=1200", "distributed.num_actors=2",
                   f"distributed.address={nodes.address}")
        trainer = _trainer(cfg)
        assert _run(trainer) == 0
        used = {r["node_id"] for r in trainer.worker_report()}
        alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        assert len(used) == 2 and used <= alive
        assert trainer.parts.learner.num_updates > 0
    finally:
        ray.shutdown()
        nodes.shutdown()
