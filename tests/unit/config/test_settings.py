"""The config file: defaults, validation messages (file, key, problem), overlays."""

from __future__ import annotations

import re
import tomllib
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from gateway.config.loading import (
    environment_problems,
    load_settings,
    merge_config,
    settings_from_mapping,
)
from gateway.config.settings import Settings, host_port
from gateway.errors import ConfigError

SAMPLE = Path(__file__).resolve().parents[3] / "gateway" / "config" / "sample_config.toml"


def problems_of(tmp_path: Path, toml: str) -> list[str]:
    path = tmp_path / "ticketgw.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return caught.value.problems


def test_embedded_defaults_are_the_contract(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TICKETGW_DATABASE_URL", raising=False)
    settings = load_settings(None)
    assert settings.database_url() == f"sqlite:///{tmp_path}/var/gateway.db"
    assert settings.inbound.smtp == "127.0.0.1:2525"
    assert settings.web.listen == "127.0.0.1:8080"
    assert settings.outbound.transport == "maildir:var/outbox"
    assert settings.attachments_dir == tmp_path / "var" / "attachments"


def test_sample_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(SAMPLE)
    assert [t.id for t in settings.template] == ["incident"]
    assert settings.template[0].guide[0].label["de"] == "Betroffenes System"
    assert settings.inbound.max_message_size == 50 * 1024 * 1024


_SAMPLE_SECTION = re.compile(r"^#?\s*\[\[?([a-z_]+)\]\]?")
_SAMPLE_KEY = re.compile(r"^#?\s*([a-z_0-9]+)\s*=")
# keys whose sample line shows an example instead of the default, on purpose
_SAMPLE_EXAMPLES = {("inbound", "domains"), ("outbound", "from"), ("faq", "address")}


def _sample_keys() -> dict[str, set[str]]:
    """Every `key =` line of the sample, commented out or not, by its section."""
    keys: dict[str, set[str]] = {}
    section = ""
    for line in SAMPLE.read_text(encoding="utf-8").splitlines():
        if found := _SAMPLE_SECTION.match(line):
            section = found[1]
            keys.setdefault(section, set())
        elif section and (found := _SAMPLE_KEY.match(line)):
            keys[section].add(found[1])
    return keys


def _section_models() -> dict[str, type[BaseModel]]:
    models: dict[str, type[BaseModel]] = {}
    for name, field in Settings.model_fields.items():
        kind = field.annotation
        kind = typing.get_args(kind)[0] if typing.get_origin(kind) is list else kind
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            models[name] = kind
    return models


def test_the_sample_config_shows_every_key_of_every_section() -> None:
    """Issue #17 item 4: `ticketgw init` promises every key; a new setting without a line
    in the sample fails here. Keys of a [table] are shown with their default."""
    sample = _sample_keys()
    models = _section_models()
    assert set(sample) == set(models)
    for section, model in models.items():
        fields = {f.alias or name for name, f in model.model_fields.items()}
        assert sample[section] == fields, section
    written = tomllib.loads(SAMPLE.read_text(encoding="utf-8"))
    for section, model in models.items():
        if not isinstance(written.get(section), dict):
            continue   # [[arrays]]: example entries
        default = model()
        for key, value in written[section].items():
            if (section, key) in _SAMPLE_EXAMPLES:
                continue
            name = next(n for n, f in model.model_fields.items() if (f.alias or n) == key)
            assert getattr(model(**{key: value}), name) == getattr(default, name), (
                f"[{section}] {key}")


def test_every_problem_is_reported_with_file_and_key(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, """
[database]
url = "mysql://x"

[inbound]
smtp = "localhost"
max_message_size = "lots"
max_recipents = 3

[[queue]]
id = "Service Desk"
from = "not an address"

[[template]]
id = "incident"
group = "incidents"
name = { de = "Störung" }
queue = "nowhere"
priority = 9
""")
    text = "\n".join(problems)
    path = str(tmp_path / "ticketgw.toml")
    assert all(p.startswith(path + ": ") for p in problems), problems
    assert "database.url: 'mysql://x': use sqlite:///PATH" in text
    assert "inbound.smtp: 'localhost' is not host:port" in text
    assert "inbound.max_message_size: 'lots' is not a size" in text
    assert "inbound.max_recipents: unknown key" in text
    assert "queue[0].id: 'Service Desk' is not an id" in text
    assert "queue[0].from: 'not an address' is not a mail address" in text
    assert "template[0].group:" in text
    assert "template[0].priority:" in text
    assert "template[0].queue: unknown queue 'nowhere' (known: Service Desk)" in text
    assert len(problems) == 9


def test_cross_references_are_checked(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, """
[[queue]]
id = "sd"
from = "sd@example.com"

[[queue]]
id = "sd"
from = "sd2@example.com"

[[template]]
id = "t"
group = "change"
name = { en = "T" }
queue = "elsewhere"
addresses = ["a@example.com"]

[[template]]
id = "u"
group = "change"
name = { en = "U" }
queue = "sd"
addresses = ["A@example.com"]

[[route]]
address = "x@example.com"
template = "missing"
""")
    text = "\n".join(problems)
    assert "queue: id 'sd' is used twice" in text
    assert "template[0].queue: unknown queue 'elsewhere'" in text
    assert "template: address 'a@example.com' opens two templates" in text
    assert "route[0].template: unknown template 'missing'" in text


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(missing)
    problems = problems_of(tmp_path, "[database\nurl=")
    assert "not valid TOML" in problems[0]


def test_passwords_never_in_the_file(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, '[database]\nurl = "postgresql+psycopg://u:secret@h/db"\n')
    assert problems[0].endswith("database.url: contains a password: name an environment "
                                "variable in password_env instead")


def test_password_comes_from_the_named_variable(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TICKETGW_DATABASE_URL", raising=False)
    settings = settings_from_mapping(
        {"database": {"url": "postgresql+psycopg://gw@db/gw", "password_env": "GW_PW"}},
        "x.toml", tmp_path)
    assert environment_problems(settings) == [
        "x.toml: database.password_env: environment variable GW_PW is not set"]
    monkeypatch.setenv("GW_PW", "s3cr%t")
    assert settings.database_url() == "postgresql+psycopg://gw:s3cr%25t@db/gw"
    assert environment_problems(settings) == []


def test_relative_paths_follow_the_config_file(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TICKETGW_DATABASE_URL", raising=False)
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "gw.toml"
    path.write_text('[database]\nurl = "sqlite:///db/gw.db"\n[storage]\ndata_dir = "/srv/gw"\n')
    monkeypatch.chdir("/")
    settings = load_settings(path)
    assert settings.database_url() == f"sqlite:///{tmp_path}/etc/db/gw.db"
    assert settings.attachments_dir == Path("/srv/gw/attachments")


def test_file_exchange_settings(tmp_path: Path) -> None:
    settings = load_settings(SAMPLE)
    assert (settings.files.expiry_days, settings.files.max_file_size,
            settings.files.download_limit) == (7, 1024**3, 0)
    problems = problems_of(tmp_path, """
[files]
expiry_days = 0
max_file_size = "2GB"
max_files = 0
download_limit = -1
rate_limt_minutes = 3
""")
    text = "\n".join(problems)
    assert "files.expiry_days: Input should be greater than 0" in text
    assert "files.max_file_size: 2147483648 bytes is too large: at most 2147483647" in text
    assert "files.max_files: Input should be greater than 0" in text
    assert "files.download_limit: Input should be greater than or equal to 0" in text
    assert "files.rate_limt_minutes: unknown key" in text


def test_sizes_and_listen_addresses(tmp_path: Path) -> None:
    def size(value: object) -> int:
        return settings_from_mapping({"inbound": {"max_message_size": value}}, "x",
                                     tmp_path).inbound.max_message_size
    assert size("50MB") == 50 * 1024**2
    assert size("512 KiB") == 512 * 1024
    assert size(1000) == 1000
    with pytest.raises(ConfigError):
        size("0MB")
    assert host_port("127.0.0.1:2525") == ("127.0.0.1", 2525)
    assert host_port("[::1]:25") == ("::1", 25)


def test_overlay_appends_lists_and_keeps_user_values() -> None:
    user = {"inbound": {"smtp": "0.0.0.0:25"}, "queue": [{"id": "mine", "name": "Mine"}],
            "inbound_extra": ["a"]}
    overlay = {"inbound": {"smtp": "x", "domains": ["d"]},
               "queue": [{"id": "demo"}, {"id": "mine", "name": "Demo's"}],
               "inbound_extra": ["b"]}
    merged = merge_config(user, overlay)
    assert merged["inbound"] == {"smtp": "0.0.0.0:25", "domains": ["d"]}
    assert merged["queue"] == [{"id": "mine", "name": "Mine"}, {"id": "demo"}]   # user's wins
    assert merged["inbound_extra"] == ["a", "b"]


def test_overlay_merged_twice_changes_nothing() -> None:
    overlay = {"inbound": {"domains": ["d"]}, "queue": [{"id": "demo"}]}
    once = merge_config({"inbound": {"domains": ["d", "e"]}}, overlay)
    assert once["inbound"]["domains"] == ["d", "e"]      # a value the user has is not repeated
    assert merge_config(once, overlay) == once


def test_a_missing_password_variable_stops_the_start(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TICKETGW_DATABASE_URL", raising=False)
    monkeypatch.delenv("GW_PW", raising=False)
    settings = settings_from_mapping(
        {"database": {"url": "postgresql+psycopg://gw@db/gw", "password_env": "GW_PW"}},
        "x.toml", tmp_path)
    with pytest.raises(ConfigError, match="GW_PW is not set"):
        settings.database_url()


def test_faq_keys_are_checked(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, """
[faq]
address = "faq@support.example.com"
template = "nope"
queue = "missing"
max_answers = 0
max_suggestions = 9
""")
    text = "\n".join(problems)
    assert "faq.template: unknown template 'nope'" in text
    assert "faq.queue: unknown queue 'missing'" in text
    assert 'faq: give a template or a queue for "not solved" tickets, not both' in text
    assert "faq.address: needs a [[queue]]" in text
    assert "faq.max_answers: Input should be greater than or equal to 1" in text
    assert "faq.max_suggestions: Input should be less than or equal to 5" in text


def test_faq_defaults() -> None:
    from gateway.config.settings import Settings

    faq = Settings().faq
    assert (faq.address, faq.template, faq.queue, faq.max_answers, faq.max_suggestions) == (
        "", "", "", 3, 3)


def test_the_listener_limits_and_trusted_relays(tmp_path: Path) -> None:
    path = tmp_path / "ticketgw.toml"
    path.write_text('[inbound]\ntrusted_relays = ["192.0.2.7", "10.0.0.0/8", "::1/128"]\n'
                    "max_sessions_per_client = 5\nerror_sleep_time = 0.5\n", encoding="utf-8")
    inbound = load_settings(path).inbound
    assert inbound.trusted_relays == ["192.0.2.7", "10.0.0.0/8", "::1/128"]
    assert (inbound.max_sessions, inbound.max_sessions_per_client) == (100, 5)
    assert (inbound.soft_error_limit, inbound.hard_error_limit) == (10, 20)
    assert inbound.error_sleep_time == 0.5
    defaults = load_settings(SAMPLE).inbound
    assert defaults.trusted_relays == ["127.0.0.1/8", "::1/128"]
    problems = problems_of(tmp_path, '[inbound]\ntrusted_relays = ["mx.example.com"]\n'
                                     "max_sessions = 0\nsoft_error_limit = 30\n")
    text = "\n".join(problems)
    assert "inbound.trusted_relays[0]: 'mx.example.com' is not an IP address or network" in text
    assert "inbound.max_sessions:" in text
    assert len(problems) == 2
    problems = problems_of(tmp_path, "[inbound]\nsoft_error_limit = 30\n")
    assert problems == [f"{path}: inbound: soft_error_limit (30) must not be above "
                        "hard_error_limit (20)"]


def test_service_levels_and_customer_wait_are_validated(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, """
[tickets]
holidays = ["2026-13-24"]

[[queue]]
id = "desk"
from = "desk@example.com"
hours = "mon-fri 8-17"
escalation = "lead"

[[queue]]
id = "other"
from = "other@example.com"
pending_reminder_days = 7
pending_close_days = 3

[[template]]
id = "incident"
group = "incident"
name = { de = "Störung" }
queue = "desk"
sla = { first_response = "4 hours", solution = "3d" }
sla_by_priority = { 7 = { first_response = "1h" } }
""")
    text = "\n".join(problems)
    assert "tickets.holidays[0]:" in text
    assert "queue[0].hours: 'mon-fri 8-17': '8-17' is not a time range such as 08:00-17:00" \
        in text
    assert "queue[0].escalation[0]: 'lead' is not a mail address" in text
    assert "queue[1]: pending_close_days (3) must be after pending_reminder_days (7)" in text
    assert "template[0].sla.first_response: '4 hours' is not a duration" in text
    assert "7 is not a priority (1 to 5)" in text


def test_service_levels_read_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ticketgw.toml"
    path.write_text("""
[tickets]
holidays = [2026-12-24, "2026-12-25"]

[[queue]]
id = "desk"
from = "desk@example.com"
hours = "mon-fri 08:00-17:00"
escalation = "lead@example.com"

[[template]]
id = "incident"
group = "incident"
name = { de = "Störung" }
queue = "desk"
sla = { first_response = "4h", solution = "3d" }
sla_by_priority = { 5 = { first_response = "1h", solution = "8h" } }
""", encoding="utf-8")
    settings = load_settings(path)
    assert [str(d) for d in settings.tickets.holidays] == ["2026-12-24", "2026-12-25"]
    assert settings.queue[0].escalation == ["lead@example.com"]
    assert settings.queue[0].pending_reminder_days == 0      # waiting reminders: off
    assert settings.template[0].sla_by_priority[5].solution == "8h"
