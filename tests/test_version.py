"""One version everywhere: `ticketgw --version`, the installed package's metadata and the web
app (what /healthz and /metrics report) all say what `gateway.__version__` says."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import gateway


def test_the_cli_and_the_package_metadata_agree() -> None:
    printed = subprocess.run([sys.executable, "-m", "gateway", "--version"], check=True,
                             capture_output=True, text=True).stdout
    assert printed.strip() == f"ticketgw, version {gateway.__version__}"
    assert importlib.metadata.version("ticket-gateway") == gateway.__version__
