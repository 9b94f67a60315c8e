"""What the hardware can do: device resolution, native bf16, a working compiler.

The learner's speed options (`learner.compile`, `learner.precision`) resolve
their `auto` values here, and an explicit request the machine cannot honour is
refused with a one-line `ConfigError` before anything is written:

- bf16 is *native* on a CPU with AVX512-BF16 or AMX (Linux `/proc/cpuinfo`
  flags `avx512_bf16`, `amx_bf16`) and on CUDA GPUs of compute capability 8.0
  (Ampere) or newer. Elsewhere bf16 autocast is emulated and slower than fp32,
  so `auto` means fp32 there. An explicit `bf16` on a CPU without native bf16
  runs emulated, with a note for the log saying so (the numerics are the same:
  tests check them on every CPU); on an older GPU it is refused.
- `torch.compile` (Inductor) needs a C++ compiler on CPU and Triton on CUDA.
- A CUDA-graphed update (`learner.cuda_graph`) needs a CUDA device.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import torch

from wnrl.config import ConfigError

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def resolve_device(device: str | torch.device) -> torch.device:
    """`"auto"` -> cuda when available, else cpu; anything else as `torch.device`."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_bf16(device: torch.device) -> bool:
    """True where bf16 matmuls/convs run natively on `device` (see module doc)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        return any(f in _cpu_flags() for f in BF16_CPU_FLAGS)
    return False


def resolve_precision(precision: str, device: torch.device) -> tuple[str, str | None]:
    """`learner.precision` (fp32 | bf16 | auto) -> ("fp32" or "bf16" on `device`, note for
    the log or None). An explicit bf16 on a CPU without native bf16 runs emulated (the note
    says so); on a GPU below compute capability 8.0 it is a ConfigError."""
    if precision == "auto":
        return ("bf16" if native_bf16(device) else "fp32"), None
    if precision == "bf16" and not native_bf16(device):
        if device.type == "cpu":
            return "bf16", ("learner.precision=bf16: this CPU has no native bf16 (avx512_bf16 "
                            "or AMX), so it is emulated and slower than fp32")
        raise ConfigError(f"learner.precision=bf16 cannot run natively on {device} (needs "
                          f"CUDA compute capability >= 8.0): use fp32 or auto")
    return precision, None


def compiler_available(device: torch.device) -> str | None:
    """None if `torch.compile` (Inductor) can build kernels for `device`, else why not."""
    if device.type == "cpu":
        return None if (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")) \
            else "no C++ compiler (g++, c++ or clang++) on PATH"
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "Triton is not installed"
        return None
    return f"no Inductor backend for {device.type}"


def resolve_compile(compile_: str, device: torch.device) -> tuple[bool, str | None]:
    """`learner.compile` (auto | true | false) -> (compile?, note for the log or None)."""
    if compile_ == "false":
        return False, None
    missing = compiler_available(device)
    if missing is None:
        return True, None
    if compile_ == "true":
        raise ConfigError(f"learner.compile=true cannot work on {device}: {missing}; "
                          f"use auto or false")
    return False, f"learner.compile=auto: running eagerly ({missing})"


def resolve_cuda_graph(cuda_graph: str, device: torch.device, part: str = "learner") -> bool:
    """`<part>.cuda_graph` (auto | true | false) -> graph the learner's update or the
    actor's forward? (auto: on CUDA)."""
    if cuda_graph == "true" and device.type != "cuda":
        raise ConfigError(f"{part}.cuda_graph=true needs a CUDA device, the {part} is on "
                          f"{device}: use auto or false")
    return cuda_graph != "false" and device.type == "cuda"


def require_device(key: str, device: str) -> None:
    """Refuse (ConfigError, naming `key`) a CUDA device where torch sees none."""
    if resolve_device(device).type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}={device} but torch sees no CUDA device here: use cpu or auto")
