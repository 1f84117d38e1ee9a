"""What our border MTA vouches for about a mail's From address. Pure.

In: the mail's `Authentication-Results` header values (topmost first), its From address,
`[inbound] authserv_id` and whether the hop the mail came over may be believed at all
(`pipeline.Understood.hop_trusted`). Out: a `context.SenderCheck` (pass | fail | none |
unchecked, with the reason in words). Never raises for a malformed header: what cannot be
read is no verdict.

Only a header carrying our authserv-id counts, and of those only the topmost (RFC 8601 §5:
the border MTA removes headers with its own authserv-id that arrive from outside, and adds
its own on top), so a header written by the sender or another server never vouches for
anything. Pass means `dmarc=pass` with `header.from` of the From domain, or `dkim=pass`
signed by that domain (`header.d`, or `header.i` in it): DMARC's own test (RFC 7489 §3.1,
strict alignment for DKIM). SPF alone never counts: it vouches for the envelope sender, not
for the From a reader sees (RFC 7489 §4.1).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gateway.routing.context import SenderCheck

_COMMENT = re.compile(r"\([^()]*\)")
_RESULT = re.compile(r"\b(dmarc|dkim)\s*=\s*([A-Za-z]+)([^;]*)", re.IGNORECASE)
_PROPERTY = re.compile(r"\bheader\.(from|d|i)\s*=\s*\"?@?([^\s;\"]+)", re.IGNORECASE)


def check_sender(results_headers: Sequence[str], sender: str, authserv_id: str, *,
                 hop_trusted: bool = True) -> SenderCheck:
    """What our MTA (authserv-id) says about the domain of `sender`."""
    if not authserv_id:
        return SenderCheck("unchecked", "[inbound] authserv_id is not set: senders are not "
                                        "checked")
    domain = sender.rpartition("@")[2].lower().rstrip(".")
    if not domain:
        return SenderCheck("none", "the mail has no From address to check")
    if not hop_trusted:
        return SenderCheck("none", "its Authentication-Results are ignored: the SMTP client "
                                   "is not a trusted relay")
    ours = next((h for h in (_uncommented(h) for h in results_headers)
                 if _authserv_id(h) == authserv_id.lower()), None)
    if ours is None:
        return SenderCheck("none", f"no Authentication-Results header from {authserv_id}")
    dmarc = ""
    for method, result, properties in _RESULT.findall(ours):
        method, result = method.lower(), result.lower()
        for key, value in _PROPERTY.findall(properties):
            key, value = key.lower(), value.lower().rstrip(".")
            if value.rpartition("@")[2] != domain:
                continue
            if result == "pass" and ((method == "dmarc" and key == "from")
                                     or (method == "dkim" and key in ("d", "i"))):
                return SenderCheck("pass", f"{authserv_id}: {method}=pass for {domain}")
            if method == "dmarc" and key == "from":
                dmarc = result
    if dmarc == "fail":
        return SenderCheck("fail", f"{authserv_id}: dmarc=fail for {domain}")
    return SenderCheck("none", f"{authserv_id}: no DMARC or DKIM pass for {domain}"
                               + (f" (dmarc={dmarc})" if dmarc else ""))


def _uncommented(header: str) -> str:
    """The header without its RFC 5322 comments (nested ones too), which carry no result."""
    previous = None
    while previous != header:
        previous, header = header, _COMMENT.sub(" ", header)
    return header


def _authserv_id(header: str) -> str:
    """The authserv-id: the first word before the first `;` (RFC 8601 §2.2)."""
    words = header.split(";", 1)[0].split()
    return words[0].lower() if words else ""
