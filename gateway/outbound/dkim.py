"""DKIM signing of outbound mail (RFC 6376), optional and per sender domain, with dkimpy.

In: finished message bytes and the domain of their From address.
Out: the same bytes with a `DKIM-Signature` header in front, or unchanged when no key is
configured for that domain.

Guarantees: a key that cannot be parsed fails when the signer is built (at start), naming
the domain and selector, not at the first mail. Signing itself does not touch the network.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from pathlib import Path

import dkim  # type: ignore[import-untyped]
from dkim.crypto import UnparsableKeyError, parse_pem_private_key  # type: ignore[import-untyped]

# What we sign (RFC 6376 §5.4.1), those present in the message; From and Subject are
# signed once more ("oversigned") so that a second one added in transit breaks the signature.
_SIGNED = ("from", "to", "reply-to", "subject", "date", "message-id", "in-reply-to",
           "references", "auto-submitted", "mime-version", "content-type")
_OVERSIGNED = ("from", "subject")


@dataclass(frozen=True)
class DkimKey:
    """One signing key: `d=domain`, `s=selector`, the RSA private key in PEM (PKCS#1 or #8)."""

    domain: str
    selector: str
    private_key_pem: bytes = field(repr=False)

    @classmethod
    def from_file(cls, domain: str, selector: str, path: Path) -> DkimKey:
        return cls(domain, selector, path.read_bytes())


class DkimSigner:
    """Signs with the key of the sender's domain; other domains pass unsigned."""

    def __init__(self, keys: Iterable[DkimKey]) -> None:
        self._keys: dict[str, DkimKey] = {}
        for key in keys:
            pem = key.private_key_pem.replace(b"\r\n", b"\n")
            try:
                parse_pem_private_key(pem)
            except (UnparsableKeyError, ValueError) as exc:
                raise ValueError(f"DKIM key for {key.domain} (selector {key.selector}) "
                                 f"cannot be read: {exc}") from None
            domain = key.domain.strip().lower()
            self._keys[domain] = DkimKey(domain, key.selector.strip(), pem)

    def domains(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def sign(self, raw: bytes, domain: str) -> bytes:
        """`raw` with a DKIM-Signature for `domain` in front; unchanged without a key."""
        key = self._keys.get(domain.lower())
        if key is None:
            return raw
        present = {name.lower() for name in BytesHeaderParser().parsebytes(raw)}
        signed = [name.encode() for name in _SIGNED if name in present]
        signed += [name.encode() for name in _OVERSIGNED]
        # relaxed/relaxed (§3.4): survives relays that refold headers or touch whitespace.
        signature: bytes = dkim.sign(
            raw, key.selector.encode(), key.domain.encode(), key.private_key_pem,
            canonicalize=(b"relaxed", b"relaxed"), include_headers=signed)
        return signature + raw
