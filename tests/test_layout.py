"""The shape of the code: no import circles, and every package imports only from its own floor or below.

Every import counts, at the top of a module, inside a function or under TYPE_CHECKING: a circle
that only a lazy import hides is still a circle a reader has to untangle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGES = ("distill", "students", "eval")

# The floors, lowest first: a module may import from its own floor and the floors below it, never above.
# The lower floor reports what it measured (a return value, a JSON file); the higher floor reads it.
FLOORS = [
    ["distill.errors", "distill.io", "distill.runfolder"],
    ["distill.device", "distill.distributed", "distill.runtime", "distill.hub"],
    ["distill.teacher"],
    ["distill.data", "distill.cards"],
    ["students"],
    ["distill.training"],
    ["distill.export"],
    ["distill.heads"],
    ["eval"],
    ["distill.api", "distill.cli", "distill"],
    ["eval.experiments"],
]


def project_modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the project's packages (a package is its `__init__`)."""
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imports_of(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The project modules `path` imports: `from a.b import c` is a.b.c when that is a module, else a.b."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` of a name inside a module: its module
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, name, modules) for name, path in modules.items()}


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def floor_of(module: str) -> int:
    """The floor of the longest prefix that names `module` (eval.experiments.bench: eval.experiments)."""
    best, floor = -1, -1
    for number, prefixes in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, floor = len(prefix), number
    return floor


def test_the_project_has_no_import_circle() -> None:
    circle = find_circle(import_graph())
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_the_circle_finder_finds_a_circle_and_a_lazy_import_counts(tmp_path: Path) -> None:
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from x.y import Z\ndef f():\n    import x.w\n"
    )
    assert imports_of(module, "m", {"x.y": module, "x.w": module, "m": module}) == {"x.y", "x.w"}


def test_every_module_imports_only_from_its_floor_or_below() -> None:
    graph = import_graph()
    unplaced = sorted(m for m in graph if floor_of(m) < 0)
    assert not unplaced, f"modules on no floor of tests/test_layout.py: {unplaced}"
    upward = [f"{m} (floor {floor_of(m)}) imports {t} (floor {floor_of(t)})"
              for m, targets in graph.items() for t in targets if floor_of(t) > floor_of(m)]  # fmt: skip
    assert not upward, "imports that go up a floor:\n" + "\n".join(sorted(upward))


def test_students_never_import_the_trainer() -> None:
    graph = import_graph()
    wrong = {m: sorted(t for t in ts if t.startswith("distill.training")) for m, ts in graph.items()}
    assert not {m: t for m, t in wrong.items() if m.startswith("students") and t}


def test_the_front_door_is_there_and_the_runtime_still_needs_no_torch() -> None:
    """`from distill import distill` works; the package's lazy front door never makes the runtime load torch."""
    code = ("import sys, distill.runtime; assert 'torch' not in sys.modules, 'torch'; "
            "from distill import distill, Distilled; assert callable(distill)")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
