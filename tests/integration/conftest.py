"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest

from gateway.app import App
from gateway.tickets.customers import NewCustomer, add_customer


@pytest.fixture
def customer(app: App) -> None:
    """The registered customer Max Muster <max@acme.example> of the organisation acme
    (`smtp_helpers.customer_mail` writes as him)."""
    with app.db.write() as session:
        add_customer(session, NewCustomer("mmuster", "max@acme.example", "Max Muster", "acme"))
