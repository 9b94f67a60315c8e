"""Many runs at once: K seeds and learning rates trained in one process (a group).

    python scripts/train.py --config configs/minatar_wn_dqn.yaml --seeds 0-7
    python scripts/train.py --config configs/minatar_wn_dqn.yaml --seeds 0-2 learner.lr=[1e-4,3e-4]

Each member is a normal run (its own run directory, config.yaml, TensorBoard events,
checkpoints and lock; its own envs, replay, exploration, target network and optimizer),
numerically the solo run with its seed and rate; the group shares only the work:

    network.py   GroupedForward: K solo networks as one (grouped conv, batched matmul)
    learner.py   GroupLearner: one update for all members on stacked parameters
    actor.py     MemberActor, GroupActor: one batched forward over every member's envs
    member.py    MemberLearner (a member as a solo learner for its Trainer), MemberRng
    members.py   seeds x rates -> member configs; --seeds; group.json
    parts.py     build_group(member configs)
    trainer.py   GroupTrainer: the sync loop for K members, each with its solo Trainer
    runner.py    start / resume (a group, or else the solo runner)

Imports: `wnrl.group` sits beside `wnrl.training` (it builds on its parts, trainer and
runner); nothing outside it but the CLI imports it.
"""
