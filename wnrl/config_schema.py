"""The config schema: one frozen dataclass per component, each validating its ranges.

Each dataclass validates its ranges in `__post_init__`; every problem is raised as
`ConfigError` with a one-line message naming the key. Loading and merging YAML
files and overrides is `wnrl.config` (import the dataclasses from there too).

Units are stated per field: *env steps* count single-env transitions (a vector
step of N envs is N env steps), *updates* count learner minibatch updates,
*frames* are emulator frames (4 per env step with frame skip 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wnrl.errors import ConfigError


def _check(cond: bool, key: str, allowed: str, value: Any) -> None:
    if not cond:
        raise ConfigError(f"{key}={value!r} is invalid: must be {allowed}")


def _one_of(key: str, value: str, choices: tuple[str, ...]) -> None:
    _check(value in choices, key, "one of " + ", ".join(choices), value)


@dataclass(frozen=True)
class EnvConfig:
    """Environment and preprocessing (Machado et al. 2018 protocol by default)."""

    id: str = "pong"  # ALE id (pong), CamelCase (Pong), ALE/Pong-v5, or CartPole-v1 / Acrobot-v1
    num_envs: int = 8  # parallel envs in the vector env
    sticky_action_prob: float = 0.25  # Machado et al. 2018
    frame_skip: int = 4  # emulator frames per env step, max-pooled over the last two
    frame_stack: int = 4  # observations per state (Nature DQN)
    noop_max: int = 30  # random no-ops at reset (Nature DQN)
    max_episode_frames: int = 108_000  # frames (30 minutes of play), Machado et al.
    full_action_space: bool = False  # minimal action set by default
    terminal_on_life_loss: bool = True  # training only: life loss ends bootstrapping
    clip_rewards: bool = True  # training only: sign(reward), done in wnrl
    num_threads: int = 0  # env worker threads, 0 = one per env up to the core count

    def __post_init__(self) -> None:
        _check(bool(self.id), "env.id", "a game or env name", self.id)
        _check(1 <= self.num_envs <= 1024, "env.num_envs", "in [1, 1024]", self.num_envs)
        _check(0.0 <= self.sticky_action_prob <= 1.0, "env.sticky_action_prob", "in [0, 1]",
               self.sticky_action_prob)
        _check(self.frame_skip >= 1, "env.frame_skip", ">= 1", self.frame_skip)
        _check(1 <= self.frame_stack <= 16, "env.frame_stack", "in [1, 16]", self.frame_stack)
        _check(self.noop_max >= 0, "env.noop_max", ">= 0", self.noop_max)
        _check(self.max_episode_frames > 0, "env.max_episode_frames", "> 0",
               self.max_episode_frames)
        _check(self.num_threads >= 0, "env.num_threads", ">= 0", self.num_threads)


@dataclass(frozen=True)
class NetworkConfig:
    """Q-network options; the norm kind comes from the agent recipe."""

    dueling: bool = False  # dueling head (Wang et al. 2016)
    hidden_sizes: tuple[int, ...] = (128, 128)  # MLP torso for vector observations
    channels_last: bool = False  # NHWC memory format for the CNN (a speed option)
    actor_batch_stats: bool = False  # batch-norm nets only: act in train mode over the N envs

    def __post_init__(self) -> None:
        _check(len(self.hidden_sizes) >= 1 and all(h > 0 for h in self.hidden_sizes),
               "network.hidden_sizes", "a non-empty list of positive sizes",
               list(self.hidden_sizes))


@dataclass(frozen=True)
class ReplayConfig:
    """Frame-ring replay buffer."""

    capacity: int = 1_000_000  # transitions (Nature DQN)
    n_step: int = 1  # n-step returns (1 = Nature DQN)
    prioritized: bool = False  # proportional prioritized replay (Schaul et al. 2016)
    priority_alpha: float = 0.6  # Schaul et al. 2016
    priority_beta_start: float = 0.4  # importance-weight exponent, annealed to the end value
    priority_beta_end: float = 1.0  # reached at the end of training
    priority_eps: float = 1e-6  # added to |TD error|
    save_in_checkpoint: bool = False  # include the (large) replay in checkpoints for exact resume
    # where the replay's arrays live: host (NumPy, `ReplayBuffer`) | learner (torch tensors
    # on the learner's device, `DeviceReplay`: on a GPU a batch never crosses the PCIe bus)
    # | auto = learner when the learner is on CUDA and the replay fits there, else host.
    # Single runs only (a group and Ape-X keep the host replay).
    device: str = "auto"

    def __post_init__(self) -> None:
        _one_of("replay.device", self.device, ("auto", "host", "learner"))
        _check(self.capacity > 0, "replay.capacity", "> 0", self.capacity)
        _check(1 <= self.n_step <= 100, "replay.n_step", "in [1, 100]", self.n_step)
        _check(0.0 <= self.priority_alpha <= 1.0, "replay.priority_alpha", "in [0, 1]",
               self.priority_alpha)
        for k in ("priority_beta_start", "priority_beta_end"):
            _check(0.0 <= getattr(self, k) <= 1.0, f"replay.{k}", "in [0, 1]", getattr(self, k))
        _check(self.priority_eps > 0, "replay.priority_eps", "> 0", self.priority_eps)


@dataclass(frozen=True)
class LearnerConfig:
    """Optimizer, targets and loss. Defaults: modern DQN (Adam, Dopamine/CleanRL values)."""

    optimizer: str = "adam"  # adam | adamax (the paper's, with beta1 0.5) | rmsprop
    lr: float = 1e-4  # learning rate
    beta1: float = 0.9  # Adam/Adamax first-moment decay; the paper uses 0.5
    beta2: float = 0.999  # second-moment decay (RMSprop: its alpha)
    eps: float = 1.5e-4  # optimizer epsilon (Dopamine's Adam value)
    gamma: float = 0.99  # discount per env step
    batch_size: int = 32  # minibatch size (Nature DQN; the paper used 64)
    target_update_period: int = 2000  # updates between target syncs (8000 env steps at 1/4)
    loss: str = "huber"  # huber | mse
    double_dqn: bool = False  # Double DQN targets (van Hasselt et al. 2016)
    max_grad_norm: float | None = 10.0  # global gradient-norm clip; null = off
    device: str = "auto"  # cpu | cuda | auto
    # torch.compile of the update (forward, loss, backward, optimizer step): auto = where a
    # compiler works (else eager, with a log line) | true | false. Measured on a 2-core CPU
    # (docs/performance.md): 1.25x eager fp32 for the Nature CNN update.
    compile: str = "auto"
    # bf16 autocast of the network forwards (weights, optimizer state, loss and the WN norm
    # stay fp32): auto = bf16 where the hardware runs it natively (wnrl.accel) | bf16 | fp32.
    # auto by default: on Pong (one seed each, docs/results/pong_wn_dqn.md) the bf16 learner
    # learned no worse than the fp32 one at equal env steps, and its Nature-CNN update is
    # 1.2-1.4x faster on an avx512_bf16 CPU (docs/performance.md). The MLP and MinAtar
    # configs pin fp32 (not measured faster there; the MinAtar study ran fp32).
    precision: str = "auto"
    # the whole update captured once as a CUDA graph and replayed: auto = on CUDA (3.5-4.5x
    # faster updates on an H200, docs/gpu.md) | true (CUDA only) | false
    cuda_graph: str = "auto"

    def __post_init__(self) -> None:
        for key in ("compile", "precision", "cuda_graph"):  # YAML `true` arrives as "True"
            object.__setattr__(self, key, str(getattr(self, key)).lower())
        _one_of("learner.compile", self.compile, ("auto", "true", "false"))
        _one_of("learner.cuda_graph", self.cuda_graph, ("auto", "true", "false"))
        _one_of("learner.precision", self.precision, ("auto", "bf16", "fp32"))
        _one_of("learner.optimizer", self.optimizer, ("adam", "adamax", "rmsprop"))
        _check(self.lr > 0, "learner.lr", "> 0", self.lr)
        _check(0.0 <= self.beta1 < 1.0, "learner.beta1", "in [0, 1)", self.beta1)
        _check(0.0 <= self.beta2 < 1.0, "learner.beta2", "in [0, 1)", self.beta2)
        _check(self.eps > 0, "learner.eps", "> 0", self.eps)
        _check(0.0 <= self.gamma <= 1.0, "learner.gamma", "in [0, 1]", self.gamma)
        _check(self.batch_size >= 1, "learner.batch_size", ">= 1", self.batch_size)
        _check(self.target_update_period >= 1, "learner.target_update_period", ">= 1",
               self.target_update_period)
        _one_of("learner.loss", self.loss, ("huber", "mse"))
        _check(self.max_grad_norm is None or self.max_grad_norm > 0, "learner.max_grad_norm",
               "> 0 or null", self.max_grad_norm)
        _one_of("learner.device", self.device, ("cpu", "cuda", "auto"))


@dataclass(frozen=True)
class ActorConfig:
    """Exploration and weight refresh."""

    eps_start: float = 1.0  # epsilon at step 0
    eps_end: float = 0.01  # final epsilon (Dopamine/CleanRL; Nature used 0.1)
    eps_fraction: float = 0.1  # fraction of total env steps over which epsilon decays
    fixed_epsilons: tuple[float, ...] | None = None  # one fixed epsilon per env (Ape-X style)
    weight_sync_period: int = 1  # learner updates between refreshes of the actor's folded copy
    # where the sync and async loops' actor runs its forward: cpu | cuda | auto (= the
    # learner's device; on a GPU the weights then never leave it; docs/gpu.md)
    device: str = "auto"
    # the acting forward and argmax captured as a CUDA graph and replayed: auto = on a
    # CUDA actor acting in eval mode (a capture that fails falls back to eager, logged)
    cuda_graph: str = "auto"

    def __post_init__(self) -> None:
        # YAML `true` arrives as "True"
        object.__setattr__(self, "cuda_graph", str(self.cuda_graph).lower())
        _one_of("actor.device", self.device, ("cpu", "cuda", "auto"))
        _one_of("actor.cuda_graph", self.cuda_graph, ("auto", "true", "false"))
        for k in ("eps_start", "eps_end"):
            _check(0.0 <= getattr(self, k) <= 1.0, f"actor.{k}", "in [0, 1]", getattr(self, k))
        _check(0.0 < self.eps_fraction <= 1.0, "actor.eps_fraction", "in (0, 1]",
               self.eps_fraction)
        if self.fixed_epsilons is not None:
            _check(all(0.0 <= e <= 1.0 for e in self.fixed_epsilons), "actor.fixed_epsilons",
                   "values in [0, 1]", list(self.fixed_epsilons))
        _check(self.weight_sync_period >= 1, "actor.weight_sync_period", ">= 1",
               self.weight_sync_period)


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation protocol (whole games, raw score, near-greedy)."""

    episodes: int = 10  # episodes per periodic evaluation during training
    epsilon: float = 0.001  # Machado et al. 2018
    num_envs: int = 4  # parallel evaluation envs
    max_episode_frames: int = 108_000  # frames

    def __post_init__(self) -> None:
        _check(self.episodes >= 1, "eval.episodes", ">= 1", self.episodes)
        _check(0.0 <= self.epsilon <= 1.0, "eval.epsilon", "in [0, 1]", self.epsilon)
        _check(self.num_envs >= 1, "eval.num_envs", ">= 1", self.num_envs)
        _check(self.max_episode_frames > 0, "eval.max_episode_frames", "> 0",
               self.max_episode_frames)


