"""The interfaces in code: every implementation has each protocol member with the
protocol's parameters, and docs/ARCHITECTURE.md shows the protocols as they are."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from wnrl import core
from wnrl.actor import Actor
from wnrl.core.interfaces import PROTOCOLS, describe, members
from wnrl.learner import Learner
from wnrl.replay import ReplayBuffer
from wnrl.replay.locked import LockedReplay

DOC = Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md"

IMPLEMENTATIONS = [(Actor, core.Actor), (ReplayBuffer, core.Replay), (LockedReplay, core.Replay),
                   (Learner, core.Learner)]


def _all_members(protocol: type) -> dict[str, str]:
    out: dict[str, str] = {}
    for base in reversed(protocol.__mro__):
        if base in PROTOCOLS:
            out.update(members(base))
    return out


def _params(fn: object) -> list[str]:
    return [p.name for p in inspect.signature(fn).parameters.values() if p.name != "self"]


@pytest.mark.parametrize("impl, protocol", IMPLEMENTATIONS,
                         ids=[f"{i.__name__}-{p.__name__}" for i, p in IMPLEMENTATIONS])
def test_implementation_has_every_member_with_its_parameters(impl: type, protocol: type) -> None:
    for name in _all_members(protocol):
        proto_attr = inspect.getattr_static(protocol, name, None)
        if inspect.isfunction(proto_attr):
            impl_attr = inspect.getattr_static(impl, name, None)
            assert inspect.isfunction(impl_attr), f"{impl.__name__}.{name} is not a method"
            assert _params(impl_attr)[: len(_params(proto_attr))] == _params(proto_attr), name
        elif isinstance(proto_attr, property):
            assert isinstance(inspect.getattr_static(impl, name, None), property), name
        else:  # a plain attribute: set in __init__
            assert name in inspect.getsource(impl.__init__), f"{impl.__name__}.{name}"


def test_members_and_describe_render_signatures() -> None:
    assert members(core.Replay)["sample"] == "(batch_size: int, beta: float = 0.4) -> Batch"
    assert members(core.Actor)["env_steps"] == ": int"
    assert members(core.Learner)["num_updates"] == " -> int"
    assert describe().splitlines()[0] == "Actor (Saveable):"


def test_architecture_doc_shows_the_protocols_verbatim() -> None:
    block = "\n".join("    " + line for line in describe().splitlines())
    assert block in DOC.read_text(), "regenerate the block from wnrl.core.interfaces.describe()"
