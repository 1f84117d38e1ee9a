"""parse_message with small hand-written mails: one behaviour per test.

The mails are written inline so each test shows exactly what goes in. Real mails from
tests/corpus are in test_parse_corpus.py; quote markers in test_quotes.py; parser limits
in test_parse_limits.py.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta, timezone

from gateway.mail.message import ParsedMessage
from gateway.mail.parse import parse_message

RECEIVED = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def parse(raw: bytes) -> ParsedMessage:
    return parse_message(raw, received=RECEIVED)


def mail(headers: str, body: bytes | str = b"Hello\n") -> bytes:
    """A mail from a header block (no trailing newline needed) and a body."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    return headers.strip("\n").encode("utf-8") + b"\n\n" + body


BASIC = """\
From: Max Muster <max@example.com>
To: support@example.org
Subject: Printer
Date: Mon, 04 Jun 2024 13:50:00 +0200
Message-ID: <m1@example.com>
"""


# ---------------------------------------------------------------- headers and addresses


def test_plain_mail_headers_addresses_and_body() -> None:
    parsed = parse(mail(BASIC + "Cc: =?utf-8?Q?J=C3=BCrgen_M=C3=BCller?= <jm@example.com>,\n"
                        " \"Doe, Jane\" <jane@example.com>", "Hello\nworld\n"))
    assert parsed.message_id == "<m1@example.com>"
    assert not parsed.message_id_generated
    assert parsed.subject == "Printer"
    assert parsed.from_ is not None and parsed.from_.formatted() == "Max Muster <max@example.com>"
    assert [a.address for a in parsed.to] == ["support@example.org"]
    assert [(a.name, a.address) for a in parsed.cc] == [
        ("Jürgen Müller", "jm@example.com"), ("Doe, Jane", "jane@example.com")]
    assert parsed.date == datetime(2024, 6, 4, 13, 50, tzinfo=timezone(timedelta(hours=2)))
    assert parsed.date_from_header
    assert parsed.body_text == "Hello\nworld"
    assert parsed.body_html is None
    assert parsed.quote_start is None
    assert parsed.content_type == "text/plain"
    assert parsed.attachments == ()
    assert parsed.mime is not None and parsed.mime["Message-ID"] == "<m1@example.com>"


def test_headers_are_lower_cased_decoded_unfolded_first_occurrence() -> None:
    parsed = parse(mail(BASIC + "X-Long: first part\n\tsecond part\n"
                        "X-Twice: one\nX-Twice: two\n"
                        "X-Encoded: =?iso-8859-1?q?Gr=FC=DFe?= aus =?utf-8?b?S8O2bG4=?="))
    assert parsed.headers["x-long"] == "first part\tsecond part"
    assert parsed.headers["x-twice"] == "one"
    assert parsed.headers["x-encoded"] == "Grüße aus Köln"
    assert parsed.header("X-ENCODED") == "Grüße aus Köln"
    assert parsed.header("missing") == ""


def test_subject_decoded_unfolded_and_whitespace_collapsed() -> None:
    raw = mail(BASIC.replace("Subject: Printer\n", "") +
               "Subject: =?UTF-8?Q?Re:_Drucker_im?=\n =?UTF-8?Q?_2._Stock_f=C3=A4llt?=   aus  \n")
    assert parse(raw).subject == "Re: Drucker im 2. Stock fällt aus"


def test_raw_8bit_headers_are_decoded() -> None:
    raw = ("From: Jürgen <j@example.com>\nSubject: Grüße\nContent-Type: text/plain; "
           "charset=utf-8\n\nx").encode()
    parsed = parse(raw)
    assert parsed.subject == "Grüße"
    assert parsed.from_ is not None and parsed.from_.name == "Jürgen"


def test_in_reply_to_and_references_in_order_and_deduplicated() -> None:
    parsed = parse(mail(BASIC + "In-Reply-To: <b@x> (comment)\n"
                        "References: <a@x>\n <b@x> <a@x>\n\t<c@x>"))
    assert parsed.in_reply_to == ("<b@x>",)
    assert parsed.references == ("<a@x>", "<b@x>", "<c@x>")


def test_broken_addresses_are_kept_as_well_as_possible() -> None:
    parsed = parse(mail(BASIC.replace("To: support@example.org\n", "") +
                        "To: xxx, John Doe john@example.com, undisclosed-recipients:;, <>\n"
                        "Reply-To: \"Broken <no-close@example.com\n"
                        "Sender: =?bogus-charset?Q?Strange?= <s@example.com>"))
    assert [(a.name, a.address) for a in parsed.to] == [
        ("", "xxx"), ("John Doe", "john@example.com")]
    assert parsed.sender is not None and parsed.sender.address == "s@example.com"
    # a Reply-To that is not one unambiguous address names nobody (issue #14, item 8)
    assert parsed.reply_to == ()
    assert "address: Reply-To is not one unambiguous address (an unclosed quote); taken as " \
           "no Reply-To" in parsed.defects


