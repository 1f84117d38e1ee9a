"""ticket-gateway: an email-driven service desk gateway.

Customers open tickets by mail and answer by replying; staff answer from their own mail
client; a small web view covers what mail cannot do. See README.md for the architecture.
"""

__version__ = "0.5.0"   # the one place the version is written (pyproject.toml reads it)
