"""Automatic mail, bounces and out-of-office replies (`gateway.classify.loops`), one rule at a time,
with small inline mails. The real-world corpus is in test_loops_corpus.py."""

from __future__ import annotations

import contextlib
import email
import email.policy
import time
from collections.abc import Collection
from email.header import decode_header, make_header
from email.message import Message
from textwrap import dedent

import pytest

import gateway.classify.loops as loops
from gateway.classify.loops import (
    RULES,
    AddressOwner,
    Classification,
    MailKind,
    classify_message,
)

OURS = ("support@desk.example", "faq@desk.example")
OUR_DOMAINS = ("desk.example",)


# -- helpers (also used by test_loops_corpus.py) --------------------------------------------

def parse_mail(raw: bytes, policy: email.policy.Policy = email.policy.compat32,
               ) -> tuple[dict[str, str], Message, str]:
    """What the parser would hand over, built with the stdlib only: headers (lower-case name
    -> decoded first value), the MIME tree, and the first readable text part."""
    mime = email.message_from_bytes(raw, policy=policy)
    headers: dict[str, str] = {}
    for name, value in mime.raw_items():
        text = str(value)
        with contextlib.suppress(Exception):   # undecodable encoded-word: keep it as written
            text = str(make_header(decode_header(text)))
        headers.setdefault(name.lower(), " ".join(text.split()))
    return headers, mime, body_text_of(mime)


def body_text_of(mime: Message) -> str:
    for part in mime.walk():
        if part.get_content_type() in ("text/plain", "text/html") and not part.is_multipart():
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                try:
                    return payload.decode(part.get_content_charset() or "utf-8", "replace")
                except LookupError:
                    return payload.decode("utf-8", "replace")
    return ""


def classify_raw(raw: bytes, *, envelope_from: str | None = None,
                 ours: Collection[str] | AddressOwner = OURS,
                 policy: email.policy.Policy = email.policy.compat32) -> Classification:
    headers, mime, body = parse_mail(raw, policy)
    return classify_message(headers, mime, body, envelope_from=envelope_from,
                            our_addresses=ours, our_domains=OUR_DOMAINS)


def mail(headers: str, body: str = "Hello,\nthe printer on floor 3 is broken again.\n") -> bytes:
    """A small mail from header lines (dedented) and a body."""
    head = dedent(headers).strip("\n")
    if "from:" not in head.lower():
        head = "From: Erika Musterfrau <erika@customer.example>\n" + head
    if "subject:" not in head.lower():
        head += "\nSubject: Printer broken"
    return (f"{head}\nTo: support@desk.example\nMessage-ID: <m-1@customer.example>\n\n{body}"
            ).encode()


def classify(headers: str, body: str | None = None, *, envelope_from: str | None = None,
             ours: Collection[str] | AddressOwner = OURS) -> Classification:
    raw = mail(headers) if body is None else mail(headers, body)
    return classify_raw(raw, envelope_from=envelope_from, ours=ours)


# -- the contract ---------------------------------------------------------------------------

def test_a_plain_human_mail_may_be_answered() -> None:
    result = classify("Date: Mon, 2 Mar 2026 10:00:00 +0100")
    assert (result.kind, result.may_auto_answer, result.rule) == (MailKind.HUMAN, True, "human")
    assert result.bounce is None and result.original is None


def test_every_rule_is_a_function_named_after_its_kebab_case_name() -> None:
    for name, rule in RULES:
        assert rule.__name__ == "rule_" + name.replace("-", "_")
        assert name == name.lower() and " " not in name


def test_only_human_mail_may_be_answered() -> None:
    with pytest.raises(ValueError, match="only human"):
        Classification(MailKind.BOUNCE, True, "dsn", "dsn: x")


def test_the_reason_starts_with_the_rule_that_decided() -> None:
    result = classify("Precedence: bulk")
    assert result.reason.startswith(f"{result.rule}: ")


# -- Auto-Submitted (RFC 3834 §5) -------------------------------------------------------------