@dataclass(frozen=True)
class TrainConfig:
    """The training loop. Periods are in env steps unless stated."""

    total_steps: int = 10_000_000  # env steps (40M frames)
    learning_starts: int = 80_000  # env steps collected before the first update (Dopamine: 20k x 4)
    updates_per_step: float = 0.25  # replay ratio: learner updates per env step (1 per 4)
    mode: str = "sync"  # sync (deterministic) | async (actor and learner threads)
    async_tolerance: float = 0.1  # async: allowed relative drift of the replay ratio
    init_batch_size: int = 256  # observations for the data-dependent init of WN agents
    eval_period: int = 250_000  # env steps between evaluations; 0 = never
    checkpoint_period: int = 100_000  # env steps between checkpoints
    keep_checkpoints: int = 3  # newest checkpoints kept in checkpoints/
    # Checkpoints leave the games in progress alone (a resume starts new games, since the
    # emulator state cannot be saved). True: every checkpoint cuts them and resets the envs,
    # so a resumed run is bit-identical to an uninterrupted one, at the price of training
    # curves that never show a game longer than checkpoint_period / num_envs agent steps.
    exact_resume: bool = False
    # Env steps the epsilon and PER-beta schedules span; 0 = total_steps. A resume that
    # changes total_steps sets it to the run's first total_steps, so schedules stay put.
    schedule_steps: int = 0
    log_period: int = 1_000  # env steps between scalar logs
    noise_period: int = 50_000  # env steps between minibatch-noise diagnostics; 0 = never
    stop_return: float | None = None  # stop early once the mean raw return reaches this
    stop_window: int = 20  # ... over this many consecutive episodes
    run_name: str = ""  # default: <agent>_<game>_s<seed>_<timestamp>
    runs_dir: str = "runs"
    # Train one run per seed in one process (a group, wnrl.group; `--seeds 0-7`): each is a
    # normal run with its own directory, as if trained alone with `seed=<s>`. With a list of
    # rates (`learner.lr=[1e-4,3e-4]` on the command line) the members are seeds x rates.
    # Empty: one run with `seed`.
    seeds: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _check(self.total_steps > 0, "train.total_steps", "> 0", self.total_steps)
        _check(self.learning_starts >= 0, "train.learning_starts", ">= 0", self.learning_starts)
        _check(self.schedule_steps >= 0, "train.schedule_steps", ">= 0 (0 = total_steps)",
               self.schedule_steps)
        _check(self.learning_starts < self.total_steps, "train.learning_starts",
               f"< train.total_steps ({self.total_steps})", self.learning_starts)
        _check(0.0 < self.updates_per_step <= 64, "train.updates_per_step", "in (0, 64]",
               self.updates_per_step)
        _one_of("train.mode", self.mode, ("sync", "async"))
        _check(0.0 < self.async_tolerance < 1.0, "train.async_tolerance", "in (0, 1)",
               self.async_tolerance)
        _check(self.init_batch_size >= 2, "train.init_batch_size", ">= 2", self.init_batch_size)
        for k in ("eval_period", "noise_period"):
            _check(getattr(self, k) >= 0, f"train.{k}", ">= 0 (0 = never)", getattr(self, k))
        for k in ("checkpoint_period", "log_period", "keep_checkpoints", "stop_window"):
            _check(getattr(self, k) > 0, f"train.{k}", "> 0", getattr(self, k))
        _check("/" not in self.run_name and self.run_name not in (".", ".."), "train.run_name",
               "a plain directory name", self.run_name)
        _check(all(s >= 0 for s in self.seeds) and len(set(self.seeds)) == len(self.seeds),
               "train.seeds", "distinct seeds >= 0", list(self.seeds))

    @property
    def schedule_horizon(self) -> int:
        """Env steps the epsilon and PER-beta schedules span (`schedule_steps` or, if 0,
        `total_steps`)."""
        return self.schedule_steps or self.total_steps


