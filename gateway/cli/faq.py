"""FAQ commands: import (Markdown files with front matter, all or nothing), list, export."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import click

from gateway.cli.context import CliContext, pass_context
from gateway.cli.output import echo_json, echo_table, json_option
from gateway.errors import InvalidInput
from gateway.faq.queries import export_sources, list_articles
from gateway.faq.source import export_path, faq_files, read_sources, render_file
from gateway.faq.store import save_articles

_T = TypeVar("_T")
PROGRESS_FROM = 20      # files; fewer are done before a bar would show


def register(cli: click.Group) -> None:
    cli.add_command(faq)


@click.group()
def faq() -> None:
    """The FAQ: articles in Markdown with front matter, by category."""


def _progress(label: str, total: int) -> object:
    def wrap(items: Iterable[_T]) -> Iterator[_T]:
        if total < PROGRESS_FROM:
            yield from items
            return
        with click.progressbar(items, length=total, label=label, file=sys.stderr) as bar:
            yield from bar
    return wrap


@faq.command("import")
@click.argument("path", metavar="DIR_OR_FILE",
                type=click.Path(exists=True, path_type=Path))
@pass_context
def faq_import(context: CliContext, path: Path) -> None:
    """Import FAQ articles: one Markdown file, or every *.md file under a folder.

    Each file starts with front matter between '---' lines: title and category (a path such
    as "Arbeitsplatz/Drucker") are required; keywords (a list), language (de, en; default
    de), visibility (public, customers; default public) and slug (default: the file name)
    are optional. Every file is checked first; if any is bad, each bad file is listed and
    nothing is imported. Importing the same files again changes nothing; a changed file
    updates its article (found by its slug). Articles missing from the files are kept.
    """
    files = faq_files(path)
    sources = read_sources(files, progress=_progress("checking", len(files)))  # type: ignore[arg-type]
    app = context.app()
    with app.db.write() as session:
        report = save_articles(session, sources,
                               progress=_progress("importing", len(sources)))  # type: ignore[arg-type]
    click.echo(f"imported {len(sources)} FAQ articles from {path}: {report.added} added, "
               f"{report.updated} updated, {report.unchanged} unchanged")


@faq.command("list")
@json_option
@pass_context
def faq_list(context: CliContext, as_json: bool) -> None:
    """List FAQ articles by category."""
    app = context.app()
    with app.db.read() as session:
        rows = list_articles(session)
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["slug", "language", "visibility", "helpful", "not_helpful",
                          "category", "title"])


@faq.command("export")
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
@pass_context
def faq_export(context: CliContext, directory: Path, force: bool) -> None:
    """Write every article as DIR/<category>/<slug>.md, the format `faq import` reads."""
    app = context.app()
    with app.db.read() as session:
        sources = export_sources(session)
    targets = [(export_path(directory, s), s) for s in sources]
    existing = [str(t) for t, _ in targets if t.exists()]
    if existing and not force:
        raise InvalidInput(f"{len(existing)} file(s) exist, e.g. {existing[0]}; "
                           "nothing written (use --force to overwrite)")
    for target, source in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render_file(source), encoding="utf-8")
    click.echo(f"exported {len(targets)} FAQ articles to {directory}")
