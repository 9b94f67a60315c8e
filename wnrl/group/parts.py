"""Building a group: every member's solo parts, one group learner, one group actor.

    group = build_group(member_cfgs)       # member_cfgs from wnrl.group.members

Member k is built as `wnrl.training.parts.build` builds a solo run (the global
generators seeded with its seed, then its env, network, replay and actor, with the solo
builder's own helpers), so its network starts from the same weights and its env, replay
and exploration draw the same numbers. Its torch generator state after building is kept
(`MemberRng`) for its later draws. Then the members' networks are stacked into one
`GroupLearner`, and one `GroupActor` acts for all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wnrl.agents import get_agent
from wnrl.config import Config, ConfigError
from wnrl.envs import make_env
from wnrl.group.actor import GroupActor, MemberActor
from wnrl.group.learner import GroupLearner
from wnrl.group.member import MemberLearner, MemberRng
from wnrl.group.network import GroupedForward, folded_template
from wnrl.networks import QNetwork
from wnrl.replay import ReplayBuffer
from wnrl.training.checkpointer import LocalStreams
from wnrl.training.parts import Parts, network_for, seed_everything

# what may differ between the members of a group
MEMBER_KEYS = ("seed", "lr", "run_name")


@dataclass
class GroupParts:
    """The members' solo parts (their learners are `MemberLearner` views of `learner`),
    the group learner and actor, and each member's torch generator."""

    members: list[Parts]
    learner: GroupLearner
    actor: GroupActor
    rngs: list[MemberRng]


def _shared(cfg: Config) -> Config:
    from dataclasses import replace

    return replace(cfg, seed=0, learner=replace(cfg.learner, lr=1.0),
                   train=replace(cfg.train, run_name=""))


def check_members_alike(cfgs: list[Config]) -> None:
    """Refuse (ConfigError) members that differ in anything but seed, rate and run name."""
    first = _shared(cfgs[0])
    for c in cfgs[1:]:
        if _shared(c) != first:
            raise ConfigError(f"group member {c.train.run_name} differs from "
                              f"{cfgs[0].train.run_name} in more than "
                              f"{', '.join(MEMBER_KEYS)}: a group shares every other setting")


def build_group(cfgs: list[Config]) -> GroupParts:
    """Make every member's env, network, replay and actor, then the group learner/actor."""
    check_members_alike(cfgs)
    cfg0 = cfgs[0]
    agent = get_agent(cfg0.agent)
    nets: list[QNetwork] = []
    built = []
    rngs = []
    for cfg in cfgs:
        seed_everything(cfg.seed)
        env = make_env(cfg.env, seed=cfg.seed, training=True)
        net = network_for(cfg, env.obs_shape, env.num_actions)
        assert isinstance(net, QNetwork)
        replay = ReplayBuffer.from_config(cfg.replay, env.obs_shape, env.obs_dtype,
                                          env.num_envs, gamma=cfg.learner.gamma, seed=cfg.seed)
        nets.append(net)
        built.append((cfg, env, replay))
        rngs.append(MemberRng(torch.get_rng_state()))
    learner = GroupLearner(nets, cfg0.learner, [c.learner.lr for c in cfgs],
                           device=cfg0.learner.device)
    device = learner.device if cfg0.actor.device == "auto" else torch.device(cfg0.actor.device)
    members = []
    actors = []
    for k, ((cfg, env, replay), net) in enumerate(zip(built, nets)):
        actor = MemberActor(env, net, cfg.actor, total_steps=cfg.train.total_steps,
                            clip_rewards=cfg.env.clip_rewards,
                            terminal_on_life_loss=cfg.env.terminal_on_life_loss, seed=cfg.seed,
                            batch_stats=cfg.network.actor_batch_stats, device="cpu")
        actors.append(actor)
        members.append(Parts(agent, env, replay, MemberLearner(learner, k),  # type: ignore[arg-type]
                             actor, LocalStreams(cfg, actor, replay),
                             "replay in host memory (a group's members keep host replays)"))
    group_actor = GroupActor(actors, GroupedForward(folded_template(learner.template),
                                                    learner.k), device,
                             batch_stats=cfg0.network.actor_batch_stats)
    group_actor.set_weights(learner.folded(device))
    return GroupParts(members, learner, group_actor, rngs)
