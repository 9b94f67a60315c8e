"""Test-suite settings: one torch thread (the suite runs on 2 shared cores; the
tests check behaviour, not speed) and deterministic seeds per test.

wnrl's cache (the autotune's measured modes) goes to a private temporary directory,
never the user's home, for this process and the CLI runs it starts; and the autotune's
trial is off (`auto` follows wnrl.accel's fixed rule) so that tests building learners
with `auto` modes do not each pay a trial: tests/test_autotune.py turns it on."""

import atexit
import os
import shutil
import tempfile

import torch

torch.set_num_threads(1)
os.environ["WNRL_CACHE_DIR"] = tempfile.mkdtemp(prefix="wnrl-test-cache-")
atexit.register(shutil.rmtree, os.environ["WNRL_CACHE_DIR"], ignore_errors=True)
os.environ["WNRL_AUTOTUNE"] = "0"
