"""The token-secured file exchange (`exchange`): areas a ticket opens for uploads and
downloads, their limits, expiry and revocation.

In: the caller's session, a ticket id or a token from a URL, staged uploads. Out: areas,
files attached to the ticket, the mail with the link. The web pages and the CLI that use it
live in `web/files.py` and `cli/files.py`.

Guarantees: a token is stored only as its hash; an upload is recorded only after its blob is
stored; nothing here commits.
"""
