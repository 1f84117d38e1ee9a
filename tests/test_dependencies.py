"""Every third-party module the gateway imports is declared in pyproject.toml.

In: the AST of every module under `gateway/` (imports anywhere in a module, also inside
functions and under `TYPE_CHECKING`, since a packager installs for all of them) and
`[project] dependencies`. Import names are mapped to distribution names with
`importlib.metadata.packages_distributions()` (`yaml` -> PyYAML, `Stemmer` -> PyStemmer).

Guarantees: a module imported directly but only present because another dependency pulls it
in (starlette through fastapi, markupsafe through jinja2) fails here; so does a 0.x
dependency without an upper bound (its next minor release may break the API).
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> dict[str, str]:
    """Normalized distribution name -> its requirement string, from [project] dependencies."""
    with (ROOT / "pyproject.toml").open("rb") as handle:
        requirements = tomllib.load(handle)["project"]["dependencies"]
    found = {}
    for requirement in requirements:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        assert match, requirement
        found[_normalize(match.group(1))] = requirement
    return found


def imported_top_level() -> dict[str, str]:
    """Top-level module name -> the first gateway file that imports it (absolute imports)."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def third_party() -> dict[str, str]:
    return {module: where for module, where in imported_top_level().items()
            if module not in sys.stdlib_module_names and module not in ("gateway", "__future__")}


def test_every_directly_imported_module_is_declared() -> None:
    distributions = importlib.metadata.packages_distributions()
    wanted = declared()
    missing = []
    for module, where in sorted(third_party().items()):
        names = distributions.get(module)
        if not names:
            missing.append(f"{module} (imported in {where}) is not installed: which "
                           "distribution provides it?")
        elif not any(_normalize(name) in wanted for name in names):
            missing.append(f"{module} (imported in {where}) comes from {', '.join(names)}, "
                           "which pyproject.toml [project] dependencies does not declare")
    assert not missing, "\n".join(missing)


def test_zero_x_dependencies_have_an_upper_bound() -> None:
    unbounded = [requirement for requirement in declared().values()
                 if re.search(r">=\s*0\.", requirement) and "<" not in requirement]
    assert not unbounded, f"0.x dependencies without an upper bound: {unbounded}"


def test_the_scan_sees_the_imports_it_is_meant_to_check() -> None:
    """The checker itself: it finds imports inside functions and names known modules."""
    modules = third_party()
    assert {"starlette", "sqlalchemy", "yaml", "Stemmer"} <= modules.keys()
    assert "os" not in modules and "gateway" not in modules
