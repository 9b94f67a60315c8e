"""Test-suite settings: one torch thread (the suite runs on 2 shared cores; the
tests check behaviour, not speed) and deterministic seeds per test."""

import torch

torch.set_num_threads(1)
