"""Member k of a group is the solo run with its seed and rate, for every norm.

Up to learning_starts: the same env seeds and actions, so the same replay contents
(frames, actions, rewards, flags) and the same exploration and replay generators. After
200 updates: every weight within 1e-4 relative (fp32), and the same greedy actions on a
probe set of observations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from wnrl import checkpoint as ckpt
from wnrl.cli import train_main
from wnrl.config import from_dict
from wnrl.networks import make_q_network

CONFIGS = Path(__file__).parent.parent / "configs"
AGENTS = {"none": "dqn", "weight": "wn_dqn", "batch": "bn_dqn",
          "weight+mean_only": "wn_mobn_dqn", "layer": "ln_dqn"}
STARTS, TOTAL = 200, 600  # updates_per_step 0.5: 201 updates by step 600


def _train(tmp: Path, name: str, agent: str, *extra: str) -> int:
    return train_main(["--config", str(CONFIGS / "cartpole.yaml"), f"agent={agent}",
                       f"train.runs_dir={tmp}", f"train.run_name={name}",
                       f"train.total_steps={TOTAL}", f"train.learning_starts={STARTS}",
                       f"train.checkpoint_period={STARTS}", "train.keep_checkpoints=5",
                       "train.init_batch_size=64", "train.noise_period=0",
                       "learner.target_update_period=50", "replay.save_in_checkpoint=true",
                       "replay.capacity=2000", *extra])


def _state(run: Path, step: int) -> dict:
    return ckpt.load(run / "checkpoints" / ckpt.checkpoint_name(step))


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / max(b.norm().item(), 1e-12))


@pytest.mark.parametrize("norm", list(AGENTS))
def test_member_matches_its_solo_run(tmp_path: Path, norm: str) -> None:
    agent = AGENTS[norm]
    assert _train(tmp_path, "solo", agent, "seed=1", "learner.lr=5e-4") == 0
    assert _train(tmp_path, "grp", agent, "--seeds", "0-1", "learner.lr=[1e-3,5e-4]") == 0
    member = tmp_path / "grp_s1_lr0.0005"
    solo = tmp_path / "solo"
    cfg = from_dict(_state(member, TOTAL)["config"])
    assert (cfg.seed, cfg.learner.lr, cfg.train.seeds) == (1, 5e-4, ())

    # up to learning_starts: same env seeds and actions -> byte-identical replay rows
    s_start, m_start = _state(solo, STARTS), _state(member, STARTS)
    for key in ("frames", "action", "reward", "flags"):
        np.testing.assert_array_equal(np.asarray(m_start["replay"][key]),
                                      np.asarray(s_start["replay"][key]), err_msg=key)
    assert m_start["actor"] == s_start["actor"]  # exploration generator and counters

    # after 201 updates: weights within 1e-4 relative, same greedy actions on a probe set
    s_end, m_end = _state(solo, TOTAL), _state(member, TOTAL)
    assert s_end["learner"]["num_updates"] == m_end["learner"]["num_updates"] == 201
    for part in ("online", "target"):
        for name, w in s_end["learner"][part].items():
            if w.is_floating_point():
                assert _rel(m_end["learner"][part][name], w) < 1e-4, (part, name)
    nets = []
    for state in (s_end, m_end):
        net = make_q_network((4,), 2, norm=norm).eval()
        net.load_state_dict(state["learner"]["online"])
        nets.append(net)
    frames = np.asarray(s_end["replay"]["frames"]).reshape(-1, 4)
    probe = torch.as_tensor(frames[np.abs(frames).sum(1) > 0][:256], dtype=torch.float32)
    assert len(probe) == 256
    with torch.no_grad():
        np.testing.assert_array_equal(nets[1](probe).argmax(1).numpy(),
                                      nets[0](probe).argmax(1).numpy())
