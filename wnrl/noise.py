"""Minibatch-noise diagnostics for any Q-network (docs/results/README.md says what they show).

Batch norm computes each state's Q-values with statistics of the whole
minibatch, so Q(s) depends on the states `s` is batched with; weight norm and
the standard parameterization do not. These functions measure that
dependence directly:

- `batch_dependence`: each probe state `s` is put, in train mode, at the front
  of K random minibatches of B states (s and B - 1 companions drawn from a
  pool); the std over the K minibatches of Q(s, a) is the noise batch
  statistics add to the Q-values (0 for a network without them). Also the
  fraction of probe states whose greedy action changes between minibatches,
  and the train/eval gap |Q_train(s) - Q_eval(s)| in the same minibatches.
- `td_target_noise`: the same for bootstrapped targets `gamma * max_a Q_target(s', a)`
  with the target network in the mode it is used in (eval for every agent
  here, so 0) and, for comparison, in train mode (what a train-mode target
  would add).

Nothing here changes the network: measurements run on a deep copy, so
batch-norm running statistics are not updated by the probe passes.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

DEFAULT_DRAWS = 8  # K minibatch compositions per probe state


def _q_in_minibatches(net: nn.Module, probe: Tensor, companions: Tensor, batch_size: int,
                      draws: int, generator: torch.Generator) -> Tensor:
    """Q-values of each probe state at row 0 of `draws` random minibatches.

    probe: [P, *obs]; companions: [M, *obs] with M >= batch_size - 1.
    Returns float32[draws, P, A].
    """
    m = companions.shape[0]
    if m < batch_size - 1:
        raise ValueError(f"need at least batch_size - 1 = {batch_size - 1} companion states, "
                         f"got {m}")
    out = []
    for _ in range(draws):
        rows = []
        for i in range(probe.shape[0]):
            idx = torch.randperm(m, generator=generator)[: batch_size - 1].to(companions.device)
            batch = torch.cat([probe[i: i + 1], companions[idx]])
            rows.append(net(batch)[0].float())
        out.append(torch.stack(rows))
    return torch.stack(out)


@torch.no_grad()
def batch_dependence(net: nn.Module, probe: Tensor, companions: Tensor, batch_size: int,
                     draws: int = DEFAULT_DRAWS, seed: int = 0,
                     train: bool = True) -> dict[str, float]:
    """How much each probe state's Q-values depend on the rest of its minibatch.

    Args:
        net: obs -> float[B, A]; measured on a copy, in train mode (as the learner uses
            it) or, with `train=False`, in eval mode (running statistics).
        probe: the fixed states, uint8[P, C, H, W] | float32[P, D].
        companions: the pool minibatches are drawn from, same dtype, [M, ...], M >= B - 1.
        batch_size: B, the minibatch size (>= 2).
        draws: K, minibatch compositions per probe state.
        seed: seeds the companion draws.
    Returns (floats):
        q_std: mean over probe states and actions of the std of Q(s, a) over the K minibatches.
        q_std_rel: q_std / mean |Q(s, a)| (eval mode), the noise relative to the Q scale.
        action_flip_frac: fraction of probe states whose greedy action is not the same in all K.
        train_eval_gap: mean |Q(s, a) in the minibatches - Q_eval(s, a)|.
        q_abs_mean: mean |Q(s, a)| in eval mode (the scale used above).
    """
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 to have companions, got {batch_size}")
    work = copy.deepcopy(net).train(train)
    q = _q_in_minibatches(work, probe, companions, batch_size, draws,
                          torch.Generator().manual_seed(seed))  # [K, P, A]
    # eval mode in the same minibatches (same draws), so the gap compares like with like
    q_eval = _q_in_minibatches(work.eval(), probe, companions, batch_size, draws,
                               torch.Generator().manual_seed(seed))
    scale = q_eval.abs().mean()
    std = q.std(dim=0, correction=0).mean()
    greedy = q.argmax(dim=2)  # [K, P]
    flips = (greedy != greedy[:1]).any(dim=0).float().mean()
    gap = (q - q_eval).abs().mean()
    return {"q_std": float(std), "q_std_rel": float(std / scale.clamp_min(1e-8)),
            "action_flip_frac": float(flips), "train_eval_gap": float(gap),
            "q_abs_mean": float(scale)}


@torch.no_grad()
def td_target_noise(target: nn.Module, next_obs: Tensor, companions: Tensor, batch_size: int,
                    gamma: float = 0.99, draws: int = DEFAULT_DRAWS,
                    seed: int = 0) -> dict[str, float]:
    """Std over minibatch compositions of the bootstrap `gamma * max_a Q_target(s', a)`.

    `next_obs` [P, ...] are the bootstrap states, `companions` [M, ...] the pool. Returns
    `td_target_std` with the target in the mode it is in (the learner keeps it in eval),
    and `td_target_std_if_train` with the target in train mode (what batch statistics in
    the target would add).
    """
    gen = torch.Generator().manual_seed(seed)
    work = copy.deepcopy(target)
    res = {}
    for key, training in (("td_target_std", target.training), ("td_target_std_if_train", True)):
        q = _q_in_minibatches(work.train(training), next_obs, companions, batch_size, draws, gen)
        res[key] = float((gamma * q.max(dim=2).values).std(dim=0, correction=0).mean())
    return res


def noise_metrics(online: nn.Module, probe: Tensor, companions: Tensor, batch_size: int,
                  target: nn.Module | None = None, gamma: float = 0.99,
                  draws: int = DEFAULT_DRAWS) -> dict[str, float]:
    """All diagnostics for one training-time log point (`noise/...` in TensorBoard).

    `batch_dependence` of the online network and, if `target` is given, `td_target_noise`
    of the target network on the probe states (used as bootstrap states).
    """
    out = batch_dependence(online, probe, companions, batch_size, draws)
    if target is not None:
        out.update(td_target_noise(target, probe, companions, batch_size, gamma, draws))
    return out
