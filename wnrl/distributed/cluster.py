"""Connecting to Ray and checking that the cluster can hold the run.

`connect(cfg)` joins the cluster at `distributed.address` ("auto" or host:port,
started with `ray start --head` / `ray start --address=...`), or starts a local
Ray instance sized to this machine when the address is empty; if Ray is already
initialized in this process (tests, notebooks) it uses that. `check_resources`
refuses, with one line, a run the cluster cannot place: one CPU per actor worker,
`learner_gpus` GPUs for the learner (which runs in the driver process, so the
train command must run on a GPU node).
"""

from __future__ import annotations

import os
import socket

import ray
import torch

from wnrl.config import Config, ConfigError

# Ray's GCS keeps an event record of every task (each chunk, batch and priority call is
# one) up to 100k tasks by default: the soak test measured ~160 MiB of GCS growth per 100k
# env steps on CartPole (docs/soak.md). Ten thousand keep `ray list tasks` useful.
LOCAL_SYSTEM_CONFIG = {"task_events_max_num_task_in_gcs": 10_000}


def connect(cfg: Config) -> bool:
    """Make sure Ray is up; returns True if this call started it (the caller shuts it down)."""
    if ray.is_initialized():
        return False
    address = cfg.distributed.address or None
    try:
        if address is None:
            ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False,
                     log_to_driver=True, configure_logging=False,
                     _system_config=LOCAL_SYSTEM_CONFIG)
        else:
            _probe(address)
            ray.init(address=address, log_to_driver=True, configure_logging=False)
    except Exception as exc:  # Ray raises several classes (connection, auth, value)
        raise ConfigError(f"distributed.address={cfg.distributed.address!r}: cannot connect to "
                          f"a Ray cluster ({_first_line(exc)}); start one with `ray start "
                          "--head`, or leave the address empty to start Ray on this machine") \
            from None
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail fast if nothing listens at the cluster's address (ray.init would retry for
    minutes). "auto" is resolved as Ray does: RAY_ADDRESS, then the last `ray start`."""
    from ray._private.services import canonicalize_bootstrap_address

    resolved = canonicalize_bootstrap_address(address)
    if resolved is None:
        raise ConnectionError("no running Ray cluster found")
    host, port = resolved.rsplit(":", 1)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {resolved}: {exc.strerror or exc}") from None


def check_resources(cfg: Config) -> None:
    """Refuse a run the cluster cannot place (ConfigError, one line)."""
    d = cfg.distributed
    have = ray.cluster_resources()
    cpus, gpus = have.get("CPU", 0.0), have.get("GPU", 0.0)
    where = d.address or "this machine"
    if cpus < d.num_actors:
        raise ConfigError(f"distributed.num_actors={d.num_actors} needs {d.num_actors} CPUs (one "
                          f"per actor worker) but the Ray cluster on {where} has {cpus:g}: lower "
                          "it or add nodes with `ray start --address=...`")
    if d.learner_gpus > 0:
        if gpus < d.learner_gpus:
            raise ConfigError(f"distributed.learner_gpus={d.learner_gpus:g} but the Ray cluster "
                              f"on {where} has {gpus:g} GPUs: set it to 0 or add a GPU node")
        if not torch.cuda.is_available():
            raise ConfigError(f"distributed.learner_gpus={d.learner_gpus:g}: the learner runs in "
                              "the train command's process, which sees no CUDA device here; run "
                              "the command on the GPU node")
    if cfg.learner.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("learner.device='cuda' but the train command's machine has no CUDA "
                          "device: use learner.device=auto or run it on the GPU node")


def shutdown(owned: bool) -> None:
    """Disconnect from Ray; stop it if `connect` started it."""
    if owned and ray.is_initialized():
        ray.shutdown()