@pytest.mark.parametrize("value, kind", [
    ("no", MailKind.HUMAN),
    ("No", MailKind.HUMAN),
    ("auto-replied", MailKind.AUTO_REPLY),
    ("Auto-Replied", MailKind.AUTO_REPLY),
    ("auto-replied; owner-email=\"x@y.example\"", MailKind.AUTO_REPLY),
    ("auto-generated", MailKind.AUTOMATIC),
    ("auto-generated (failure)", MailKind.AUTOMATIC),
    ("auto-notified", MailKind.AUTOMATIC),
    ("auto-something-new", MailKind.AUTOMATIC),     # RFC 3834 §5.1: extensions are automatic
])
def test_auto_submitted(value: str, kind: MailKind) -> None:
    result = classify(f"Auto-Submitted: {value}")
    assert result.kind is kind
    assert result.may_auto_answer is (kind is MailKind.HUMAN)
    if kind is not MailKind.HUMAN:
        assert result.rule == "auto-submitted"
        assert result.reason.startswith(f"auto-submitted: Auto-Submitted: {value}")


# -- lists and bulk -------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["bulk", "junk", "list", "Bulk", "bulk;"])
def test_precedence_bulk_junk_list(value: str) -> None:
    result = classify(f"Precedence: {value}")
    assert (result.kind, result.rule, result.may_auto_answer) == (
        MailKind.LIST, "precedence", False)


def test_other_precedence_values_are_human() -> None:
    assert classify("Precedence: first-class").kind is MailKind.HUMAN


@pytest.mark.parametrize("header", [
    "List-Id: Users of Example <users.lists.example.org>",
    "List-Unsubscribe: <mailto:users-leave@lists.example.org>",
    "List-Post: <mailto:users@lists.example.org>",
    "X-Mailman-Version: 2.1.39",
])
def test_list_headers(header: str) -> None:
    result = classify(header)
    assert (result.kind, result.rule, result.may_auto_answer) == (MailKind.LIST, "list-id", False)


def test_a_list_server_envelope_sender_is_a_list() -> None:
    result = classify("Date: Mon, 2 Mar 2026 10:00:00 +0100",
                      envelope_from="owner-users@lists.example.org")
    assert (result.kind, result.rule) == (MailKind.LIST, "list-id")
    assert "owner-users@lists.example.org" in result.reason


# -- X-Auto-Response-Suppress (Microsoft) ---------------------------------------------------

@pytest.mark.parametrize("value", ["All", "OOF", "DR, NDR, RN, NRN, OOF, AutoReply"])
def test_auto_response_suppress(value: str) -> None:
    result = classify(f"X-Auto-Response-Suppress: {value}")
    assert (result.kind, result.rule, result.may_auto_answer) == (
        MailKind.AUTOMATIC, "auto-response-suppress", False)


def test_auto_response_suppress_none_asks_for_nothing() -> None:
    assert classify("X-Auto-Response-Suppress: None").kind is MailKind.HUMAN


# -- senders --------------------------------------------------------------------------------

def test_the_null_envelope_sender() -> None:
    result = classify("Date: Mon, 2 Mar 2026 10:00:00 +0100", envelope_from="")
    assert (result.kind, result.rule, result.may_auto_answer) == (
        MailKind.AUTOMATIC, "null-sender", False)
    assert "envelope sender <>" in result.reason


def test_return_path_stands_in_for_an_unknown_envelope() -> None:
    result = classify("Return-Path: <>", envelope_from=None)
    assert (result.kind, result.rule) == (MailKind.AUTOMATIC, "null-sender")
    assert "Return-Path <>" in result.reason


def test_a_known_envelope_sender_wins_over_a_stale_return_path() -> None:
    result = classify("Return-Path: <>", envelope_from="erika@customer.example")
    assert result.kind is MailKind.HUMAN


@pytest.mark.parametrize("sender", [
    "MAILER-DAEMON@mx.customer.example", "mailer-daemon@mx.customer.example",
    "Mailer-Daemon <MAILER-DAEMON@mx.customer.example>", "postmaster@customer.example",
    "POSTMASTER@CUSTOMER.EXAMPLE", "Postmaster <PostMaster@customer.example>",
])
def test_mailer_daemon_and_postmaster_senders(sender: str) -> None:
    result = classify(f"From: {sender}\nSubject: Mailbox report",
                      body="Your mailbox statistics for March are attached.\n")
    assert (result.kind, result.rule, result.may_auto_answer) == (
        MailKind.AUTOMATIC, "mailer-daemon", False)


def test_mailer_daemon_as_envelope_sender_without_a_domain() -> None:
    result = classify("Subject: Report", envelope_from="MAILER-DAEMON")
    assert (result.kind, result.rule) == (MailKind.AUTOMATIC, "mailer-daemon")


