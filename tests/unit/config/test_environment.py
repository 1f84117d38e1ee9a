"""Overrides from the environment: `TICKETGW_<SECTION>_<KEY>` read as the TOML value would be,
typos and bad values named by their variable, other TICKETGW_* variables left alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.environment import OVERRIDABLE_SECTIONS, override_variable, scalar_keys
from gateway.config.loading import load_settings
from gateway.config.settings import Settings
from gateway.errors import ConfigError


def load(tmp_path: Path, environ: dict[str, str], toml: str = "") -> Settings:
    path = tmp_path / "ticketgw.toml"
    path.write_text(toml, encoding="utf-8")
    return load_settings(path, environ=environ)


def problems(tmp_path: Path, environ: dict[str, str], toml: str = "") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, environ, toml)
    return caught.value.problems


def test_a_variable_replaces_the_files_value_and_is_recorded(tmp_path: Path) -> None:
    settings = load(tmp_path, {"TICKETGW_WEB_LISTEN": "0.0.0.0:9000",
                               "TICKETGW_INBOUND_SMTP": ""},
                    '[web]\nlisten = "127.0.0.1:8081"\n')
    assert settings.web.listen == "0.0.0.0:9000"
    assert settings.inbound.smtp == ""          # an empty value is the empty string: off
    assert settings.from_environment == (("inbound.smtp", "TICKETGW_INBOUND_SMTP"),
                                         ("web.listen", "TICKETGW_WEB_LISTEN"))


def test_values_are_read_as_the_keys_type(tmp_path: Path) -> None:
    settings = load(tmp_path, {
        "TICKETGW_WEB_PAGE_SIZE": "50",
        "TICKETGW_TICKETS_REOPEN_ON_REPLY": "false",
        "TICKETGW_INBOUND_ERROR_SLEEP_TIME": "0.5",
        "TICKETGW_INBOUND_MAX_MESSAGE_SIZE": "10MB",
        "TICKETGW_FILES_MAX_TOTAL_SIZE": "4096",
        "TICKETGW_OUTBOUND_FROM": "Desk <desk@example.com>",   # the key `from`
        "TICKETGW_OUTBOUND_STARTTLS": "true",
        "TICKETGW_INBOUND_SEVERAL_TEMPLATES": "each",
        "TICKETGW_STORAGE_DATA_DIR": "/srv/gw",
    })
    assert settings.web.page_size == 50
    assert settings.tickets.reopen_on_reply is False
    assert settings.inbound.error_sleep_time == 0.5
    assert settings.inbound.max_message_size == 10 * 1024**2
    assert settings.files.max_total_size == 4096
    assert settings.outbound.from_ == "Desk <desk@example.com>"
    assert settings.outbound.starttls is True
    assert settings.inbound.several_templates == "each"
    assert settings.data_dir == Path("/srv/gw")


def test_every_bad_variable_is_named_with_its_key(tmp_path: Path) -> None:
    found = problems(tmp_path, {
        "TICKETGW_WEB_PAGE_SIZE": "many",
        "TICKETGW_TICKETS_REOPEN_ON_REPLY": "yes",
        "TICKETGW_INBOUND_ERROR_SLEEP_TIME": "1s",
    })
    assert found == [
        "TICKETGW_INBOUND_ERROR_SLEEP_TIME: inbound.error_sleep_time: '1s' is not a number",
        "TICKETGW_TICKETS_REOPEN_ON_REPLY: tickets.reopen_on_reply: 'yes' is not true or false",
        "TICKETGW_WEB_PAGE_SIZE: web.page_size: 'many' is not a whole number",
    ]


def test_the_keys_own_checks_name_the_variable(tmp_path: Path) -> None:
    found = problems(tmp_path, {"TICKETGW_WEB_PAGE_SIZE": "0",
                                "TICKETGW_INBOUND_MAX_MESSAGE_SIZE": "12XB",
                                "TICKETGW_WEB_LISTEN": "nowhere"},
                     '[web]\npage_size = 9999\n')   # overridden: the file's value is not read
    assert found == [
        "TICKETGW_INBOUND_MAX_MESSAGE_SIZE: inbound.max_message_size: '12XB' is not a size; "
        "write e.g. 50MB, 512KB or 1GB",
        "TICKETGW_WEB_LISTEN: web.listen: 'nowhere' is not host:port (or \"\" to turn it off)",
        "TICKETGW_WEB_PAGE_SIZE: web.page_size: Input should be greater than 0",
    ]


def test_a_typo_or_a_list_key_is_an_error_naming_the_variable(tmp_path: Path) -> None:
    found = problems(tmp_path, {"TICKETGW_WEB_LISTN": "127.0.0.1:1",
                                "TICKETGW_WEB_TRUSTED_PROXIES": "10.0.0.1",
                                "TICKETGW_DATABASE_": "x"})
    assert [p.split(":")[0] for p in found] == ["TICKETGW_DATABASE_", "TICKETGW_WEB_LISTN",
                                                "TICKETGW_WEB_TRUSTED_PROXIES"]
    assert all("names no key of [" in p for p in found)
    assert "listen" in found[1]


def test_other_ticketgw_variables_are_not_overrides(tmp_path: Path) -> None:
    settings = load(tmp_path, {
        "TICKETGW_CONFIG": "/elsewhere.toml",          # not a section
        "TICKETGW_DB_PASSWORD": "secret",              # DB is not DATABASE
        "TICKETGW_DB_UPGRADE": "no",                   # the Docker entrypoint's
        "TICKETGW_WEB_SECRET_KEY": "k" * 32,           # a secret the file names
        "TICKETGW_DATABASE_URL": "sqlite:///other.db",  # read where it is used, as before
        "TICKETGW_WEBX_LISTEN": "x",                   # no such section
    }, '[web]\nsecret_key_env = "TICKETGW_WEB_SECRET_KEY"\n')
    assert settings.web.listen == "127.0.0.1:8080"
    assert settings.database.url == "sqlite:///var/gateway.db"
    assert settings.from_environment == (("database.url", "TICKETGW_DATABASE_URL"),)
    # named by an override of the `*_env` key, it is a secret all the same
    named = load(tmp_path, {"TICKETGW_WEB_SECRET_KEY_ENV": "TICKETGW_WEB_SECRET_KEY",
                            "TICKETGW_WEB_SECRET_KEY": "k" * 32})
    assert named.web.secret_key_env == "TICKETGW_WEB_SECRET_KEY"
    # named by nothing, the same variable is an override of an unknown key
    assert problems(tmp_path, {"TICKETGW_WEB_SECRET_KEY": "k" * 32})[0].startswith(
        "TICKETGW_WEB_SECRET_KEY: ")


def test_only_the_single_table_sections_and_their_scalar_keys() -> None:
    assert set(OVERRIDABLE_SECTIONS) == {"database", "storage", "tickets", "inbound",
                                         "outbound", "web", "files", "faq", "logging",
                                         "digest"}
    assert "trusted_relays" not in scalar_keys("inbound")
    assert "dkim" not in scalar_keys("outbound")
    assert {"smtp", "lmtp", "max_message_size", "authserv_id"} <= scalar_keys("inbound").keys()
    assert override_variable("outbound", "from") == "TICKETGW_OUTBOUND_FROM"
    assert override_variable("files", "max_file_size") == "TICKETGW_FILES_MAX_FILE_SIZE"
    assert override_variable("logging", "format") == "TICKETGW_LOGGING_FORMAT"


def test_the_admin_guide_lists_every_key_that_can_be_set() -> None:
    guide = (Path(__file__).resolve().parents[3] / "docs" / "admin.md").read_text("utf-8")
    for section in OVERRIDABLE_SECTIONS:
        row = next(line for line in guide.splitlines()
                   if line.startswith(f"  | `[{section}]` | "))
        listed = [cell.split("`")[1] for cell in row.split("|")[2].split(",")]
        assert listed == list(scalar_keys(section)), section


def test_the_file_cannot_claim_keys_came_from_the_environment(tmp_path: Path) -> None:
    assert problems(tmp_path, {}, 'from_environment = [["web.listen", "X"]]\n') == [
        f"{tmp_path / 'ticketgw.toml'}: from_environment: unknown key"]


def test_the_digest_schedule_differs_per_instance(tmp_path: Path) -> None:
    # one instance sends the digest, the others leave it off: the same file for all
    toml = '[digest]\nschedule = "0 8 * * mon-fri"\n'
    assert load(tmp_path, {}, toml).digest.schedule == "0 8 * * mon-fri"
    assert load(tmp_path, {"TICKETGW_DIGEST_SCHEDULE": ""}, toml).digest.schedule == ""
    assert any("schedule 'every morning' is not a crontab line" in p for p in
               problems(tmp_path, {"TICKETGW_DIGEST_SCHEDULE": "every morning"}, toml))
