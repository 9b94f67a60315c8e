"""The import graph: no circles between wnrl's modules, and the core stays light.

The graph is read from the source: every module-level `import wnrl...` / `from wnrl...
import` (not those inside functions). A circle of imports that run at import time would
make some import order fail; a circle through `if TYPE_CHECKING:` imports runs, but it
means two modules depend on each other, so the layering is checked with those too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"wnrl": ROOT / "wnrl", "wnrl.agents": ROOT / "agents"}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg, base in PACKAGES.items():
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([pkg, *parts])] = path
    return out


def _is_type_checking(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path, modules: dict[str, Path], type_checking: bool = False) -> set[str]:
    """wnrl modules that `path` imports when it is imported (and, with `type_checking`,
    under `if TYPE_CHECKING:`)."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if _is_type_checking(node) and not type_checking:
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.module in modules:
                for a in node.names:  # `from pkg import submodule` imports the submodule
                    sub = f"{node.module}.{a.name}"
                    found.add(sub if sub in modules else node.module)
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                for h in getattr(node, "handlers", []):
                    visit(h.body)
                visit(node.orelse)
    visit(ast.parse(path.read_text()).body)
    return found


@pytest.mark.parametrize("type_checking", [False, True], ids=["runtime", "with-type-only"])
def test_no_import_circles(type_checking: bool) -> None:
    modules = _modules()
    graph = {m: _imports(p, modules, type_checking) - {m} for m, p in modules.items()}
    assert "wnrl.training.trainer" in graph and graph["wnrl.training.loops"]
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def dfs(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if n not in state:
                dfs(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            dfs(m)


def test_core_imports_no_research_or_plotting_libraries() -> None:
    code = ("import sys, wnrl, wnrl.training, wnrl.replay, wnrl.evaluate, wnrl.envs; "
            "print(sorted(m for m in ('pandas', 'matplotlib', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
