"""The templates page tells the customer where to mail instead (issue #17 item 12a): each
template's own addresses as `mailto:` links, nothing for a template without one."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from gateway.app import App
from gateway.config.settings import Settings
from tests.conftest import BASE_CONFIG, make_settings
from tests.web.conftest import log_in, new_browser, set_password


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    templates: list[dict[str, Any]] = [
        *BASE_CONFIG["template"],
        {"id": "order", "group": "service-request", "queue": "servicedesk",
         "name": {"de": "Bestellung", "en": "Order"},
         "addresses": ["order@support.example.com", "bestellung@support.example.com"]},
        {"id": "web-only", "group": "service-request", "queue": "servicedesk",
         "name": {"de": "Nur im Portal", "en": "Portal only"}},
    ]
    return make_settings(database_url, tmp_path / "data", template=templates)


def entry(page: str, template_id: str) -> str:
    match = re.search(rf'<li><a href="/templates/{template_id}">.*?</li>', page, re.S)
    assert match, page
    return match.group(0)


def test_each_template_shows_its_mail_addresses(app: App, customers: None,
                                                web: FastAPI) -> None:
    set_password(app, "mmuster")
    client = new_browser(web)
    log_in(client, "mmuster")
    german = client.get("/templates").text
    incident = entry(german, "incident")
    assert 'Per E-Mail: <a href="mailto:incident@support.example.com">' \
           'incident@support.example.com</a>' in incident
    order = entry(german, "order")
    assert ('<a href="mailto:order@support.example.com">order@support.example.com</a>, '
            '<a href="mailto:bestellung@support.example.com">') in order
    assert "mailto:" not in entry(german, "web-only") and "E-Mail" not in entry(german,
                                                                                  "web-only")
    client.post("/language", data={"language": "en", "next": "/templates",
                                   "csrf": re.findall(r'name="csrf" value="(\w+)"', german)[0]})
    english = client.get("/templates").text
    assert 'By email: <a href="mailto:incident@support.example.com">' in entry(english,
                                                                               "incident")
