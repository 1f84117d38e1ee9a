"""The repository stands alone: no tracked file may lean on something beside the clone.

A stranger's `git clone` holds only what is tracked, so a reference to a folder beside the
checkout (the sibling "shared" folder our machines have) or to a build machine's absolute
path (under the work, root, home or Users folders) works on our machines and fails on
theirs. The test corpus lives in `tests/corpus/`, the contributor docs in
`docs/contributing/`. The corpus's own mails are third-party data and may name any path
(an Exim bounce names a user's home); they are not searched. `.ci/run` also runs the whole
suite from a fresh clone in an empty temporary folder, which proves the same from outside.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Built from pieces so that this file does not match itself.
_SIBLING = re.escape("..") + r"/" + "shared" + r"\b"
_MACHINE = r"(?<![\w.~-])/(?:" + "|".join(("work", "root", "home/[a-z_][\\w-]*",
                                            "Users/[A-Za-z][\\w-]*")) + r")/"
FORBIDDEN = re.compile(f"{_SIBLING}|{_MACHINE}")


THIRD_PARTY_DATA = ("tests/corpus/",)


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                            check=True).stdout.split(b"\0")
    names = [name.decode() for name in listed if name]
    return [REPO / name for name in names
            if not name.startswith(THIRD_PARTY_DATA) or name.endswith("SOURCES.md")]


def test_no_tracked_file_refers_outside_the_clone() -> None:
    offenders = []
    for path in tracked_text_files():
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:          # binary (screenshots): nothing to read
            continue
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if FORBIDDEN.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:120]}")
    assert not offenders, "tracked files refer outside the repository:\n" + "\n".join(offenders)


def test_the_pattern_catches_what_it_should() -> None:
    sibling = ".." + "/shared/corpus/x.eml"
    for bad in (sibling, "see /" + "work/shared/docs", "/" + "root/.cache/x", "/" + "home/anna/x"):
        assert FORBIDDEN.search(bad), bad
    for good in ("tests/corpus/x.eml", "/tmp/x", "/usr/bin/chromium", "/etc/postfix/main.cf",
                 "a shared directory", "https://example.org/work/x", "docs/work/x"):
        assert not FORBIDDEN.search(good), good
