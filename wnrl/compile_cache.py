"""TorchInductor's on-disk cache, and what to do when a compiled update fails to load.

A process killed while Inductor writes a kernel library (Ctrl-C during the first
"compiling the learner update") can leave a zero-length or truncated `.so` in the
cache. Every later compile that reuses it then dies with
`ImportError: .../<hash>.main.so: file too short`, or with a bus error (the
process is killed) when the cut file still has its ELF header. So the learner
(`wnrl.learner.Learner.update`) removes broken libraries before its first compile
(`remove_broken_libraries`); if the compiled code still fails to build or load
(`is_compile_failure`) it compiles again in a fresh, private cache directory
(`use_fresh_cache`), and only then runs eagerly, saying why in one line.

A library is *broken* when it is empty, or an ELF file shorter than its own section
header table (which the linker writes last, so any cut file is missing it).
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

ELF_MAGIC = b"\x7fELF"


def inductor_cache_dir() -> Path:
    """The directory Inductor caches kernels in (`TORCHINDUCTOR_CACHE_DIR` or its default)."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return Path(cache_dir())


def is_broken_library(path: Path) -> bool:
    """True for an empty file, or an ELF file cut before the end of its section headers.
    A file that is not ELF (a Mach-O library) counts as broken only when empty."""
    try:
        size = path.stat().st_size
        if size == 0:
            return True
        with path.open("rb") as f:
            head = f.read(64)
    except OSError:
        return False
    if head[:4] != ELF_MAGIC:
        return False
    if len(head) < 52:
        return True
    endian = "<" if head[5] == 1 else ">"
    if head[4] == 2:  # 64-bit: e_shoff at 0x28, e_shentsize, e_shnum at 0x3A
        if len(head) < 64:
            return True
        shoff, = struct.unpack_from(endian + "Q", head, 0x28)
        shentsize, shnum = struct.unpack_from(endian + "HH", head, 0x3A)
    else:  # 32-bit: e_shoff at 0x20, e_shentsize, e_shnum at 0x2E
        shoff, = struct.unpack_from(endian + "I", head, 0x20)
        shentsize, shnum = struct.unpack_from(endian + "HH", head, 0x2E)
    return size < shoff + shentsize * shnum


def remove_broken_libraries(root: Path | None = None) -> list[Path]:
    """Delete every broken `.so` under `root` (default the Inductor cache); returns them."""
    root = inductor_cache_dir() if root is None else root
    removed = []
    for path in sorted(root.rglob("*.so")):
        if is_broken_library(path):
            try:
                path.unlink()
            except OSError:
                continue
            removed.append(path)
    return removed


def use_fresh_cache() -> Path:
    """Point Inductor at a new, empty cache directory for the rest of this process and
    forget what it had loaded; returns the directory."""
    from torch._inductor.utils import clear_caches

    fresh = Path(tempfile.mkdtemp(prefix="wnrl-inductor-"))
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(fresh)
    clear_caches()
    return fresh


def is_compile_failure(exc: BaseException) -> bool:
    """True when `exc` comes from building or loading compiled code (Inductor's backend
    failed, a C++ compile error, a library that does not load), not from the update's
    own maths or a graph break."""
    from torch._dynamo.exc import BackendCompilerFailed

    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, BackendCompilerFailed | ImportError | OSError) \
                or type(e).__name__ == "CppCompileError":
            return True
        e = e.__cause__ or e.__context__
    return False


def failure_line(exc: BaseException) -> str:
    """The innermost cause of `exc` as one line, e.g. `ImportError: ...so: file too short`."""
    e = exc
    while (e.__cause__ or e.__context__) is not None:
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def first_compile(run: Callable[[], T], recompile: Callable[[bool], None],
                  events: list[str]) -> T:
    """`run()` a first compiled call so that no broken cache ends it: broken libraries are
    removed first; if the compiled code fails to build or load, `recompile(False)` (undo
    what `run` changed, compile afresh) and run again with a fresh cache; if that fails
    too, `recompile(True)` (undo, go eager) and run eagerly. Each step taken is one line
    appended to `events`. Errors that are not compile failures propagate."""
    removed = remove_broken_libraries()
    if removed:
        events.append(f"removed {len(removed)} broken kernel libraries (a compile cut short) "
                      f"from the TorchInductor cache {inductor_cache_dir()}")
    try:
        return run()
    except Exception as exc:
        if not is_compile_failure(exc):
            raise
        first = failure_line(exc)
    fresh = use_fresh_cache()
    recompile(False)
    try:
        out = run()
    except Exception as exc:
        if not is_compile_failure(exc):
            raise
    else:
        events.append(f"the compiled learner update failed ({first}): compiled again with a "
                      f"fresh TorchInductor cache {fresh}")
        return out
    recompile(True)
    events.append(f"the compiled learner update failed ({first}), with a fresh cache too: "
                  "running eagerly")
    return run()
