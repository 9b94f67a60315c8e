"""The parts of a run and the one place they are built from a config.

    parts = build(cfg)      # env, replay, learner, actor (and its episode streams)

`network_for` is the Q-network a config describes; the single-machine builder,
Ape-X's driver and workers, evaluation and the noise study all build theirs
with it. `wnrl.distributed.apex.build_apex` builds `ApexParts` (Ray workers and
replay shards in place of the actor and replay) from the same pieces.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from wnrl.accel import require_device
from wnrl.actor import Actor
from wnrl.agents import get_agent
from wnrl.config import Config, ConfigError
from wnrl.envs import VecEnv, make_env
from wnrl.learner import Learner
from wnrl.losses import make_loss
from wnrl.networks import make_q_network
from wnrl.recipe import AgentRecipe
from wnrl.replay.buffer import ReplayBuffer
from wnrl.replay.device import DeviceReplay
from wnrl.replay.placement import make_replay
from wnrl.training.streams import LocalStreams


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's global and torch's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def network_for(cfg: Config, obs_shape: Sequence[int], num_actions: int) -> nn.Module:
    """The Q-network of `cfg`'s agent (its norm) with `cfg.network`'s head and layout."""
    return make_q_network(obs_shape, num_actions, norm=get_agent(cfg.agent).norm,
                          dueling=cfg.network.dueling, hidden_sizes=cfg.network.hidden_sizes,
                          channels_last=cfg.network.channels_last)


@dataclass
class Parts:
    """A single-machine run: the vector env, replay, learner, actor and what a checkpoint
    does with the actor's games in progress; `replay_note` says where the replay lives."""

    agent: AgentRecipe
    env: VecEnv
    replay: ReplayBuffer | DeviceReplay
    learner: Learner
    actor: Actor
    streams: LocalStreams
    replay_note: str = "replay in host memory"


def build(cfg: Config) -> Parts:
    """Make the env, Q-network, replay, learner and actor a config describes."""
    seed_everything(cfg.seed)
    agent = get_agent(cfg.agent)
    env = make_env(cfg.env, seed=cfg.seed, training=True)
    net = network_for(cfg, env.obs_shape, env.num_actions)
    learner = Learner(net, cfg.learner, make_loss(cfg.learner), device=cfg.learner.device)
    replay, note = make_replay(cfg.replay, env.obs_shape, env.obs_dtype, env.num_envs,
                               gamma=cfg.learner.gamma, seed=cfg.seed,
                               learner_device=learner.device)
    actor = Actor(env, net, cfg.actor, total_steps=cfg.train.schedule_horizon,
                  clip_rewards=cfg.env.clip_rewards,
                  terminal_on_life_loss=cfg.env.terminal_on_life_loss, seed=cfg.seed,
                  batch_stats=cfg.network.actor_batch_stats,
                  device=learner.device if cfg.actor.device == "auto" else cfg.actor.device)
    actor.set_weights(learner.weights(actor.device))
    return Parts(agent, env, replay, learner, actor, LocalStreams(cfg, actor, replay), note)


def validate_against_machine(cfg: Config) -> None:
    """Refuse (ConfigError) a CUDA device where there is none, or more envs than this
    machine's cores can run."""
    require_device("learner.device", cfg.learner.device)
    require_device("actor.device", cfg.actor.device)
    cores = os.cpu_count() or 1
    limit = max(64, 32 * cores)
    if cfg.env.num_envs > limit:
        raise ConfigError(f"env.num_envs={cfg.env.num_envs} is more envs than this machine can "
                          f"run ({cores} cores): must be <= {limit}")
