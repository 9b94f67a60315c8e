"""Actor: epsilon schedules, greedy actions, transition rows, episode bookkeeping, state."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

from wnrl.actor import Actor, Episode
from wnrl.config import ActorConfig, EnvConfig
from wnrl.envs import StepResult, make_env
from wnrl.schedules import linear_epsilon

OBS_DIM, NUM_ACTIONS = 3, 3
F, T = False, True


class FakeEnv:
    """Scripted vector env. obs[i] = [t, i, 1] (t = vector steps since reset); step k returns
    the k-th scripted row (reward, terminated, truncated, life_lost, reset_step), zeros after."""

    def __init__(self, num_envs: int = 2, script: list[tuple] = ()) -> None:
        self.num_envs, self.num_actions, self.obs_shape = num_envs, NUM_ACTIONS, (OBS_DIM,)
        self.script, self.k, self.t = list(script), 0, 0
        self.reset_seeds: list[int] = []

    def _obs(self) -> np.ndarray:
        i = np.arange(self.num_envs, dtype=np.float32)
        return np.stack([np.full_like(i, self.t), i, np.ones_like(i)], axis=1)

    def reset(self, seed: int | None = None) -> np.ndarray:
        self.reset_seeds.append(seed)
        self.t = 0
        return self._obs()

    def step(self, actions: np.ndarray) -> StepResult:
        assert actions.dtype == np.int64 and actions.shape == (self.num_envs,)
        zeros = (np.zeros(self.num_envs, np.float32),) + (np.zeros(self.num_envs, bool),) * 4
        row = self.script[self.k] if self.k < len(self.script) else zeros
        self.k += 1
        self.t += 1
        reward, terminated, truncated, life_lost, reset_step = (np.asarray(x) for x in row)
        return StepResult(obs=self._obs(), reward=reward.astype(np.float32),
                          terminated=terminated, truncated=truncated, life_lost=life_lost,
                          reset_step=reset_step)


def q_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(OBS_DIM, NUM_ACTIONS)


def make_actor(env: object = None, net: nn.Module | None = None, seed: int = 0,
               **kw: object) -> Actor:
    acfg = {k: kw.pop(k) for k in list(kw) if k in ActorConfig.__dataclass_fields__}
    args = {"total_steps": 100, "clip_rewards": True, "terminal_on_life_loss": True, **kw}
    return Actor(env or FakeEnv(), net or q_net(), ActorConfig(**acfg), seed=seed, **args)


@pytest.mark.parametrize("vector_steps", [0, 5, 10, 25, 40])
def test_epsilon_follows_linear_schedule(vector_steps: int) -> None:
    actor = make_actor(total_steps=40, eps_start=1.0, eps_end=0.1, eps_fraction=0.5)
    for _ in range(vector_steps):
        actor.step()
    assert actor.env_steps == 2 * vector_steps
    expected = linear_epsilon(2 * vector_steps, 40, 1.0, 0.1, 0.5)
    assert actor.epsilon == pytest.approx(expected)
    np.testing.assert_allclose(actor.epsilons(), [expected] * 2)


def test_fixed_epsilons_per_env() -> None:
    actor = make_actor(FakeEnv(num_envs=2), fixed_epsilons=(0.0, 1.0))
    np.testing.assert_array_equal(actor.epsilons(), [0.0, 1.0])
    assert actor.epsilon == 0.5
    obs = np.random.default_rng(0).standard_normal((2, OBS_DIM)).astype(np.float32)
    actions = np.stack([actor.act(obs, actor.epsilons()) for _ in range(60)])
    assert (actions[:, 0] == actor.greedy(obs)[0]).all()
    assert set(actions[:, 1]) == set(range(NUM_ACTIONS))
    with pytest.raises(ValueError, match="one per env"):
        make_actor(FakeEnv(num_envs=3), fixed_epsilons=(0.1, 0.2))


def test_greedy_action_is_argmax_of_q() -> None:
    net = q_net()
    actor = make_actor(net=net)
    obs = np.random.default_rng(1).standard_normal((64, OBS_DIM)).astype(np.float32)
    expected = net(torch.from_numpy(obs)).argmax(1).numpy()
    np.testing.assert_array_equal(actor.act(obs, 0.0), expected)
    assert actor.act(obs, 0.0).dtype == np.int64
    assert set(actor.act(obs, 1.0)) == set(range(NUM_ACTIONS))


def test_set_weights_changes_the_policy() -> None:
    actor = make_actor()
    weights = {"weight": torch.zeros(NUM_ACTIONS, OBS_DIM), "bias": torch.tensor([0.0, 0.0, 1.0])}
    actor.set_weights(weights)
    obs = np.random.default_rng(2).standard_normal((8, OBS_DIM)).astype(np.float32)
    np.testing.assert_array_equal(actor.act(obs, 0.0), np.full(8, 2))


# Two envs, five steps. env 0: +2.5 with a life lost, +1 game over, reset step, -1, +2 game
# over. env 1: -3, 0 truncated, reset step, +4 with a life lost, 0.
SCRIPT = [  # reward, terminated, truncated, life_lost, reset_step
    ([2.5, -3.0], [F, F], [F, F], [T, F], [F, F]),
    ([1.0, 0.0], [T, F], [F, T], [F, F], [F, F]),
    ([0.0, 0.0], [F, F], [F, F], [F, F], [T, T]),
    ([-1.0, 4.0], [F, F], [F, F], [F, T], [F, F]),
    ([2.0, 0.0], [T, F], [F, F], [F, F], [F, F]),
]


@pytest.mark.parametrize("clip_rewards", [False, True])
@pytest.mark.parametrize("terminal_on_life_loss", [False, True])
def test_transition_rows_and_episodes(clip_rewards: bool, terminal_on_life_loss: bool) -> None:
    env = FakeEnv(2, SCRIPT)
    actor = make_actor(env, clip_rewards=clip_rewards,
                       terminal_on_life_loss=terminal_on_life_loss)
    rows, episodes = [], []
    for _ in SCRIPT:
        tr, eps = actor.step()
        rows.append(tr)
        episodes.append(eps)
    tol = terminal_on_life_loss
    np.testing.assert_array_equal([r.terminal for r in rows],
                                  [[tol, F], [T, F], [F, F], [F, tol], [T, F]])
    np.testing.assert_array_equal([r.truncated for r in rows], [s[2] for s in SCRIPT])
    np.testing.assert_array_equal([r.valid for r in rows], [[not x for x in s[4]] for s in SCRIPT])
    raw = np.array([s[0] for s in SCRIPT], np.float32)
    rewards = np.array([r.reward for r in rows])
    assert rewards.dtype == np.float32
    np.testing.assert_array_equal(rewards, np.sign(raw) if clip_rewards else raw)
    np.testing.assert_array_equal([r.obs[:, 0] for r in rows], [[t, t] for t in range(5)])
    assert all(r.action.dtype == np.int64 and r.action.shape == (2,) for r in rows)
    # raw score across the life loss; lengths count env steps, not the reset step
    assert episodes == [[], [Episode(3.5, 2, 0), Episode(-3.0, 2, 1)], [], [],
                        [Episode(1.0, 2, 0)]]
    assert actor.num_episodes == 3 and actor.env_steps == 10


def test_same_seed_same_actions_and_different_seed_differs() -> None:
    def run(seed: int) -> np.ndarray:
        actor = make_actor(FakeEnv(4), seed=seed, eps_start=0.5, eps_end=0.5)
        return np.stack([actor.step()[0].action for _ in range(30)])

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_state_dict_round_trip_restores_counters_and_rng() -> None:
    a = make_actor(FakeEnv(2, SCRIPT), seed=5, eps_start=1.0, eps_end=1.0)
    for _ in range(5):
        a.step()
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    env_b = FakeEnv(2)
    b = make_actor(env_b, seed=5, eps_start=1.0, eps_end=1.0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert (b.env_steps, b.num_episodes) == (10, a.num_episodes)
    for _ in range(5):
        np.testing.assert_array_equal(a.step()[0].action, b.step()[0].action)
    assert env_b.reset_seeds == [5 + 10]  # the env restarts, with a seed of its own


def test_cut_episodes_closes_rows_and_drops_unfinished_games() -> None:
    env = FakeEnv(2, [([1.0, 2.0], [F, F], [F, F], [F, F], [F, F])])
    actor = make_actor(env)
    actor.step()
    current = actor.obs.copy()
    closing = actor.cut_episodes(seed=123)
    np.testing.assert_array_equal(closing.obs, current)
    assert not closing.valid.any() and not closing.terminal.any() and not closing.truncated.any()
    assert env.reset_seeds[-1] == 123 and actor.obs[0, 0] == 0
    env.script.append(([0.0, 0.0], [T, T], [F, F], [F, F], [F, F]))
    _, episodes = actor.step()
    assert episodes == [Episode(0.0, 1, 0), Episode(0.0, 1, 1)]


@pytest.mark.parametrize("batch_stats", [False, True])
def test_acting_mode_follows_batch_stats(batch_stats: bool) -> None:
    net = nn.Sequential(nn.Linear(OBS_DIM, 4), nn.BatchNorm1d(4), nn.Linear(4, NUM_ACTIONS))
    actor = make_actor(net=net, batch_stats=batch_stats)
    assert actor.net[1].training == batch_stats
    assert all(not p.requires_grad for p in actor.net.parameters())
    assert net[0].weight.requires_grad  # the caller's network is untouched


def test_cartpole_returns_equal_lengths() -> None:
    env = make_env(EnvConfig(id="CartPole-v1", num_envs=2), seed=0)
    actor = make_actor(env, eps_start=1.0, eps_end=1.0)
    episodes: list[Episode] = []
    prev_done = np.zeros(2, bool)
    for _ in range(200):
        tr, eps = actor.step()
        np.testing.assert_array_equal(tr.valid, ~prev_done)
        prev_done = tr.terminal | tr.truncated
        episodes += eps
    env.close()
    assert episodes and all(e.ret == e.length for e in episodes)


def test_a_failed_forward_capture_falls_back_to_eager(monkeypatch) -> None:
    """`actor.cuda_graph` is off on a CPU actor (auto), refused when asked for (true), and
    a capture that fails turns it off with one line for the log, acting as before."""
    from wnrl.config import ConfigError

    net = nn.Sequential(nn.Linear(OBS_DIM, 8), nn.ReLU(), nn.Linear(8, NUM_ACTIONS))
    kw = dict(total_steps=100, clip_rewards=False, terminal_on_life_loss=False, seed=0)
    actor = Actor(FakeEnv(4), net, ActorConfig(), **kw)
    assert not actor.graphed
    with pytest.raises(ConfigError, match="actor.cuda_graph=true needs a CUDA device"):
        Actor(FakeEnv(4), net, ActorConfig(cuda_graph="true"), **kw)

    def broken(*args: object) -> None:
        raise RuntimeError("operation not permitted when stream is capturing\nmore")

    monkeypatch.setattr("wnrl.actor.GraphedGreedy", broken)
    actor.graphed = True  # as on a CUDA device
    obs = np.random.default_rng(0).standard_normal((4, OBS_DIM)).astype(np.float32)
    want = net(torch.as_tensor(obs)).argmax(dim=1).numpy()
    np.testing.assert_array_equal(actor.greedy(obs), want)
    assert not actor.graphed and actor.pop_events() == [
        "actor.cuda_graph: the capture failed (operation not permitted when stream is "
        "capturing); acting eagerly"]
    np.testing.assert_array_equal(actor.greedy(obs), want)
    assert actor.pop_events() == []