@pytest.mark.parametrize("sender", ["noreply@shop.example", "no-reply@shop.example",
                                    "do-not-reply@shop.example", "DoNotReply@shop.example"])
def test_no_reply_senders(sender: str) -> None:
    result = classify(f"From: Shop <{sender}>\nSubject: Your order")
    assert (result.kind, result.rule) == (MailKind.AUTOMATIC, "no-reply")


# -- our own addresses (loops) --------------------------------------------------------------

@pytest.mark.parametrize("header", [
    "From: Service Desk <support@desk.example>",
    "From: SUPPORT@DESK.EXAMPLE",                      # clients change the case
    "From: support+r-8f2kq9w7x3m4n5p6@desk.example",   # a reply address of ours
    "Sender: faq@desk.example",
    "X-Loop: support@desk.example",
])
def test_mail_from_our_own_address_is_a_loop(header: str) -> None:
    result = classify(header)
    assert (result.kind, result.rule, result.may_auto_answer) == (
        MailKind.LOOP, "own-address", False)


def test_our_own_envelope_sender_is_a_loop() -> None:
    result = classify("Subject: hi", envelope_from="support@desk.example")
    assert (result.kind, result.rule) == (MailKind.LOOP, "own-address")


class FakeAddressBook:
    """A fake of `AddressBook.is_ours` (the real one needs settings): ours is *@desk.example."""

    def is_ours(self, address: str) -> bool:
        return address.lower().endswith("@desk.example")


def test_an_address_book_can_say_what_is_ours() -> None:
    assert isinstance(FakeAddressBook(), AddressOwner)
    result = classify("From: billing@desk.example", ours=FakeAddressBook())
    assert result.kind is MailKind.LOOP
    assert classify("Subject: hi", ours=FakeAddressBook()).kind is MailKind.HUMAN


# -- out-of-office --------------------------------------------------------------------------

OOF_GERMAN = """\
    Subject: Automatische Antwort: Drucker im 3. OG defekt
    X-Auto-Response-Suppress: All
    X-MS-Exchange-Inbox-Rules-Loop: erika@customer.example
    Content-Type: text/plain; charset=utf-8
"""
OOF_ENGLISH = """\
    Subject: Out of office until Monday (Re: Printer broken)
    Precedence: bulk
"""


def test_out_of_office_in_german() -> None:
    body = "Ich bin bis zum 15. März nicht im Büro. In dringenden Fällen wenden Sie sich an ...\n"
    result = classify(OOF_GERMAN, body)
    assert (result.kind, result.rule, result.may_auto_answer) == (
        MailKind.AUTO_REPLY, "out-of-office", False)
    assert "Automatische Antwort" in result.reason


def test_out_of_office_in_english() -> None:
    result = classify(OOF_ENGLISH, "I am out of the office until Monday with limited access.\n")
    assert (result.kind, result.rule) == (MailKind.AUTO_REPLY, "out-of-office")
    assert "Precedence: bulk" in result.reason     # the weak subject needed a second signal


@pytest.mark.parametrize("subject", [
    "Automatic reply: Printer broken", "Abwesenheitsnotiz: Drucker", "AutoReply: Ticket",
    "Auto-Reply: Ticket", "Réponse automatique : Imprimante", "Out of Office AutoReply: x",
    "Automatische Antwort", "[EXT] Automatic reply: Printer",
    "Abwesend: Drucker defekt", "Abwesenheit: Drucker", "Out of Office: Printer broken",
    "OUT OF OFFICE : Printer", "Out of the Office: Printer", "Nicht im Büro: Drucker",
    "[EXT] Abwesend: Drucker", "Automatic Reply: Printer", "Autoreply: Ticket",
])
def test_prefixes_only_software_writes_are_enough(subject: str) -> None:
    result = classify(f"Subject: {subject}")
    assert (result.kind, result.rule) == (MailKind.AUTO_REPLY, "out-of-office")


@pytest.mark.parametrize("header", ["X-Autoreply: yes", "X-Autorespond: Urlaub",
                                    "Precedence: auto_reply"])
def test_autoresponder_headers(header: str) -> None:
    result = classify(header)
    assert (result.kind, result.rule) == (MailKind.AUTO_REPLY, "out-of-office")


def test_urlaub_with_the_null_sender_is_an_auto_reply() -> None:
    result = classify("Subject: Urlaub", "Ich bin im Urlaub.\n", envelope_from="")
    assert result.kind is MailKind.AUTO_REPLY