@dataclass(frozen=True)
class DistributedConfig:
    """Ray arrangement (Ape-X); used only by `wnrl.distributed`."""

    enabled: bool = False
    address: str = ""  # "" = start a local Ray instance; "auto" or host:port = join a cluster
    num_actors: int = 2  # actor workers, each with its own vector env and epsilon
    num_replay_shards: int = 1
    chunk_steps: int = 50  # vector steps per chunk sent to replay
    max_chunks_in_flight: int = 2  # per actor (backpressure)
    call_timeout_s: float = 60.0  # timeout on every blocking Ray call
    learner_gpus: float = 0.0  # GPUs for the learner (0 = CPU)

    def __post_init__(self) -> None:
        _check(self.num_actors >= 1, "distributed.num_actors", ">= 1", self.num_actors)
        _check(self.num_replay_shards >= 1, "distributed.num_replay_shards", ">= 1",
               self.num_replay_shards)
        _check(self.chunk_steps >= 1, "distributed.chunk_steps", ">= 1", self.chunk_steps)
        _check(self.max_chunks_in_flight >= 1, "distributed.max_chunks_in_flight", ">= 1",
               self.max_chunks_in_flight)
        _check(self.call_timeout_s > 0, "distributed.call_timeout_s", "> 0", self.call_timeout_s)
        _check(self.learner_gpus >= 0, "distributed.learner_gpus", ">= 0", self.learner_gpus)


