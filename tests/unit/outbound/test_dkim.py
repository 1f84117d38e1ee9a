"""DKIM signing of rendered mail, verified by dkimpy against a DNS stub.

The RSA key is made here (small pure-Python generator: no openssl binary, no extra
package), so the test needs neither network nor fixtures on disk.
"""

from __future__ import annotations

import base64
import email
import email.policy
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dkim
import pytest

from gateway.outbound.dkim import DkimKey, DkimSigner
from gateway.outbound.headers import MailIdentity
from gateway.outbound.render import MailRenderer

QUEUE = MailIdentity("Service Desk", "support@support.example.com")
CONTEXT = {"customer_name": "Jürgen Müller", "title": "Störung: Drucker"}


# -- a throwaway RSA key -----------------------------------------------------------------

def _probably_prime(n: int) -> bool:
    if n % 2 == 0:
        return n == 2
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(32):                                  # Miller-Rabin
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (0b11 << (bits - 2)) | 1
        if _probably_prime(candidate):
            return candidate


def _der_int(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")     # leading 0 keeps it positive
    return b"\x02" + _der_len(len(body)) + body


def _der_seq(*items: bytes) -> bytes:
    body = b"".join(items)
    return b"\x30" + _der_len(len(body)) + body


def _der_len(n: int) -> bytes:
    if n < 128:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def make_rsa_key(bits: int = 1024) -> tuple[bytes, bytes]:
    """(PKCS#1 private key PEM, PKCS#1 public key DER) of a fresh RSA key."""
    e = 65537
    while True:
        p, q = _prime(bits // 2), _prime(bits // 2)
        phi = (p - 1) * (q - 1)
        if p != q and phi % e and (p * q).bit_length() == bits:
            break
    n, d = p * q, pow(e, -1, phi)
    private = _der_seq(*map(_der_int, (0, n, e, d, p, q, d % (p - 1), d % (q - 1),
                                        pow(q, -1, p))))
    lines = base64.encodebytes(private).decode().replace("\n", "")
    body = "\n".join(lines[i:i + 64] for i in range(0, len(lines), 64))
    pem = f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----\n"
    return pem.encode(), _der_seq(_der_int(n), _der_int(e))


@pytest.fixture(scope="module")
def rsa_key() -> tuple[bytes, bytes]:
    return make_rsa_key()


def dns_stub(public_der: bytes, name: bytes = b"mail2026._domainkey.support.example.com.",
             ) -> Callable[..., bytes | None]:
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public_der)

    def lookup(qname: bytes, timeout: int = 5) -> bytes | None:
        return record if qname == name else None

    return lookup


# -- tests -------------------------------------------------------------------------------

def render(signer: DkimSigner | None, sender: MailIdentity = QUEUE) -> bytes:
    renderer = MailRenderer(base_url="https://desk.example.com", dkim=signer)
    return renderer.render("follow-up", "de", CONTEXT, sender=sender,
                           to=[("Jürgen Müller", "juergen@kunde.example.org")],
                           ticket_number="2026112710000017",
                           in_reply_to="<a@kunde.example.org>",
                           now=datetime(2026, 11, 27, 14, 30, tzinfo=UTC)).raw


def test_signature_verifies(rsa_key: tuple[bytes, bytes]) -> None:
    pem, public = rsa_key
    raw = render(DkimSigner([DkimKey("Support.Example.com", "mail2026", pem)]))
    assert raw.startswith(b"DKIM-Signature: ")
    assert dkim.verify(raw, dnsfunc=dns_stub(public))
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert b"\n" not in raw.replace(b"\r\n", b"")

    signature = email.message_from_bytes(raw, policy=email.policy.default)["DKIM-Signature"]
    tags = {k.strip(): v.strip() for k, _, v in
            (part.partition("=") for part in str(signature).replace(" ", "").split(";"))}
    assert tags["d"] == "support.example.com" and tags["s"] == "mail2026"
    assert tags["c"] == "relaxed/relaxed"
    signed = tags["h"].lower().split(":")
    for name in ("from", "to", "subject", "date", "message-id", "in-reply-to",
                 "references", "auto-submitted", "content-type"):
        assert name in signed
    assert signed.count("from") == 2                      # oversigned: no second From


def test_tampering_breaks_the_signature(rsa_key: tuple[bytes, bytes]) -> None:
    pem, public = rsa_key
    raw = render(DkimSigner([DkimKey("support.example.com", "mail2026", pem)]))
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"From: Service Desk <" in head and b"Ticket" in body
    forged_from = raw.replace(b"From: Service Desk <", b"From: Evil Desk <", 1)
    forged_body = head + b"\r\n\r\n" + body.replace(b"Ticket", b"Tacket")
    assert not dkim.verify(forged_from, dnsfunc=dns_stub(public))
    assert not dkim.verify(forged_body, dnsfunc=dns_stub(public))


def test_other_domains_are_not_signed(rsa_key: tuple[bytes, bytes]) -> None:
    pem, _ = rsa_key
    signer = DkimSigner([DkimKey("other.example", "s1", pem)])
    assert not render(signer).startswith(b"DKIM-Signature")


def test_key_from_file_with_crlf(tmp_path: Path, rsa_key: tuple[bytes, bytes]) -> None:
    pem, public = rsa_key
    path = tmp_path / "dkim.pem"
    path.write_bytes(pem.replace(b"\n", b"\r\n"))
    signer = DkimSigner([DkimKey.from_file("support.example.com", "mail2026", path)])
    assert signer.domains() == ("support.example.com",)
    assert dkim.verify(render(signer), dnsfunc=dns_stub(public))


def test_unreadable_key_fails_at_start() -> None:
    with pytest.raises(ValueError, match=r"DKIM key for support\.example\.com \(selector s1\)"):
        DkimSigner([DkimKey("support.example.com", "s1", b"not a key")])
