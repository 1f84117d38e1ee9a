"""The tree's promise, checked: imports run one way and nothing imports in a circle.

Entry points (`cli/`, `web/`, `service.py`, `child_processes.py`, `jobs.py`,
`__main__.py`) may import anything;
`app.py` (the composition root) is imported only by them; no stage imports an entry point;
and the module-level imports of `gateway` form no cycle (imports inside functions and under
`TYPE_CHECKING` are left out: they do not run at import time).
"""

from __future__ import annotations

import ast
from pathlib import Path

GATEWAY = Path(__file__).resolve().parent.parent / "gateway"
ENTRY_POINTS = ("gateway.cli", "gateway.web", "gateway.service", "gateway.child_processes",
                "gateway.jobs", "gateway.__main__")
ROOT = "gateway.app"


def modules() -> dict[str, Path]:
    found = {}
    for path in GATEWAY.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(GATEWAY.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def top_level_imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The gateway modules a module imports when it is imported."""
    imported = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        imported |= {name for name in names if name in known}
    return imported


def is_entry_point(module: str) -> bool:
    return any(module == e or module.startswith(e + ".") for e in ENTRY_POINTS)


def test_only_entry_points_import_the_composition_root() -> None:
    known = modules()
    offenders = sorted(m for m, path in known.items() if not is_entry_point(m) and m != ROOT
                       and ROOT in top_level_imports(path, known))
    assert offenders == []


def test_no_stage_imports_an_entry_point() -> None:
    known = modules()
    offenders = sorted(f"{m} -> {target}" for m, path in known.items() if not is_entry_point(m)
                       for target in top_level_imports(path, known) if is_entry_point(target))
    assert offenders == []


def test_module_imports_form_no_cycle() -> None:
    known = modules()
    graph = {m: top_level_imports(p, known) - {m} for m, p in known.items()}
    # a package's own __init__ importing its modules is not a cycle with them
    graph = {m: {t for t in targets if not t.startswith(m + ".")} for m, targets in graph.items()}
    state: dict[str, int] = {}          # 1 = on the current path, 2 = done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_checks_see_the_modules() -> None:
    known = modules()
    assert {"gateway.app", "gateway.pipeline", "gateway.mail.parse",
            "gateway.tickets.numbers", "gateway.outbound.dkim"} <= set(known)
    assert ROOT in top_level_imports(known["gateway.cli.context"], known)