@dataclass(frozen=True)
class Config:
    """A whole run. `agent` names a recipe in `wnrl.agents.AGENTS`."""

    agent: str = "wn_dqn"
    seed: int = 0
    env: EnvConfig = field(default_factory=EnvConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    actor: ActorConfig = field(default_factory=ActorConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def __post_init__(self) -> None:
        _check(self.seed >= 0, "seed", ">= 0", self.seed)
        _check(self.learner.batch_size <= self.replay.capacity, "learner.batch_size",
               f"<= replay.capacity ({self.replay.capacity})", self.learner.batch_size)
        fixed = self.actor.fixed_epsilons
        _check(fixed is None or len(fixed) == self.env.num_envs, "actor.fixed_epsilons",
               f"one value per env ({self.env.num_envs})", fixed)
        _check(not self.train.exact_resume or self.replay.save_in_checkpoint,
               "train.exact_resume", "false unless replay.save_in_checkpoint=true (a resume "
               "without the saved replay refills it, so it cannot be exact)", True)
        _check(self.replay.device != "learner" or not self.distributed.enabled,
               "replay.device", "host or auto with distributed.enabled=true (Ape-X's replay "
               "shards live on the host)", self.replay.device)
        need = self.env.num_envs * (self.env.frame_stack + self.replay.n_step + 2)
        _check(self.replay.capacity >= need, "replay.capacity",
               f">= {need} (a few steps of every env)", self.replay.capacity)
