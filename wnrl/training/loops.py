"""Training loops: who acts and who learns when (`train.mode` picks one).

A loop is `Loop` (`wnrl.training.loop_api`): `loop(trainer, stop) -> env step
reached`, run until `train.total_steps`, `train.stop_return` or a stop signal; it
owns its rate limiting and uses only what `LoopHost` lists of the trainer.

- `sync_loop` (`sync`): one vector env step by the actor, its rows into the
  replay, then the updates the replay ratio makes due; deterministic per seed.
- `async_loop` (`async`, `wnrl.training.async_loop`): actor and learner in two
  threads under a rate limiter.
- Ape-X (`distributed.enabled`) is `wnrl.distributed.apex.apex_loop`: Ray actor
  workers feed replay shards while the driver learns.
"""

from __future__ import annotations

from wnrl.signals import StopFlag
from wnrl.training.async_loop import async_loop
from wnrl.training.loop_api import Loop, LoopHost


def sync_loop(trainer: LoopHost, stop: StopFlag) -> int:
    """Alternate one actor step and the updates it makes due; returns the env step."""
    return sync_steps(trainer, trainer.cfg.train.total_steps, stop)


def sync_steps(trainer: LoopHost, until: int, stop: StopFlag | None = None) -> int:
    """The sync loop's body (act, store, learn, periodic work) until env step `until`, a
    stop request or the stop return; returns the env step (the benchmark times parts
    of a run with it)."""
    actor, replay = trainer.parts.actor, trainer.parts.replay
    step = actor.env_steps
    while step < until and (stop is None or stop.requested is None) \
            and not trainer.reached_stop_return():
        transition, episodes = trainer.act(step)
        replay.add(transition)
        step = actor.env_steps
        trainer.record_episodes(episodes, step)
        trainer.learn(step)
        trainer.periodic(step)
    return step


LOOPS: dict[str, Loop] = {"sync": sync_loop, "async": async_loop}  # train.mode -> loop
