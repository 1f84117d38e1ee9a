"""`configure_logging` and `OutageLog`: what reaches stderr, in which shape, at which level."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from gateway.config.settings import LoggingSettings
from gateway.observe.logs import OutageLog, configure_logging, mail_context


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_parse_and_name_the_mail(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LoggingSettings(level="info", format="json"))
    log = logging.getLogger("gateway.test")
    with mail_context(17, "<abc@acme.example>"):
        log.info("inbound %d: created", 17)
        try:
            raise ValueError("kaputt\nzweite Zeile")
        except ValueError:
            log.exception("processing failed")
    log.info("outside any mail")
    log.debug("not at INFO")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3                       # the traceback stays inside its line
    first, failed, outside = (json.loads(line) for line in lines)
    assert first["message"] == "inbound 17: created"
    assert (first["level"], first["logger"]) == ("INFO", "gateway.test")
    assert (first["inbound_id"], first["message_id"]) == (17, "<abc@acme.example>")
    assert first["time"].endswith("+00:00")
    assert failed["level"] == "ERROR" and "ValueError: kaputt" in failed["exc_info"]
    assert failed["inbound_id"] == 17
    assert "inbound_id" not in outside and "message_id" not in outside


def test_the_level_filters_and_a_second_call_replaces_the_handler(
        capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LoggingSettings(level="WARNING"))
    configure_logging(LoggingSettings(level="WARNING"))
    log = logging.getLogger("gateway.test")
    log.info("hidden")
    log.warning("shown")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].endswith(" WARNING gateway.test: shown")
    configure_logging(LoggingSettings(level="WARNING"), level=logging.DEBUG)   # -vv wins
    log.debug("now shown")
    assert capsys.readouterr().err.count("now shown") == 1


def test_an_outage_is_one_warning_then_one_line_when_it_is_over(
        caplog: pytest.LogCaptureFixture) -> None:
    outage = OutageLog(logging.getLogger("gateway.test"), "outbox: the database")
    with caplog.at_level(logging.DEBUG, logger="gateway.test"):
        outage.recovered()                         # nothing was wrong: nothing to say
        for _ in range(5):
            outage.failed("database unavailable: connection refused")
        outage.recovered()
        outage.recovered()
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno > 10] == [
        ("WARNING", "outbox: the database: database unavailable: connection refused; "
                    "trying again until it works"),
        ("INFO", "outbox: the database: works again")]
    assert not [r for r in caplog.records if r.exc_info]
