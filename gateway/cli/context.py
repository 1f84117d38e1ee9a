"""What every command shares: the settings and the app, built on first use and closed once."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from gateway.app import App, build_app
from gateway.config.loading import config_path_from_env, load_settings
from gateway.config.settings import Settings


@dataclass
class CliContext:
    config_path: str | None
    echo_sql: bool = False
    verbose: int = 0                            # -v: 1, -vv: 2
    overlay: dict[str, Any] | None = None       # the demo's queues and templates
    _settings: Settings | None = field(default=None, repr=False)
    _app: App | None = field(default=None, repr=False)

    @property
    def config_file(self) -> Path | None:
        return config_path_from_env(self.config_path)

    @property
    def log_level(self) -> int | None:
        """The log level `-v` (INFO) or `-vv` (DEBUG) asks for; None without either."""
        return logging.DEBUG if self.verbose > 1 else logging.INFO if self.verbose else None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_file, self.overlay)
        return self._settings

    def app(self, *, require_schema: bool = True) -> App:
        """The app; by default insisting that the database is reachable and migrated."""
        if self._app is None:
            self._app = build_app(self.settings)
            if self.echo_sql:
                self._app.db.engine.echo = True
        if require_schema:
            self._app.db.require_current_schema()
        return self._app

    def close(self) -> None:
        if self._app is not None:
            self._app.close()


pass_context = click.make_pass_decorator(CliContext)
