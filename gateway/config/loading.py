"""Loading the configuration: one TOML file (or none) in, validated frozen `Settings` out.

In: a path (`--config`, else `TICKETGW_CONFIG`, else the file `ticketgw.toml` in the default
data directory if there is one, which `--demo` writes: `config_path_from_env`) or none; with
none, the embedded defaults of `settings.py`. Optionally an overlay (the demo's) that only fills
in (`merge_config`). Then the environment: `TICKETGW_<SECTION>_<KEY>` overrides one scalar
key (`environment.apply_environment`).

Out: `Settings` (`load_settings`, `settings_from_mapping` for a mapping already parsed),
whose `source` names the file(s), whose `base_dir` is the file's directory (the current
directory when there is none) and whose `from_environment` lists the overridden keys.
`environment_problems` names the secrets whose environment variables are not set.

Guarantees: `load_settings` either returns valid settings or raises `ConfigError` listing
*every* problem as "FILE: key: problem" ("VARIABLE: key: problem" for a value from the
environment): the per-key ones pydantic finds (unknown keys included) together with the
checks between sections (`cross_references`). Secrets are
never read from the file: the file names environment variables and only those are read.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.config.cross_references import cross_reference_problems
from gateway.config.environment import apply_environment, override_variable
from gateway.config.settings import Settings, StorageSettings
from gateway.errors import ConfigError

CONFIG_ENV = "TICKETGW_CONFIG"
DATA_DIR_CONFIG = "ticketgw.toml"    # the config file the lookup finds in the data directory


def _format_location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + ("from" if part == "from_" else str(part))
    return text or "(top level)"


def _format_errors(source: str, error: ValidationError,
                   variables: Mapping[str, str]) -> list[str]:
    """One "SOURCE: key: problem" per error; SOURCE is the variable for a key from the
    environment (`variables`: key -> variable), else the file."""
    problems = []
    for item in error.errors():
        loc = tuple(p for p in item["loc"] if p not in ("function-after", "function-before"))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see `ticketgw init` for every key)"
        elif item["type"] == "missing":
            message = "is required"
        where = _format_location(loc)
        problems.append(f"{variables.get(where, source)}: {where}: {message}")
    return problems


_IDENTITY_KEYS = ("id", "email", "name")   # what names an entry of [[queue]], [[staff]], ...


def _identity(entry: Any) -> tuple[str, Any] | None:
    if isinstance(entry, dict):
        for key in _IDENTITY_KEYS:
            if key in entry:
                return key, entry[key]
    return None


def merge_config(user: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Add `overlay` to the user's config; the overlay only fills in: tables are merged, a
    value the user set is kept, and list entries are appended unless the user has the same
    entry or one with the same id (or email, or name)."""
    merged = dict(user)
    for key, value in overlay.items():
        if key not in merged:
            merged[key] = value
        elif isinstance(value, list) and isinstance(merged[key], list):
            taken = {_identity(e) for e in merged[key]} - {None}
            merged[key] = [*merged[key], *(e for e in value if e not in merged[key] and (
                _identity(e) not in taken or _identity(e) is None))]
        elif isinstance(value, dict) and isinstance(merged[key], dict):
            merged[key] = merge_config(merged[key], value)
    return merged


def read_toml(path: Path) -> dict[str, Any]:
    """Parse one TOML file; an unreadable or invalid file is a `ConfigError` naming it."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found (run `ticketgw init` to write one)"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


def settings_from_mapping(data: Mapping[str, Any], source: str, base_dir: Path,
                          from_environment: tuple[tuple[str, str], ...] = ()) -> Settings:
    """Validate a parsed config; raises `ConfigError` with every problem found.
    `from_environment`: the (`section.key`, variable) pairs already written into `data`."""
    for forbidden in ("source", "base_dir", "from_environment"):
        if forbidden in data:
            raise ConfigError([f"{source}: {forbidden}: unknown key"])
    problems = [f"{source}: {p}" for p in cross_reference_problems(data)]
    try:
        settings = Settings.model_validate({**data, "source": source, "base_dir": str(base_dir),
                                            "from_environment": from_environment})
    except ValidationError as exc:
        problems = _format_errors(source, exc, dict(from_environment)) + problems
    if problems:
        raise ConfigError(problems)
    return settings


def data_dir_config(environ: Mapping[str, str] | None = None) -> Path:
    """Where the config of the default data directory lies (it may not exist):
    `DATA_DIR/ticketgw.toml`, DATA_DIR being the embedded default (`var`) or
    `TICKETGW_STORAGE_DATA_DIR`, relative to the current directory. `--demo` writes it."""
    environ = os.environ if environ is None else environ
    data_dir = Path(environ.get(override_variable("storage", "data_dir"))
                    or StorageSettings().data_dir)
    return (data_dir if data_dir.is_absolute() else Path.cwd() / data_dir) / DATA_DIR_CONFIG


def config_path_from_env(explicit: str | None) -> Path | None:
    """`--config` wins, then `TICKETGW_CONFIG`, then `data_dir_config()` if that file exists;
    None means the embedded defaults."""
    value = explicit or os.environ.get(CONFIG_ENV)
    if value:
        return Path(value)
    found = data_dir_config()
    return found if found.is_file() else None


def load_settings(path: Path | None, overlay: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the config file (or the defaults), with an optional overlay (demo),
    then the overrides from `environ` (default: the process environment)."""
    if path is None:
        data: dict[str, Any] = {}
        source, base_dir = "<embedded defaults>", Path.cwd()
    else:
        data = read_toml(path)
        source, base_dir = str(path), path.resolve().parent
    if overlay:
        data = merge_config(data, overlay)
        source += " + demo"
    data, from_environment = apply_environment(data, os.environ if environ is None else environ)
    return settings_from_mapping(data, source, base_dir, from_environment)


def environment_problems(settings: Settings) -> list[str]:
    """Secrets named in the config whose environment variables are not set."""
    wanted = [("database.password_env", settings.database.password_env),
              ("outbound.smtp_password_env", settings.outbound.smtp_password_env),
              ("web.secret_key_env", settings.web.secret_key_env)]
    wanted += [(f"mailbox[{i}].password_env", m.password_env)
               for i, m in enumerate(settings.mailbox)]
    return [f"{settings.source}: {key}: environment variable {name} is not set"
            for key, name in wanted if name and not os.environ.get(name)]


def config_warnings(settings: Settings) -> list[str]:
    """What is valid but unsafe: `check-config` prints it and still succeeds."""
    warnings = []
    if not settings.inbound.authserv_id:
        warnings.append(
            f"{settings.source}: inbound.authserv_id is empty: staff answers and #commands "
            "are believed from any mail to a ticket's staff reply address with a staff From, "
            "without a DMARC/DKIM check, and customer mail that fails DMARC is appended as "
            "the customer; set it to your border MTA's authserv-id (docs/admin.md 5.2)")
    return warnings