def test_missing_message_id_is_generated_and_stable() -> None:
    raw = mail(BASIC.replace("Message-ID: <m1@example.com>\n", ""))
    first, second = parse(raw), parse(raw)
    assert first.message_id_generated
    assert first.message_id == second.message_id
    assert first.message_id.startswith("<") and first.message_id.endswith(
        "@generated.ticketgw.invalid>")
    assert len(first.message_id.split("@")[0]) == 33     # "<" + 32 hex digits
    assert parse(raw + b"other\n").message_id != first.message_id


def test_message_id_without_angle_brackets_is_wrapped() -> None:
    raw = mail(BASIC.replace("<m1@example.com>", "20180802.58E7@mail.example.cz"))
    parsed = parse(raw)
    assert parsed.message_id == "<20180802.58E7@mail.example.cz>"
    assert not parsed.message_id_generated


def test_bogus_date_uses_received_time() -> None:
    for date_line in ("Date: Thu, 32 Foo 2002 27:61:00 +0000\n", "Date: yesterday\n", ""):
        raw = mail(BASIC.replace("Date: Mon, 04 Jun 2024 13:50:00 +0200\n", date_line))
        parsed = parse(raw)
        assert parsed.date == RECEIVED
        assert not parsed.date_from_header


def test_naive_received_time_is_made_aware() -> None:
    raw = mail(BASIC.replace("Date: Mon, 04 Jun 2024 13:50:00 +0200\n", ""))
    parsed = parse_message(raw, received=datetime(2026, 1, 1, 8, 0))
    assert parsed.date == datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


def test_mbox_from_line_and_crlf_line_endings() -> None:
    raw = ("From max@example.com Mon Jun  4 13:50:00 2024\r\n" + BASIC.replace("\n", "\r\n")
           + "\r\nLine one\r\nLine two\r\n").encode()
    parsed = parse(raw)
    assert parsed.subject == "Printer"
    assert parsed.message_id == "<m1@example.com>"
    assert parsed.body_text == "Line one\nLine two"


def test_junk_before_headers_and_unindented_continuations_are_repaired() -> None:
    raw = (b"---- Original email message ----\n"
           b"Received: from a.example\nby b.example with ESMTP\n"
           b"From: max@example.com\nSubject: repaired\nTo: support@example.org\n\nbody\n")
    parsed = parse(raw)
    assert parsed.subject == "repaired"
    assert parsed.headers["received"] == "from a.example by b.example with ESMTP"
    assert any("non-header line" in d for d in parsed.defects)
    assert any("without indentation" in d for d in parsed.defects)


def test_outlook_msg_file_is_detected_not_crashed_on() -> None:
    parsed = parse(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(range(256)) * 4)
    assert parsed.from_ is None
    assert any("Outlook .msg" in d for d in parsed.defects)


# ---------------------------------------------------------------- charsets


def test_declared_charset_that_does_not_fit_falls_back_to_utf8_then_cp1252() -> None:
    utf8_as_ascii = mail(BASIC + "Content-Type: text/plain; charset=us-ascii",
                         "Grüße".encode())
    latin_as_utf8 = mail(BASIC + "Content-Type: text/plain; charset=utf-8",
                         "Grüße – bis bald".encode("cp1252"))
    first, second = parse(utf8_as_ascii), parse(latin_as_utf8)
    assert first.body_text == "Grüße"
    assert second.body_text == "Grüße – bis bald"
    assert any("does not fit" in d for d in first.defects + second.defects)


def test_unknown_charset_name_never_crashes() -> None:
    raw = mail(BASIC + "Content-Type: text/plain; charset=x-no-such-charset",
               "Grüße".encode())
    parsed = parse(raw)
    assert parsed.body_text == "Grüße"
    assert any("unknown" in d for d in parsed.defects)


def test_iso_8859_1_declared_text_with_windows_quotes() -> None:
    raw = mail(BASIC + "Content-Type: text/plain; charset=iso-8859-1",
               "\u201eSchön\u201c".encode("cp1252"))
    assert parse(raw).body_text == "\u201eSchön\u201c"


