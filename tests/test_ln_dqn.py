"""The ln_dqn agent: registered, configured for every environment, batch-independent
Q-values in the learner's training mode, trains end to end through the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from wnrl.agents import AGENTS, get_agent

from wnrl import checkpoint as ckpt
from wnrl.cli import train_main
from wnrl.config import load_config
from wnrl.core.types import Batch
from wnrl.learner import Learner
from wnrl.networks import make_q_network
from wnrl.training import network_for

CONFIGS = Path(__file__).parent.parent / "configs"


def test_registered_with_layer_norm_and_no_data_dependent_init() -> None:
    recipe = get_agent("ln_dqn")
    assert recipe is AGENTS["ln_dqn"]
    assert recipe.norm == "layer" and not recipe.data_dependent_init


@pytest.mark.parametrize("env", ["pong", "atari", "cartpole", "acrobot", "minatar"])
def test_a_config_per_environment_builds_a_layer_norm_network(env: str) -> None:
    cfg = load_config(CONFIGS / f"{env}_ln_dqn.yaml")
    assert cfg.agent == "ln_dqn"
    shape = {"cartpole": (4,), "acrobot": (6,), "minatar": (1, 4, 10, 10)}.get(env, (4, 84, 84))
    net = network_for(cfg, shape, 3)
    kinds = {type(m) for m in net.modules()}
    assert kinds & {nn.LayerNorm, nn.GroupNorm}
    assert not kinds & {nn.BatchNorm1d, nn.BatchNorm2d}


@pytest.mark.parametrize("obs_shape", [(6,), (4, 84, 84), (1, 4, 10, 10)],
                         ids=["mlp", "nature_cnn", "minatar"])
def test_q_values_and_gradients_do_not_depend_on_the_minibatch(obs_shape: tuple) -> None:
    """In training mode (as the learner runs it) a state's Q-values and its own loss
    gradient are the same in any batch; the batch-norm network's are not."""
    gen = torch.Generator().manual_seed(0)
    if len(obs_shape) == 1:
        x = torch.randn(9, *obs_shape, generator=gen)
    else:
        x = torch.randint(0, 2 if len(obs_shape) == 4 else 256, (9, *obs_shape),
                          dtype=torch.uint8, generator=gen)
    for norm, independent in (("layer", True), ("batch", False)):
        torch.manual_seed(0)
        net = make_q_network(obs_shape, 3, norm=norm).train()
        grads = []
        for batch in (x[:5], torch.cat([x[:1], x[5:]])):  # state 0 with other companions
            net.zero_grad()
            q = net(batch)
            q[0].sum().backward()
            grads.append((q[0].detach(), [p.grad.clone() for p in net.parameters()]))
        (q_a, g_a), (q_b, g_b) = grads
        same = torch.allclose(q_a, q_b, atol=1e-5, rtol=1e-5) and all(
            torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(g_a, g_b))
        assert same == independent, norm


def test_learner_updates_a_layer_norm_network() -> None:
    cfg = load_config(CONFIGS / "cartpole_ln_dqn.yaml")
    torch.manual_seed(0)
    learner = Learner(make_q_network((4,), 2, norm="layer"), cfg.learner)
    before = {k: v.clone() for k, v in learner.online.state_dict().items()}
    rng = np.random.default_rng(0)

    batch = Batch(obs=rng.normal(size=(64, 4)).astype(np.float32),
                  action=rng.integers(0, 2, 64), reward=np.ones(64, np.float32),
                  discount=np.full(64, 0.99, np.float32),
                  next_obs=rng.normal(size=(64, 4)).astype(np.float32),
                  weight=np.ones(64, np.float32), index=np.arange(64))
    losses = [learner.update(batch).loss for _ in range(20)]
    assert losses[-1] < losses[0]
    changed = [k for k, v in learner.online.state_dict().items() if not torch.equal(v, before[k])]
    assert any("torso.1" in k for k in changed)  # the first LayerNorm's scale and shift learn


def test_trains_end_to_end_through_the_cli(tmp_path: Path) -> None:
    code = train_main(["--config", str(CONFIGS / "cartpole_ln_dqn.yaml"),
                       f"train.runs_dir={tmp_path}", "train.run_name=ln",
                       "train.total_steps=600", "train.learning_starts=200",
                       "train.checkpoint_period=600", "train.noise_period=0"])
    assert code == 0
    _, state = ckpt.load_latest_valid(tmp_path / "ln")
    assert state["signature"]["norm"] == "layer" and state["env_steps"] == 600
    assert state["learner"]["num_updates"] == 201
