"""What the browser tests share: Debian's Chromium driven by Playwright (never `playwright
install`), a German page, and screenshots (copied to $TGW_SCREENSHOTS_DIR when set, which
is how docs/screenshots is renewed). Without Chromium the tests fail; they never skip."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# as root, and without the network calls this machine refuses
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@contextmanager
def german_page(tmp_path: Path, prefix: str, *, numbered: bool = True,
                **context_options: Any) -> Iterator[tuple[Any, Callable[[str], None]]]:
    """A page of a fresh German-speaking Chromium, and `shot(name)` to take a screenshot
    named `<prefix>-<NN>-<name>.png` (`<prefix>-<name>.png` unless `numbered`).
    `context_options` go to Playwright's `new_context` and may replace the defaults (e.g.
    `viewport` for a phone)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (browser tests never "
                    "skip)", pytrace=False)
    from playwright.sync_api import sync_playwright

    shots = tmp_path / "screenshots"
    shots.mkdir(exist_ok=True)
    publish = os.environ.get("TGW_SCREENSHOTS_DIR")
    counter = iter(range(1, 100))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        options = {"locale": "de-DE", "viewport": {"width": 1100, "height": 760},
                   "extra_http_headers": {"Accept-Language": "de-DE,de"}, **context_options}
        context = browser.new_context(**options)
        page = context.new_page()

        def shot(name: str) -> None:
            label = f"{next(counter):02d}-{name}" if numbered else name
            path = shots / f"{prefix}-{label}.png"
            page.screenshot(path=str(path), full_page=True)
            if publish:
                Path(publish).mkdir(parents=True, exist_ok=True)
                shutil.copy(path, Path(publish) / path.name)

        try:
            yield page, shot
        finally:
            browser.close()
