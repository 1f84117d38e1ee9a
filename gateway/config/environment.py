"""Overrides from the environment: `TICKETGW_<SECTION>_<KEY>` replaces one scalar key of the
file, so several instances can share one config file and differ only in their environment.

In: the config as parsed from the file (a mapping) and the environment (a mapping).

Out: `apply_environment` returns the config with the overrides written in, and the keys it
overrode as (`section.key`, variable) pairs; `override_variable` says which variable a key
would be read from.

The rule for which variables are overrides: a name `TICKETGW_<SECTION>_...` whose section is
one of `OVERRIDABLE_SECTIONS` (the single-table sections). Every other `TICKETGW_*` name is
left alone (`TICKETGW_CONFIG`, `TICKETGW_DB_PASSWORD`, `TICKETGW_DB_UPGRADE`, ...), and so
are `TICKETGW_DATABASE_URL` (read as before by `Settings.database_url`, unvalidated) and
every variable a `*_env` key names, in the file or by its own override (a secret such as
`TICKETGW_WEB_SECRET_KEY`).

Guarantees: values are read as the TOML value would be: `true`/`false` for booleans, a
whole number for integers, a number for floats, and the text itself for everything else
(sizes such as `50MB`, listen addresses, names); the key's own checks then run as for the
file. A variable that names no scalar key of its section, or whose value is not of the
key's type, is a `ConfigError` naming the variable: a typo never passes silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, get_origin

from pydantic import BaseModel, BeforeValidator
from pydantic.fields import FieldInfo

from gateway.config.settings import DATABASE_URL_ENV, Settings
from gateway.errors import ConfigError

PREFIX = "TICKETGW_"
OVERRIDABLE_SECTIONS = ("database", "storage", "tickets", "inbound", "outbound", "web",
                        "files", "faq", "logging", "digest")
_INTEGER = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _section_model(section: str) -> type[BaseModel]:
    annotation = Settings.model_fields[section].annotation
    assert isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return annotation


def _is_scalar(field: FieldInfo) -> bool:
    annotation = field.annotation
    if get_origin(annotation) in (list, dict, tuple):
        return False
    return not (isinstance(annotation, type) and issubclass(annotation, BaseModel))


def scalar_keys(section: str) -> dict[str, FieldInfo]:
    """The keys of `[section]` (as written in the file) that the environment can set."""
    return {field.alias or name: field
            for name, field in _section_model(section).model_fields.items() if _is_scalar(field)}


def override_variable(section: str, key: str) -> str:
    """`("web", "listen")` -> `TICKETGW_WEB_LISTEN`."""
    return f"{PREFIX}{section.upper()}_{key.upper()}"


def _named_secrets(data: Mapping[str, Any]) -> Iterator[str]:
    """The variables the config names in `*_env` keys, at any depth."""
    for key, value in data.items():
        if key.endswith("_env") and isinstance(value, str) and value:
            yield value
        elif isinstance(value, Mapping):
            yield from _named_secrets(value)
        elif isinstance(value, list):
            for entry in value:
                if isinstance(entry, Mapping):
                    yield from _named_secrets(entry)


def _parse(variable: str, where: str, field: FieldInfo, text: str) -> Any:
    """The variable's text as the TOML value of this key's type would be."""
    annotation = field.annotation
    custom = any(isinstance(m, BeforeValidator) for m in field.metadata)
    if annotation is bool:
        if text not in ("true", "false"):
            raise ConfigError([f"{variable}: {where}: {text!r} is not true or false"])
        return text == "true"
    if annotation is int and not custom:
        if not _INTEGER.fullmatch(text.strip()):
            raise ConfigError([f"{variable}: {where}: {text!r} is not a whole number"])
        return int(text)
    if annotation is float:
        if not _FLOAT.fullmatch(text.strip()):
            raise ConfigError([f"{variable}: {where}: {text!r} is not a number"])
        return float(text)
    return text   # strings, choices, and sizes ("50MB") which their own check reads


def apply_environment(data: Mapping[str, Any], environ: Mapping[str, str]
                      ) -> tuple[dict[str, Any], tuple[tuple[str, str], ...]]:
    """The config with every `TICKETGW_<SECTION>_<KEY>` of `environ` written in, and the
    (`section.key`, variable) pairs overridden; raises `ConfigError` with every bad one."""
    ignored = {DATABASE_URL_ENV, *_named_secrets(data)}
    ignored |= {value for name, value in environ.items()   # `*_env` keys set from here
                if name.startswith(PREFIX) and name.endswith("_ENV")}
    overridden: list[tuple[str, str]] = []
    if environ.get(DATABASE_URL_ENV):   # read where it is used, as before: not written in
        overridden.append(("database.url", DATABASE_URL_ENV))
    merged = {key: dict(value) if isinstance(value, Mapping) else value
              for key, value in data.items()}
    problems: list[str] = []
    for variable in sorted(environ):
        if variable in ignored:
            continue
        for section in OVERRIDABLE_SECTIONS:
            section_prefix = f"{PREFIX}{section.upper()}_"
            if variable.startswith(section_prefix):
                break
        else:
            continue
        key = variable[len(section_prefix):].lower()
        keys = scalar_keys(section)
        if key not in keys:
            problems.append(
                f"{variable}: environment variable names no key of [{section}] that can be "
                f"set from the environment (these can: {', '.join(sorted(keys))})")
            continue
        try:
            value = _parse(variable, f"{section}.{key}", keys[key], environ[variable])
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        table = merged.setdefault(section, {})
        if not isinstance(table, dict):
            continue   # not a table in the file: its own validation reports that
        table[key] = value
        overridden.append((f"{section}.{key}", variable))
    if problems:
        raise ConfigError(problems)
    return merged, tuple(overridden)
