"""`mail.attachment_scan` against the parser: on every corpus mail, fed in random pieces,
the scanner sees the attachments `parse_message` stores (same types and order, same names
where the part names itself, sizes within what the encoding allows); and it never raises."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.mail.attachment_scan import MAX_FILES, AttachmentScanner, scan_attachments
from gateway.mail.parse import parse_message
from tests.conftest import CORPUS


def corpus_mails() -> list[Path]:
    paths = [p for p in sorted(CORPUS.rglob("*")) if p.is_file()
             and p.suffix not in (".tsv", ".md", ".json", ".yml") and p.parent.name != "LICENSES"
             and "mac" not in p.parts]      # bare-CR line ends: no SMTP peer sends them
    if len(paths) < 300:
        pytest.fail(f"the mail corpus is missing at {CORPUS}", pytrace=False)
    return paths


def fed_in_pieces(raw: bytes, rng: random.Random) -> AttachmentScanner:
    scanner = AttachmentScanner()
    position = 0
    while position < len(raw):
        step = rng.choice((1, 7, 76, 1000, 65536))
        scanner.feed(raw[position:position + step])
        position += step
    scanner.feed(b"\n")
    return scanner


# parts the parser reads differently, each checked by hand: quoted-printable and uuencoded
# parts (the scanner gives the encoded size); parts the parser does not see in a broken mail
# (msg_15 nests a multipart in one with the same boundary; the scanner sees its GIF)
ROUGH = {"spamscope-mail-parser/mail_test_7", "spamscope-mail-parser/mail_malformed_1",
         "zammad/mail078-content_transfer_encoding_x_uuencode.box", "cpython/msg_15.txt"}


def test_the_scanner_sees_what_the_parser_stores_on_the_whole_corpus() -> None:
    rng = random.Random(20261206)
    compared = attachments = 0
    for path in corpus_mails():
        name = str(path.relative_to(CORPUS))
        raw = path.read_bytes()
        scanned = fed_in_pieces(raw, rng).files()
        assert scanned == scan_attachments(raw), name          # pieces do not matter
        if name in ROUGH:
            continue
        parsed = parse_message(raw, received=datetime(2026, 1, 1, tzinfo=UTC))
        assert [f.content_type for f in scanned] == [
            a.content_type for a in parsed.attachments], name
        for file, attachment in zip(scanned, parsed.attachments, strict=True):
            assert abs(file.size - len(attachment.content())) <= 2, (name, file)
            if file.name:
                assert file.name == attachment.filename, name
        compared += 1
        attachments += len(scanned)
    assert compared > 300 and attachments > 300


def test_the_rough_cases_still_name_their_files() -> None:
    scanned = scan_attachments((CORPUS / "spamscope-mail-parser" / "mail_test_7").read_bytes())
    assert [f.name for f in scanned] == [
        "image001.jpg", "att24916.htm", "image002.jpg", "att09558.htm", "image003.jpg",
        "att04803.htm", "20170609091403417.pdf", "att18831.htm"]


@pytest.mark.parametrize("raw", [
    b"", b"\n\n\n", b"--\n--\n", b"Content-Type: multipart/mixed; boundary=x\n\n--x\n\n--x--\n",
    b"Content-Type: multipart/mixed; boundary=\"\"\n\n--\n", bytes(range(256)) * 50,
    b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: image/png\n" * 3000,
])
def test_broken_input_never_raises(raw: bytes) -> None:
    assert isinstance(scan_attachments(raw), tuple)


def test_memory_and_entries_stay_bounded() -> None:
    part = (b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
            b"filename=a.pdf\r\n\r\nJVBERi0=\r\n")
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + part * 500 + b"--b--\r\n"
    assert len(scan_attachments(raw)) == MAX_FILES
    scanner = AttachmentScanner()
    scanner.feed(b"Subject: x\r\n" + b"X-Long: " + b"a" * 10_000_000 + b"\r\n\r\nbody\r\n")
    assert scanner.files() == ()
    assert len(scanner._header) <= 64 * 1024              # the bound itself
