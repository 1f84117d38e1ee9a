"""`ticketgw`: the command line. Each sub-module adds one group of commands.

Exit codes (documented in the README):
  0  done
  1  the thing asked for does not exist or an input is invalid (nothing was changed)
  2  usage or configuration error (`check-config` prints every problem)
  75 temporary failure (database unreachable or not migrated): retry later (EX_TEMPFAIL)
"""

from __future__ import annotations

import sys
from typing import Any

import click

from gateway import __version__
from gateway.cli.context import CliContext
from gateway.config.settings import LoggingSettings
from gateway.errors import (
    ConfigError,
    DatabaseNotReady,
    InvalidInput,
    NotFound,
    TemporaryFailure,
)
from gateway.observe.logs import configure_logging

EXIT_INVALID = 1
EXIT_CONFIG = 2
EXIT_TEMPFAIL = 75


class _Group(click.Group):
    """Turns our errors into one clear message and the documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            for problem in exc.problems:
                click.echo(f"config error: {problem}", err=True)
            sys.exit(EXIT_CONFIG)
        except (NotFound, InvalidInput) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_INVALID)
        except (DatabaseNotReady, TemporaryFailure) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_TEMPFAIL)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "-c", "config_path", metavar="PATH", envvar="TICKETGW_CONFIG",
              help="Config file (default: $TICKETGW_CONFIG, else var/ticketgw.toml if "
                   "`--demo` wrote it, else the embedded defaults).")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for SQL).")
@click.version_option(__version__, prog_name="ticketgw")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: int) -> None:
    """ticket-gateway: an email-driven service desk.

    With no config file it runs on embedded defaults: SQLite in ./var/, SMTP on
    127.0.0.1:2525, web on 127.0.0.1:8080, outbound mail into the Maildir ./var/outbox/.
    Try `ticketgw serve --demo`.
    """
    # commands other than `serve` log warnings only (and as text) unless -v asks for more;
    # `serve` then follows [logging] (gateway/cli/serve.py)
    ctx.obj = CliContext(config_path=config_path, echo_sql=verbose > 1, verbose=verbose)
    configure_logging(LoggingSettings(level="WARNING"), level=ctx.obj.log_level)
    ctx.call_on_close(ctx.obj.close)


def _register_commands() -> None:
    from gateway.cli import (
        admin,
        bounces,
        customers,
        digest,
        faq,
        files,
        inbound,
        leases,
        mailbox,
        outbox,
        serve,
        sla,
        tickets,
    )

    for module in (admin, bounces, customers, digest, faq, files, inbound, leases, mailbox,
                   outbox, serve, sla, tickets):
        module.register(cli)


_register_commands()


def main() -> None:
    cli(prog_name="ticketgw")