@pytest.mark.parametrize("subject, body", [
    ("Re: Printer broken", "Thanks! I'll be out of office next week, please call Max.\n"),
    ("Out of office next week - please close my ticket", "I am out of the office from ...\n"),
    ("Urlaub", "Ich bin ab Montag im Urlaub, bitte rufen Sie meine Kollegin an.\n"),
    ("Re: Automatic reply: Printer broken", "Why do I get an automatic reply?\n"),
    ("Autoreply settings broken", "Our autoreply does not work, can you help?\n"),
    ("Re: Out of office hours support", "Can we reach you at 8 pm?\n"),
    ("Out of office hours support", "Can we reach you at 8 pm?\n"),
    ("AW: Abwesend: Drucker defekt", "Warum bekomme ich eine Abwesenheitsnotiz?\n"),
    ("Abwesende Mitarbeiter: Liste fehlt", "Die Liste im Portal ist leer.\n"),
    ("Abwesend", "Bitte Ticket an Kollegin geben.\n"),
])
def test_a_person_writing_about_being_away_is_still_human(subject: str, body: str) -> None:
    result = classify(f"Subject: {subject}", body)
    assert (result.kind, result.may_auto_answer) == (MailKind.HUMAN, True)


# -- delivery status notifications (RFC 3464) -----------------------------------------------

def dsn(action: str, status: str, *, subject: str = "Undelivered Mail Returned to Sender",
        diagnostic: str = "smtp; 550 5.1.1 <bob@customer.example>: user unknown") -> bytes:
    return dedent(f"""\
        Return-Path: <>
        From: MAILER-DAEMON@mx.desk.example (Mail Delivery System)
        To: support@desk.example
        Subject: {subject}
        Auto-Submitted: auto-replied
        Message-ID: <dsn-1@mx.desk.example>
        MIME-Version: 1.0
        Content-Type: multipart/report; report-type=delivery-status; boundary="B"

        --B
        Content-Type: text/plain

        I'm sorry to have to inform you that your message could not be delivered.

        --B
        Content-Type: message/delivery-status

        Reporting-MTA: dns; mx.desk.example

        Final-Recipient: rfc822; bob@customer.example
        Original-Recipient: rfc822;Bob@customer.example
        Action: {action}
        Status: {status}
        Diagnostic-Code: {diagnostic}

        --B
        Content-Type: message/rfc822

        From: Service Desk <support+r-8f2kq9w7x3m4n5p6@desk.example>
        To: Bob <Bob@customer.example>
        Subject: [Ticket#2026030210000017] Printer broken
        Message-ID: <relay-7@relay.example.net>
        Message-ID: <t-17.a1@desk.example>

        We received your request.
        --B--
        """).encode()


def test_a_dsn_is_a_bounce_with_recipient_status_and_our_message_id() -> None:
    result = classify_raw(dsn("failed", "5.1.1"))
    assert (result.kind, result.rule, result.may_auto_answer) == (MailKind.BOUNCE, "dsn", False)
    assert result.reason.startswith("dsn: delivery status notification (RFC 3464)")
    bounce = result.bounce
    assert bounce is not None and bounce.permanent and not bounce.delayed
    [recipient] = bounce.recipients
    # the address we wrote to (Original-Recipient), RFC 3464 §2.3.1
    assert (recipient.address, recipient.status, recipient.action) == (
        "Bob@customer.example", "5.1.1", "failed")
    assert recipient.permanent and "user unknown" in recipient.diagnostic
    original = bounce.original
    assert result.original == original
    assert original.message_ids[0] == "<t-17.a1@desk.example>"   # ours first (our_domains)
    assert "<relay-7@relay.example.net>" in original.message_ids
    assert "<dsn-1@mx.desk.example>" not in original.message_ids  # never the bounce's own
    assert original.subject == "[Ticket#2026030210000017] Printer broken"
    assert original.to_addresses == ("Bob@customer.example",)
    assert "support+r-8f2kq9w7x3m4n5p6@desk.example" in original.from_addresses
    assert bounce.original_message_ids == original.message_ids


def test_a_delayed_dsn_is_not_a_hard_bounce() -> None:
    result = classify_raw(dsn("delayed", "4.4.7", subject="Delivery Status Notification (Delay)",
                              diagnostic="smtp; 451 4.4.7 try again later"))
    assert result.kind is MailKind.BOUNCE and result.bounce is not None
    assert result.bounce.delayed and not result.bounce.permanent
    [recipient] = result.bounce.recipients
    assert (recipient.action, recipient.status, recipient.permanent) == ("delayed", "4.4.7", False)


