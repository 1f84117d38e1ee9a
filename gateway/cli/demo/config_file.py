"""The demo's config file, so that every command sees what `--demo` set up.

In: the path the config lookup finds with no `--config` and no `$TICKETGW_CONFIG`
(`loading.data_dir_config()`: `var/ticketgw.toml`).

Out: `write_demo_config` writes the embedded defaults' paths (made relative to the file's
directory, since relative paths in a config are relative to its directory) followed by
`demo.toml`, under a header saying who wrote it. Every later command run in that directory
without `--config` then reads it: `ingest` routes to the demo addresses, `template list` and
status mails see the demo queues, and `serve` or `db upgrade` keep them active.

Guarantees: the file is complete or absent (written to a temporary file, then renamed); it
is the same bytes every time for the same directory, so writing it again changes nothing.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from gateway.config.settings import DatabaseSettings, OutboundSettings

HEADER = """\
# Written by `ticketgw serve --demo` / `ticketgw demo`: the embedded defaults plus the demo's
# queues, staff and templates. Every ticketgw command run in the directory above this one
# without --config (or $TICKETGW_CONFIG) reads this file (`ticketgw check-config` says so).
# Edit it freely, or delete it to go back to the embedded defaults.

"""


def demo_config_text(path: Path) -> str:
    """The file's content for `path`: the default locations relative to its directory."""
    directory, cwd = path.parent.resolve(), Path.cwd()

    def relative(default: str) -> str:
        return Path(os.path.relpath(cwd / default, directory)).as_posix()

    database = DatabaseSettings().url.removeprefix("sqlite:///")
    outbox = OutboundSettings().transport.removeprefix("maildir:")
    demo = resources.files("gateway.cli.demo").joinpath("demo.toml").read_text(encoding="utf-8")
    return (f'{HEADER}[storage]\ndata_dir = "."\n\n'
            f'[database]\nurl = "sqlite:///{relative(database)}"\n\n'
            f'[outbound]\ntransport = "maildir:{relative(outbox)}"\n\n{demo}')


def write_demo_config(path: Path) -> None:
    """Write (or rewrite) the demo config file at `path`, creating its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(demo_config_text(path), encoding="utf-8")
    partial.replace(path)
