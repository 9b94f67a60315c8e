"""Do a replay shard's `sample` calls queue behind chunks still being collected?

One replay shard (a Ray actor), two CartPole actor workers streaming chunks into it
(two chunks in flight each), and this process acting as the learner: it keeps
`--prefetch` sample(64) requests in flight, as `ShardedReplay` does, and sends each
batch's priorities back. It reports the learner's batches per second and the time
from asking for a batch to getting it, while the workers stream.

Routing `driver`: the driver submits `shard.add_chunk.remote(worker.collect.remote())`
(wnrl before this change); `worker`: each worker pushes its chunks itself
(`ActorWorker.push`). Runs against whichever wnrl is imported, so the old code can be
measured from a checkout of the older commit (PYTHONPATH=that checkout).

    python docs/results/apex_sampling/measure.py --routing driver --seconds 20
"""

from __future__ import annotations

import argparse
import collections
import inspect
import json
import os
import secrets
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
import ray  # noqa: E402

import wnrl  # noqa: E402
from wnrl.config import load_config  # noqa: E402
from wnrl.distributed.apex import _env_spec  # noqa: E402
from wnrl.distributed.shard import ReplayShard  # noqa: E402
from wnrl.distributed.workers import ActorWorker  # noqa: E402

CONFIG = Path(__file__).parents[3] / "configs" / "cartpole_apex.yaml"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--routing", choices=["driver", "worker"], required=True)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--chunk-steps", type=int, default=100)
    ap.add_argument("--prefetch", type=int, default=2)
    ap.add_argument("--json", type=str, default="")
    a = ap.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=200 * 2**20, configure_logging=False)
    cfg = load_config(str(CONFIG), ["distributed.num_actors=2", "replay.prioritized=true",
                                    f"distributed.chunk_steps={a.chunk_steps}"])
    spec = _env_spec(cfg)
    shard = ray.remote(ReplayShard).options(num_cpus=0).remote(
        cfg, spec.obs_shape, spec.obs_dtype, spec.num_envs, [0, 1], 2)
    pushes = "push" in dict(inspect.getmembers(ActorWorker))
    if a.routing == "worker" and not pushes:
        raise SystemExit("this wnrl has no worker-side push: use --routing driver")
    cls = ray.remote(ActorWorker).options(num_cpus=1)
    workers = [cls.remote(cfg, i, 0.4, shard) if pushes else cls.remote(cfg, i, 0.4)
               for i in range(2)]
    local = ActorWorker(cfg, 0, 0.4)
    weights = ray.put(local.actor.net.state_dict())

    def request(i: int) -> object:
        if a.routing == "worker":
            return workers[i].push.remote(a.chunk_steps, [weights], 0)
        return shard.add_chunk.remote(workers[i].collect.remote(a.chunk_steps, weights))

    for i in range(2):  # fill: the learner starts once the replay holds rows
        ray.get(request(i))
    in_flight = {i: collections.deque(request(i) for _ in range(2)) for i in range(2)}
    asked: collections.deque = collections.deque()
    waits, batches, chunks = [], 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < a.seconds:
        for i, q in in_flight.items():  # keep two chunks in flight per worker
            while q and not ray.wait([q[0]], timeout=0)[1]:
                ray.get(q.popleft())
                chunks += 1
            while len(q) < 2:
                q.append(request(i))
        while len(asked) < a.prefetch:
            asked.append((time.perf_counter(), shard.sample.remote(64)))
        t0, ref = asked.popleft()
        out = ray.get(ref)
        waits.append(time.perf_counter() - t0)
        batch = out.batch if hasattr(out, "prob") else out  # a Draw (new) or a Batch (old)
        shard.update_priorities.remote(batch.index, np.ones(len(batch.index), np.float32))
        batches += 1
    elapsed = time.perf_counter() - start
    ms = np.array(waits) * 1e3
    result = {"routing": a.routing, "wnrl": str(Path(wnrl.__file__).parent),
              "seconds": round(elapsed, 1), "batches_per_s": round(batches / elapsed, 1),
              "chunks_stored_per_s": round(chunks / elapsed, 2),
              "env_steps_per_chunk": a.chunk_steps * spec.num_envs,
              "batch_wait_ms": {k: round(float(np.percentile(ms, q)), 1) for k, q in
                                (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))}}
    print(json.dumps(result))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1) + "\n")
    ray.shutdown()


if __name__ == "__main__":
    main()