def test_given_up_after_temporary_errors_is_failed_but_not_hard() -> None:
    result = classify_raw(dsn("failed", "4.4.7", diagnostic="smtp; 421 4.4.7 expired"))
    assert result.bounce is not None
    [recipient] = result.bounce.recipients
    assert recipient.action == "failed" and not recipient.permanent


def test_a_generic_status_is_refined_by_the_diagnostic() -> None:
    result = classify_raw(dsn("failed", "5.0.0",
                              diagnostic="smtp; 550 5.2.2 <bob@customer.example> mailbox full"))
    assert result.bounce is not None and result.bounce.recipients[0].status == "5.2.2"


def test_a_successful_delivery_notice_is_automatic_not_a_bounce() -> None:
    result = classify_raw(dsn("delivered", "2.0.0", diagnostic="smtp; 250 ok"))
    assert (result.kind, result.rule, result.bounce) == (MailKind.AUTOMATIC, "dsn", None)
    assert result.original is not None and "<t-17.a1@desk.example>" in result.original.message_ids


def test_both_parser_policies_read_the_same() -> None:
    compat = classify_raw(dsn("failed", "5.1.1"))
    default = classify_raw(dsn("failed", "5.1.1"), policy=email.policy.default)
    assert compat == default


QMAIL_BOUNCE = b"""\
Return-Path: <>
Date: 2 Mar 2026 09:55:24 -0000
From: MAILER-DAEMON@mx.desk.example
To: support@desk.example
Subject: failure notice

Hi. This is the qmail-send program at mx.desk.example.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<bob@customer.example>:
192.0.2.25 does not like recipient.
Remote host said: 550 5.1.1 <bob@customer.example>... User unknown
Giving up on 192.0.2.25.

--- Below this line is a copy of the message.

Return-Path: <support@desk.example>
Date: 2 Mar 2026 09:55:23 -0000
Message-ID: <t-17.a2@desk.example>
From: support@desk.example
To: bob@customer.example
Subject: [Ticket#2026030210000017] Printer broken

We received your request.
"""


def test_a_prose_bounce_is_read_too() -> None:
    result = classify_raw(QMAIL_BOUNCE)
    assert (result.kind, result.rule) == (MailKind.BOUNCE, "bounce-heuristic")
    assert result.bounce is not None
    [recipient] = result.bounce.recipients
    assert (recipient.address, recipient.status, recipient.permanent) == (
        "bob@customer.example", "5.1.1", True)
    assert result.bounce.original_message_ids == ("<t-17.a2@desk.example>",)
    assert result.bounce.original.subject.startswith("[Ticket#2026030210000017]")


def test_a_person_forwarding_a_bounce_is_still_human() -> None:
    body = QMAIL_BOUNCE.decode().split("\n\n", 1)[1]
    result = classify("Subject: Fwd: failure notice", body)
    assert (result.kind, result.may_auto_answer) == (MailKind.HUMAN, True)


def test_a_postmaster_writing_by_hand_is_not_a_bounce() -> None:
    body = ("Hello, since Monday mail from your desk could not be delivered to our users.\n"
            "Could you check your SPF record? Regards, Max (postmaster)\n")
    result = classify("From: Max <postmaster@customer.example>\nSubject: SPF problem", body,
                      envelope_from="postmaster@customer.example")
    assert (result.kind, result.rule, result.may_auto_answer) == (
        MailKind.AUTOMATIC, "mailer-daemon", False)    # never answered, but not a bounce


def test_a_person_pasting_dsn_fields_is_still_human() -> None:
    body = ("Why did I get this?\n\nFinal-Recipient: rfc822; bob@customer.example\n"
            "Action: failed\nStatus: 5.1.1\n")
    assert classify("Subject: strange message", body).kind is MailKind.HUMAN


# -- complaints (RFC 5965) and read receipts (RFC 8098) ---------------------------------------

ARF = b"""\
From: Feedback Loop <fbl@isp.example>
To: abuse@desk.example
Subject: Abuse report
Message-ID: <fbl-1@isp.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="F"

--F
Content-Type: text/plain

This is an email abuse report.

--F
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1
Original-Rcpt-To: <bob@isp.example>

--F
Content-Type: text/rfc822-headers

From: support@desk.example
To: bob@isp.example
Subject: [Ticket#2026030210000017] Printer broken
Message-ID: <t-17.a3@desk.example>

--F--
"""


