"""Training: the parts of a run, the trainer, its loops, checkpoints and the runner.

    parts.py         Parts, build(cfg), network_for(cfg, ...): the one builder
    trainer.py       Trainer: acting, learning, periodic work, checkpoint and finish steps
    loop_api.py      LoopHost (what a loop may use of the trainer) and Loop protocols
    loops.py         sync_loop; LOOPS (train.mode -> loop)
    async_loop.py    AsyncLoop: actor and learner threads under a rate limiter
    schedule.py      Schedule: periodic work by env step (log, eval, noise, checkpoint)
    checkpointer.py  Checkpointer: payload, compatibility, pruning
    streams.py       EpisodeStreams: what a checkpoint does with the games in progress
    runner.py        start_run / resume_run: config, run directory, lock, logger, signals

Ape-X (`wnrl.distributed.apex`) builds its own parts and runs the same Trainer with
its own loop. See docs/ARCHITECTURE.md.
"""

from wnrl.training.loops import LOOPS
from wnrl.training.parts import Parts, build, network_for
from wnrl.training.trainer import Trainer

__all__ = ["LOOPS", "Parts", "Trainer", "build", "network_for"]