def test_undeclared_8bit_utf8_and_cp1252() -> None:
    assert parse(mail(BASIC, "Grüße".encode())).body_text == "Grüße"
    assert parse(mail(BASIC, "Grüße".encode("cp1252"))).body_text == "Grüße"


# ---------------------------------------------------------------- structure


ALTERNATIVE = BASIC + """\
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="alt"
"""


def test_alternative_prefers_plain_text_and_keeps_sanitized_html() -> None:
    body = ("--alt\nContent-Type: text/plain; charset=utf-8\n\nPlain version\n"
            "--alt\nContent-Type: text/html; charset=utf-8\n\n"
            "<p>HTML <b>version</b></p><script>alert(1)</script>\n--alt--\n")
    parsed = parse(mail(ALTERNATIVE, body))
    assert parsed.body_text == "Plain version"
    assert parsed.body_html is not None
    assert "<b>version</b>" in parsed.body_html
    assert "script" not in parsed.body_html
    assert parsed.content_type == "multipart/alternative"


def test_html_only_is_converted_to_text_and_sanitized() -> None:
    html = ("<html><head><style>p {color: red}</style></head><body>"
            "<p onclick=\"steal()\">Dear support,</p><p>the <a href=\"javascript:alert(1)\">"
            "printer</a> is <b>broken</b>.</p><img src=\"cid:logo@x\" onerror=\"x()\">"
            "<script>document.cookie</script><a href=\"https://example.com\">site</a>"
            "</body></html>")
    parsed = parse(mail(BASIC + "Content-Type: text/html; charset=utf-8", html))
    assert parsed.body_text == "Dear support,\n\nthe printer is broken.\n\nsite"
    sanitized = parsed.body_html or ""
    for forbidden in ("script", "onclick", "onerror", "javascript:", "document.cookie",
                      "<style", "color: red"):
        assert forbidden not in sanitized
    assert 'src="cid:logo@x"' in sanitized
    assert 'href="https://example.com"' in sanitized


def test_inline_image_with_content_id() -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(40)
    body = ("--rel\nContent-Type: text/html; charset=utf-8\n\n"
            "<p>Logo:</p><img src=\"cid:logo123@example.com\">\n"
            "--rel\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n"
            "Content-ID: <logo123@example.com>\n\n"
            + base64.encodebytes(png).decode() + "--rel--\n")
    parsed = parse(mail(BASIC + "Content-Type: multipart/related; boundary=rel", body))
    (image,) = parsed.attachments
    assert image.inline
    assert image.content_id == "logo123@example.com"
    assert image.content_type == "image/png"
    assert image.data == png
    assert image.filename == "attachment-1.png"
    assert 'src="cid:logo123@example.com"' in (parsed.body_html or "")
    assert parsed.body_text == "Logo:"


def test_rfc2231_filenames_with_charset_and_continuations() -> None:
    body = ("--mix\nContent-Type: text/plain\n\nsee attachments\n"
            "--mix\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n"
            "Content-Disposition: attachment; filename*=UTF-8''%C3%9Cbersicht%20Q1.pdf\n\n"
            "JVBERi0=\n"
            "--mix\nContent-Type: text/plain; name*=iso-8859-1''fallback.txt\n"
            "Content-Disposition: attachment;\n filename*0*=UTF-8''Sehr%20langer%20;\n"
            " filename*1*=Name%20%E2%82%AC.txt\n\ndata\n--mix--\n")
    parsed = parse(mail(BASIC + "Content-Type: multipart/mixed; boundary=mix", body))
    assert [a.filename for a in parsed.attachments] == ["Übersicht Q1.pdf",
                                                        "Sehr langer Name €.txt"]
    assert parsed.attachments[0].data == b"%PDF-"
    assert parsed.body_text == "see attachments"


def test_rfc2047_encoded_filenames() -> None:
    body = ("--mix\nContent-Type: text/plain\n\nx\n"
            "--mix\nContent-Type: application/octet-stream;\n"
            " name=\"=?UTF-8?B?w5xiZXJzaWNodC5wZGY=?=\"\n"
            "Content-Disposition: attachment;\n"
            " filename=\"=?iso-8859-1?Q?Pr=E4sentation_2024.pptx?=\"\n\n"
            "data\n--mix--\n")
    parsed = parse(mail(BASIC + "Content-Type: multipart/mixed; boundary=mix", body))
    assert [a.filename for a in parsed.attachments] == ["Präsentation 2024.pptx"]