def test_an_abuse_report_is_a_complaint_about_our_mail() -> None:
    result = classify_raw(ARF)
    assert (result.kind, result.rule, result.may_auto_answer) == (
        MailKind.COMPLAINT, "arf", False)
    assert "Feedback-Type: abuse" in result.reason
    assert result.bounce is not None and result.bounce.recipients == ()
    assert result.bounce.original_message_ids == ("<t-17.a3@desk.example>",)


MDN = b"""\
From: Bob <bob@customer.example>
To: support@desk.example
Subject: Read: Printer broken
Message-ID: <mdn-1@customer.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=disposition-notification; boundary="R"

--R
Content-Type: text/plain

Your message was displayed.

--R
Content-Type: message/disposition-notification

Reporting-UA: mail.customer.example; Mailer
Final-Recipient: rfc822; bob@customer.example
Original-Message-ID: <t-17.a4@desk.example>
Disposition: manual-action/MDN-sent-manually; displayed

--R--
"""


def test_a_read_receipt_is_automatic_and_names_our_mail() -> None:
    result = classify_raw(MDN)
    assert (result.kind, result.rule, result.may_auto_answer) == (
        MailKind.AUTOMATIC, "read-receipt", False)
    assert result.original is not None
    assert result.original.message_ids == ("<t-17.a4@desk.example>",)


# -- never raises ---------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    b"", b"\x00\xff\xfe garbage", b"Subject: =?x-unknown?B?////?=\n\nhi",
    b"Content-Type: multipart/report; report-type=delivery-status\n\nno boundary at all",
    b"Content-Type: message/delivery-status\n\n\n\n",
    b"From: <>\nReturn-Path: <\nSubject: Undeliverable\n\n<@>:\n550 5.1.1\n",
    b"Content-Type: text/plain; charset=no-such-charset\nContent-Transfer-Encoding: base64"
    b"\n\n!!!not base64",
])
def test_malformed_mail_gets_a_classification(raw: bytes) -> None:
    for policy in (email.policy.compat32, email.policy.default):
        assert isinstance(classify_raw(raw, policy=policy), Classification)


@pytest.mark.parametrize("line", [b"a" * 200_000, b"a@" * 100_000, b"<" * 200_000,
                                  b"RCPT TO: " + b"a." * 100_000,
                                  b"Message-ID: " + b"a" * 200_000])
def test_hostile_long_lines_stay_cheap(line: bytes) -> None:
    """Regexes that backtrack on one long line would take minutes here."""
    head = b"Return-Path: <>\nFrom: MAILER-DAEMON@mx.example\nSubject: failure notice\n"
    for ctype in (b"text/plain", b"text/html"):
        started = time.monotonic()
        result = classify_raw(head + b"Content-Type: " + ctype + b"\n\n" + line + b"\n")
        assert result.may_auto_answer is False
        assert time.monotonic() - started < 5


def test_deeply_nested_attachments_are_bounded() -> None:
    raw = b"Content-Type: text/plain\n\nbottom\n"
    for _ in range(60):
        raw = b"Content-Type: message/rfc822\n\n" + raw
    raw = b"Return-Path: <>\nFrom: MAILER-DAEMON@mx.example\nSubject: failure notice\n" + raw
    assert classify_raw(raw).may_auto_answer is False


def test_without_a_mime_tree_the_headers_and_text_still_decide() -> None:
    result = classify_message({"Subject": "Hi", "Auto-Submitted": "auto-generated"}, None, "",
                              envelope_from=None, our_addresses=OURS)
    assert (result.kind, result.rule) == (MailKind.AUTOMATIC, "auto-submitted")
    assert classify_message({}, None, "", envelope_from=None, our_addresses=()).kind is \
        MailKind.HUMAN


def test_a_rule_that_fails_is_skipped_and_the_mail_is_not_answered(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def rule_broken(_: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(loops, "RULES", (("broken", rule_broken), *loops.RULES))
    result = classify("Subject: hi")
    assert (result.kind, result.may_auto_answer, result.rule) == (
        MailKind.HUMAN, False, "classifier-error")
    assert "broken (RuntimeError)" in result.reason
    assert classify("Precedence: bulk").rule == "precedence"   # the others still decide
