"""The lock files are current with pyproject.toml, and CI and the image install from them.

In: `requirements.lock` (the [project] dependencies) and `requirements-dev.lock` (the same
plus the test and dev extras), both written by `scripts/lock` (uv pip compile, hashes for
every file), and pyproject.toml. No network: this reads files only.

Guarantees: every declared dependency is pinned in the lock it belongs to, at a version its
specifier allows, with hashes; both locks pin a package shared by them at the same version
(the tests run what the image runs); scripts/test and the Dockerfile install from the locks
with hashes required. When this fails after a change to pyproject.toml, run `./scripts/lock`.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
FIX = "run ./scripts/lock to bring the lock files up to date with pyproject.toml"

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def pins(lock: Path) -> dict[str, Version]:
    """Canonical name -> pinned version; each pin must carry at least one hash."""
    found: dict[str, Version] = {}
    text = lock.read_text(encoding="utf-8")
    for entry in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = _PIN.match(entry)
        if not match:
            continue
        assert "--hash=sha256:" in entry, f"{lock.name}: {match.group(1)} has no hash; {FIX}"
        found[canonicalize_name(match.group(1))] = Version(match.group(2))
    return found


def declared() -> tuple[list[Requirement], list[Requirement]]:
    """([project] dependencies, the test and dev extras without the project itself)."""
    with (ROOT / "pyproject.toml").open("rb") as handle:
        project = tomllib.load(handle)["project"]
    runtime = [Requirement(r) for r in project["dependencies"]]
    extras = [Requirement(r) for group in project["optional-dependencies"].values()
              for r in group]
    own = canonicalize_name(project["name"])
    return runtime, [r for r in extras if canonicalize_name(r.name) != own]


def unpinned(requirements: list[Requirement], locked: dict[str, Version]) -> list[str]:
    problems = []
    for requirement in requirements:
        version = locked.get(canonicalize_name(requirement.name))
        if version is None:
            problems.append(f"{requirement} is not pinned")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement} is pinned at {version}, outside its specifier")
    return problems


def test_every_declared_dependency_is_pinned_at_an_allowed_version() -> None:
    runtime, extras = declared()
    problems = [f"requirements.lock: {p}" for p in unpinned(runtime, pins(RUNTIME_LOCK))]
    problems += [f"requirements-dev.lock: {p}"
                 for p in unpinned(runtime + extras, pins(DEV_LOCK))]
    assert not problems, "\n".join([*problems, FIX])


def test_the_dev_lock_pins_what_the_image_runs() -> None:
    runtime, dev = pins(RUNTIME_LOCK), pins(DEV_LOCK)
    differ = [f"{name}: {version} in requirements.lock, {dev.get(name)} in "
              "requirements-dev.lock" for name, version in runtime.items()
              if dev.get(name) != version]
    assert not differ, "\n".join([*differ, FIX])


def test_the_locks_say_how_they_were_made() -> None:
    for lock in (RUNTIME_LOCK, DEV_LOCK):
        assert "./scripts/lock" in lock.read_text(encoding="utf-8")[:300], lock.name


def test_ci_and_the_image_install_from_the_locks() -> None:
    commands = (ROOT / "scripts" / "test").read_text(encoding="utf-8")
    assert "--require-hashes -r requirements-dev.lock" in commands
    assert "--no-deps -e ." in commands
    assert "-e '.[dev]'" not in commands          # nothing resolved past the lock
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^COPY requirements\.lock ", dockerfile, re.M)
    assert "pip install --require-hashes -r requirements.lock" in dockerfile
    installs = re.findall(r"pip install ([^\n\\]*)", dockerfile)
    assert all("--require-hashes" in line or "--no-deps" in line for line in installs), installs


def test_the_parser_reads_pins_with_markers_and_continuations(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    lock.write_text("# header\nFoo_Bar==1.2 ; python_version >= '3.11' \\\n"
                    "    --hash=sha256:ab\n    # via x\nbaz==0.3 \\\n    --hash=sha256:cd\n")
    assert pins(lock) == {"foo-bar": Version("1.2"), "baz": Version("0.3")}