def test_path_components_are_stripped_from_filenames() -> None:
    body = ("--mix\nContent-Type: text/plain\n\nx\n--mix\nContent-Type: text/plain\n"
            "Content-Disposition: attachment; filename=\"../../etc/passwd\"\n\nroot\n--mix--\n")
    parsed = parse(mail(BASIC + "Content-Type: multipart/mixed; boundary=mix", body))
    assert [a.filename for a in parsed.attachments] == ["passwd"]


def test_uuencoded_block_becomes_attachment_and_leaves_the_text() -> None:
    payload = b"Hello uuencode\x00\xff binary" * 3
    lines = "".join(binascii.b2a_uu(payload[i:i + 45]).decode()
                    for i in range(0, len(payload), 45))
    body = f"Here is the file:\n\nbegin 644 report.bin\n{lines}`\nend\n\nRegards\n"
    parsed = parse(mail(BASIC, body))
    (attachment,) = parsed.attachments
    assert attachment.filename == "report.bin"
    assert attachment.data == payload
    assert "begin 644" not in parsed.body_text
    assert parsed.body_text == "Here is the file:\n\n\nRegards"


def test_x_uuencode_transfer_encoding_without_begin_line() -> None:
    body = ("--mix\nContent-Type: text/plain\n\nAttached.\n"
            "--mix\nContent-Type: application/msword; name=\"a.txt\"\n"
            "Content-Transfer-Encoding: x-uuencode\n\n,2&5L;&\\@6F%M;6%D\n`\n--mix--\n")
    parsed = parse(mail(BASIC + "Content-Type: multipart/mixed; boundary=mix", body))
    assert [(a.filename, a.data) for a in parsed.attachments] == [("a.txt", b"Hello Zammad")]


def test_forwarded_message_is_kept_as_eml_and_its_text_is_readable() -> None:
    inner = ("From: Customer <c@example.net>\nSubject: Forwarded message\n"
             "Date: Sun, 03 Jun 2024 10:00:00 +0200\n\nThe original text.\n")
    body = ("--mix\nContent-Type: text/plain\n\nPlease look at this.\n"
            "--mix\nContent-Type: message/rfc822\n\n" + inner + "--mix--\n")
    parsed = parse(mail(BASIC + "Content-Type: multipart/mixed; boundary=mix", body))
    (eml,) = parsed.attachments
    assert eml.filename == "Forwarded message.eml"
    assert eml.content_type == "message/rfc822"
    assert eml.data == inner.encode().rstrip(b"\n")   # exact bytes (RFC 2046 §5.1.1 eol)
    assert parsed.body_text.startswith("Please look at this.\n\n---------- Forwarded message")
    assert "From: Customer <c@example.net>" in parsed.body_text
    assert parsed.body_text.endswith("The original text.")
    assert parsed.quote_start is None


def test_forwarded_message_without_subject_gets_a_default_name() -> None:
    body = ("--mix\nContent-Type: text/plain\n\nfwd\n"
            "--mix\nContent-Type: message/rfc822\n\nFrom: a@b\n\ntext\n--mix--\n")
    parsed = parse(mail(BASIC + "Content-Type: multipart/mixed; boundary=mix", body))
    assert [a.filename for a in parsed.attachments] == ["Forwarded message.eml"]


def test_nested_multiparts_collect_text_and_attachments_in_order() -> None:
    body = ("--outer\nContent-Type: multipart/alternative; boundary=inner\n\n"
            "--inner\nContent-Type: text/plain\n\nFirst\n"
            "--inner\nContent-Type: multipart/related; boundary=rel\n\n"
            "--rel\nContent-Type: text/html\n\n<p>First</p><img src=\"cid:i@x\">\n"
            "--rel\nContent-Type: image/gif\nContent-ID: <i@x>\n\nGIF89a\n--rel--\n"
            "--inner--\n"
            "--outer\nContent-Type: application/zip\nContent-Disposition: attachment; "
            "filename=a.zip\n\nPK\n"
            "--outer\nContent-Type: text/plain\n\nSecond\n--outer--\n")
    parsed = parse(mail(BASIC + "Content-Type: multipart/mixed; boundary=outer", body))
    assert parsed.body_text == "First\n\nSecond"
    assert [a.filename for a in parsed.attachments] == ["attachment-1.gif", "a.zip"]
    assert parsed.attachments[0].inline and not parsed.attachments[1].inline
    html = parsed.body_html or ""
    assert "<p>First</p>" in html and "Second" in html


# ---------------------------------------------------------------- signed and encrypted


