"""Config schema: layering, overrides, validation messages (one line, naming the key)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wnrl.config import Config, ConfigError, from_dict, load_config, to_dict, to_yaml

CONFIGS = sorted(Path(__file__).parent.parent.joinpath("configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path) -> None:
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    assert from_dict(to_dict(cfg)) == cfg


def test_layers_yaml_then_overrides(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("agent: dqn\nlearner:\n  lr: 0.001\n  batch_size: 16\n")
    cfg = load_config(f, ["learner.lr=3e-4", "env.id=breakout"])
    assert cfg.agent == "dqn" and cfg.learner.lr == 3e-4 and cfg.learner.batch_size == 16
    assert cfg.env.id == "breakout"
    assert cfg.replay == Config().replay  # untouched sections keep their defaults


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("learner.lrr=0.1", "did you mean 'learner.lr'"),
        ("learner.lr=-1", "learner.lr"),
        ("learner.lr=0", "learner.lr"),
        ("learner.lr=abc", "learner.lr"),
        ("learner.target_update_period=0", "learner.target_update_period"),
        ("actor.eps_end=1.5", "actor.eps_end"),
        ("learner.optimizer=sgd", "adam, adamax, rmsprop"),
        ("train.learning_starts=999999999", "train.learning_starts"),
        ("learner.batch_size=64 replay.capacity=32", "learner.batch_size"),
        ("agent=wn_dq", "did you mean 'wn_dqn'"),
        ("nonsense", "key=value"),
        ("train.mode=fast", "train.mode"),
    ],
)
def test_bad_values_name_the_key(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, override.split())
    msg = str(err.value)
    assert fragment in msg and "\n" not in msg


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(lst)


def test_yaml_round_trip() -> None:
    cfg = load_config(None, ["seed=3", "network.hidden_sizes=[64,32]"])
    assert cfg.network.hidden_sizes == (64, 32)
    assert "hidden_sizes" in to_yaml(cfg)


@settings(max_examples=60, deadline=None)
@given(
    lr=st.floats(-1.0, 1.0, allow_nan=False),
    eps=st.floats(-0.5, 1.5, allow_nan=False),
    period=st.integers(-5, 5),
    batch=st.integers(-4, 300),
    capacity=st.integers(1, 256),
)
def test_property_valid_iff_in_range(lr, eps, period, batch, capacity) -> None:
    """Any combination either loads with exactly those values or raises a one-line ConfigError."""
    overrides = [f"learner.lr={lr!r}", f"actor.eps_end={eps!r}",
                 f"learner.target_update_period={period}", f"learner.batch_size={batch}",
                 f"replay.capacity={capacity}", "env.num_envs=1", "env.id=CartPole-v1"]
    ok = (lr > 0 and 0 <= eps <= 1 and period >= 1 and 1 <= batch <= capacity
          and capacity >= 1 * (4 + 1 + 2))
    if ok:
        cfg = load_config(None, overrides)
        assert cfg.learner.lr == lr and cfg.learner.batch_size == batch
    else:
        with pytest.raises(ConfigError) as err:
            load_config(None, overrides)
        assert "\n" not in str(err.value)


def test_base_files_compose_and_every_shipped_config_loads(tmp_path: Path) -> None:
    (tmp_path / "env.yaml").write_text("agent: wn_dqn\nenv:\n  id: CartPole-v1\n"
                                       "learner:\n  lr: 0.01\n  batch_size: 16\n")
    (tmp_path / "mid.yaml").write_text("base: env.yaml\nlearner:\n  lr: 0.02\n")
    (tmp_path / "top.yaml").write_text("base: [mid.yaml]\nagent: dqn\n")
    cfg = load_config(tmp_path / "top.yaml", ["learner.batch_size=8"])
    assert (cfg.agent, cfg.env.id, cfg.learner.lr, cfg.learner.batch_size) == \
        ("dqn", "CartPole-v1", 0.02, 8)
    configs = CONFIGS[0].parent
    pong = load_config(configs / "pong.yaml", ["agent=dqn"])
    assert pong == load_config(configs / "pong_dqn.yaml")


@pytest.mark.parametrize("text, fragment", [
    ("base: loop.yaml\n", "is its own base"),
    ("base: missing.yaml\n", "not found"),
    ("base: {a: 1}\n", "base="),
])
def test_bad_base_is_a_one_line_error(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "loop.yaml").write_text(text)
    with pytest.raises(ConfigError, match=fragment) as info:
        load_config(tmp_path / "loop.yaml")
    assert "\n" not in str(info.value)


def test_minatar_agent_configs_differ_only_in_the_agent() -> None:
    """The MinAtar study compares norms: everything but the agent (its norm) is shared."""
    root = Path(__file__).parent.parent / "configs"
    dicts = {a: to_dict(load_config(root / f"minatar_{a}.yaml"))
             for a in ("dqn", "wn_dqn", "bn_dqn", "wn_mobn_dqn", "ln_dqn")}
    assert {d.pop("agent") for d in dicts.values()} == set(dicts)
    first = dicts["dqn"]
    assert all(d == first for d in dicts.values())
    assert first["env"]["id"] == "minatar/breakout" and first["env"]["sticky_action_prob"] == 0.1