def test_pgp_inline_clear_signed_text() -> None:
    body = ("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n"
            "Hello,\n- -- not a signature separator\nBye\n"
            "-----BEGIN PGP SIGNATURE-----\n\niQEzBAEBCAAdFiEE\n=abcd\n"
            "-----END PGP SIGNATURE-----\n")
    parsed = parse(mail(BASIC, body))
    assert parsed.signed
    assert not parsed.encrypted
    assert parsed.body_text == "Hello,\n-- not a signature separator\nBye"


def test_pgp_inline_encrypted_text_is_flagged_and_kept() -> None:
    body = "-----BEGIN PGP MESSAGE-----\n\nhQEMA\n=xyz\n-----END PGP MESSAGE-----\n"
    parsed = parse(mail(BASIC, body))
    assert parsed.encrypted
    assert "BEGIN PGP MESSAGE" in parsed.body_text


def test_smime_multipart_signed_shows_text_and_keeps_signature() -> None:
    signature = base64.encodebytes(b"0\x82\x06\x00fake-cms").decode()
    body = ("This is an S/MIME signed message\n\n--sig\n"
            "Content-Type: text/plain; charset=utf-8\n\nSigned text.\n"
            "--sig\nContent-Type: application/pkcs7-signature; name=\"smime.p7s\"\n"
            "Content-Transfer-Encoding: base64\n"
            "Content-Disposition: attachment; filename=\"smime.p7s\"\n\n"
            + signature + "--sig--\n")
    raw = mail(BASIC + "MIME-Version: 1.0\nContent-Type: multipart/signed; "
               "protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=sig", body)
    parsed = parse(raw)
    assert parsed.signed and not parsed.encrypted
    assert parsed.body_text == "Signed text."
    (sig,) = parsed.attachments
    assert (sig.filename, sig.content_type) == ("smime.p7s", "application/pkcs7-signature")
    assert sig.data == b"0\x82\x06\x00fake-cms"


def test_pgp_mime_signed() -> None:
    body = ("--s\nContent-Type: text/plain\n\nHallo.\n"
            "--s\nContent-Type: application/pgp-signature; name=\"signature.asc\"\n\n"
            "-----BEGIN PGP SIGNATURE-----\nabc\n-----END PGP SIGNATURE-----\n--s--\n")
    raw = mail(BASIC + "Content-Type: multipart/signed; micalg=pgp-sha256;\n"
               " protocol=\"application/pgp-signature\"; boundary=s", body)
    parsed = parse(raw)
    assert parsed.signed
    assert parsed.body_text == "Hallo."
    assert [a.filename for a in parsed.attachments] == ["signature.asc"]


def test_smime_encrypted_is_kept_as_attachment() -> None:
    raw = mail(BASIC + "Content-Type: application/pkcs7-mime; smime-type=enveloped-data;"
               " name=smime.p7m\nContent-Transfer-Encoding: base64",
               base64.encodebytes(b"\x30\x80encrypted").decode())
    parsed = parse(raw)
    assert parsed.encrypted and not parsed.signed
    assert parsed.body_text == ""
    assert [(a.filename, a.data) for a in parsed.attachments] == [
        ("smime.p7m", b"\x30\x80encrypted")]


def test_pgp_mime_encrypted_is_kept_as_attachments() -> None:
    body = ("--e\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n"
            "--e\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\n\n"
            "-----BEGIN PGP MESSAGE-----\nhQEMA\n-----END PGP MESSAGE-----\n--e--\n")
    raw = mail(BASIC + "Content-Type: multipart/encrypted;\n"
               " protocol=\"application/pgp-encrypted\"; boundary=e", body)
    parsed = parse(raw)
    assert parsed.encrypted
    assert [a.filename for a in parsed.attachments] == ["attachment-1.txt", "encrypted.asc"]


# ---------------------------------------------------------------- TNEF


def test_broken_winmail_dat_is_kept_as_it_is() -> None:
    """tnefparse cannot write TNEF and the corpus has no TNEF file with files inside, so real
    unpacking is not tested here; this tests the fallback."""
    junk = b"\x78\x9f\x3e\x22" + b"not really tnef" * 5
    body = ("--m\nContent-Type: text/plain\n\nsee attachment\n"
            "--m\nContent-Type: application/ms-tnef; name=winmail.dat\n"
            "Content-Transfer-Encoding: base64\n"
            "Content-Disposition: attachment; filename=winmail.dat\n\n"
            + base64.encodebytes(junk).decode() + "--m--\n")
    parsed = parse(mail(BASIC + "Content-Type: multipart/mixed; boundary=m", body))
    assert [(a.filename, a.content_type, a.data) for a in parsed.attachments] == [
        ("winmail.dat", "application/ms-tnef", junk)]
    assert any("tnef" in d for d in parsed.defects)
