"""`gateway.classify.loops` against the real mails in tests/corpus.

- sisimai: every mail in expected-bounces.json must not be answered, and at least 95% must
  get the kind that matches sisimai's reason. Which reasons are which:
  `vacation` -> auto_reply, `feedback` -> complaint, every other reason (userunknown,
  mailboxfull, expired, filtered, blocked, onhold, ...) -> bounce, because for the gateway
  they all say "this delivery failed or is delayed". The share, how often the bounced
  recipients and the original Message-ID are found, and how the statuses compare with
  sisimai's are printed. The file lists no recipient addresses, so addresses are checked
  three ways: the count against sisimai's, every DSN recipient against the mail's own
  Final-/Original-Recipient lines, and a hand-checked table for bounces written in prose.
- flanker, zammad, cpython, spamscope: bounces, a complaint, a read receipt, and human mails
  that must stay human (no false positives); list mails are rightly not answered.

A missing corpus fails these tests with a message; they never skip.
"""

from __future__ import annotations

import email.policy
import json
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.classify.loops import (
    Bounce,
    Classification,
    MailKind,
    classify_message,
    classify_parsed,
)
from gateway.classify.out_of_office import out_of_office_subject
from tests.conftest import CORPUS
from tests.unit.classify.test_loops import classify_raw, parse_mail


@pytest.fixture(scope="module")
def corpus() -> Path:
    if not (CORPUS / "sisimai" / "expected-bounces.json").is_file():
        pytest.fail(f"the mail corpus is missing: expected it at {CORPUS} "
                    "(see tests/corpus/SOURCES.md); these tests need the real mails",
                    pytrace=False)
    return CORPUS


def classify_file(path: Path, policy: email.policy.Policy = email.policy.compat32,
                  ) -> Classification:
    if not path.is_file():
        pytest.fail(f"corpus file missing: {path}", pytrace=False)
    return classify_raw(path.read_bytes(), policy=policy)


# -- sisimai ----------------------------------------------------------------------------------

KIND_OF_REASON = {"vacation": MailKind.AUTO_REPLY, "feedback": MailKind.COMPLAINT}


def expected_kind(recipients: list[dict[str, object]]) -> MailKind:
    reasons = {str(r["reason"]) for r in recipients}
    if len(reasons) == 1:
        return KIND_OF_REASON.get(reasons.pop(), MailKind.BOUNCE)
    return MailKind.BOUNCE


@dataclass(frozen=True)
class Case:
    path: str
    raw: bytes
    expected: list[dict[str, object]]
    result: Classification


@pytest.fixture(scope="module")
def sisimai(corpus: Path) -> list[Case]:
    data = json.loads((corpus / "sisimai" / "expected-bounces.json").read_text())
    cases = []
    for path, entry in sorted(data["emails"].items()):
        raw = (corpus / "sisimai" / path).read_bytes()
        cases.append(Case(path, raw, entry["recipients"], classify_raw(raw)))
    assert len(cases) >= 200, "expected-bounces.json lists fewer mails than documented"
    return cases


def test_no_sisimai_mail_is_ever_answered(sisimai: list[Case]) -> None:
    answered = [c.path for c in sisimai if c.result.may_auto_answer]
    assert not answered


def test_sisimai_kinds(sisimai: list[Case], capsys: pytest.CaptureFixture[str]) -> None:
    wrong = [c for c in sisimai if c.result.kind is not expected_kind(c.expected)]
    share = 1 - len(wrong) / len(sisimai)
    with capsys.disabled():
        print(f"\nsisimai: {len(sisimai) - len(wrong)}/{len(sisimai)} = {share:.1%} classified "
              "as the kind matching sisimai's reason; the others:")
        for case in wrong:
            print(f"  {case.path}: {case.expected[0]['reason']} -> {case.result.reason[:90]}")
    assert share >= 0.95


def bounces(cases: list[Case]) -> list[tuple[Case, Bounce]]:
    return [(c, c.result.bounce) for c in cases
            if expected_kind(c.expected) is MailKind.BOUNCE and c.result.bounce is not None]


def test_sisimai_bounced_recipients(sisimai: list[Case],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    found = bounces(sisimai)
    same_count = [c for c, bounce in found if len(bounce.recipients) == len(c.expected)]
    pairs = [(c, got, want) for c, bounce in found
             for got, want in zip(bounce.recipients, c.expected, strict=False)
             if want["status"]]
    exact = [p for p in pairs if _same_status(p[1].status, str(p[2]["status"]))]
    hard = [p for p in pairs if p[1].permanent == str(p[2]["status"]).startswith("5")]
    with capsys.disabled():
        print(f"sisimai bounces: recipients found in {len(same_count)}/{len(found)} "
              f"({len(same_count) / len(found):.1%}) with sisimai's count; status agrees "
              f"{len(exact)}/{len(pairs)} ({len(exact) / len(pairs):.1%}; sisimai's x.0.9xx "
              f"pseudo codes compared by class); hard/temporary agrees {len(hard)}/"
              f"{len(pairs)} ({len(hard) / len(pairs):.1%}; delayed DSNs are never hard here)")
    assert len(same_count) / len(found) >= 0.95
    assert len(hard) / len(pairs) >= 0.95


def _same_status(got: str, want: str) -> bool:
    if re.fullmatch(r"\d\.0\.9\d\d", want):       # sisimai's pseudo status: class only
        return got[:1] == want[:1]
    return got == want


def test_dsn_recipients_are_the_reports_own_recipients(
        sisimai: list[Case], capsys: pytest.CaptureFixture[str]) -> None:
    """An oracle independent of the classifier: the address must be on a Final-Recipient or
    Original-Recipient line of the raw mail."""
    checked = wrong = 0
    for case, bounce in bounces(sisimai):
        if case.result.rule != "dsn":
            continue
        text = case.raw.decode("utf-8", "replace").lower()
        listed = set(re.findall(r"^(?:final|original)-recipient:[^;\n]*;\s*<?([^\s<>]+@[^\s<>]+?)"
                                r">?\s*$", text, re.M))
        if not listed:       # e.g. Exim naming a file: the prose was read instead
            continue
        for recipient in bounce.recipients:
            checked += 1
            if recipient.address.lower() not in listed:
                wrong += 1
                print(case.path, recipient.address, listed)
    with capsys.disabled():
        print(f"sisimai DSN recipients on the mail's own Final-/Original-Recipient lines: "
              f"{checked - wrong}/{checked}")
    assert checked > 100 and wrong == 0


# Read by hand in the corpus: the recipients these prose bounces name (qmail, Exim, Gmail,
# Yahoo, Lotus Notes, IMail, Sendmail v5, Zoho, DragonFly, KDDI, Verizon, ...).
HAND_CHECKED = {
    "lhost-apachejames-01.eml": {"000000000000@vtext.example.com"},
    "lhost-dragonfly-01.eml": {"pseudo-local-part@google.example.com"},
    "lhost-dragonfly-04.eml": {"postmaster@cx.libsisimai.org"},
    "lhost-exchange2003-02.eml": {"kijitora@example.co.jp", "mikeneko@example.co.jp"},
    "lhost-exim-08.eml": {"kijitora@example.org"},
    "lhost-exim-60.eml": {"nyaan%gol.com@q002.kijitora.gol.com"},
    "lhost-ezweb-03.eml": {"this-local-part-does-not-exist-on-the-site@ezweb.ne.jp"},
    "lhost-gmail-01.eml": {"userunknown@example.jp"},
    "lhost-gmail-17.eml": {"mikeneko@libsisimai.org"},
    "lhost-gmx-03.eml": {"mikeneko@example.co.jp", "sabineko@example.co.jp"},
    "lhost-imailserver-03.eml": {"kijitora@neko.example.co.jp"},
    "lhost-imailserver-06.eml": {"kijitora@example.jp"},
    "lhost-kddi-02.eml": {"kijitora@00000000000000.dion.ne.jp"},
    "lhost-mailfoundry-01.eml": {"kijitora@example.org"},
    "lhost-mfilter-04.eml": {"kijitora@libisismai.org"},
    "lhost-mxlogic-01.eml": {"kijitora@example.co.jp"},
    "lhost-notes-03.eml": {"kijitora@example.com"},
    "lhost-opensmtpd-03.eml": {"kijitora@neko.example.jp"},
    "lhost-qmail-03.eml": {"kijitora@example.org"},
    "lhost-v5sendmail-07.eml": {"hachiware@example.edu", "kijitora@example.org",
                                "mikeneko@example.org"},
    "lhost-verizon-02.eml": {"may-be-straycat-nyaaaaaan@vtext.com"},
    "lhost-x1-01.eml": {"kijitora@example.co.jp"},
    "lhost-x2-02.eml": {"kijitora@example.com", "mikeneko@example.com", "sabineko@example.com"},
    "lhost-x3-01.eml": {"kijitora@example.com"},
    "lhost-x4-01.eml": {"kijitora@example.com"},
    "lhost-x5-01.eml": {"kijitora@neko.example.org"},
    "lhost-x6-02.eml": {"kijitora@libsisimai.org"},
    "lhost-yahoo-04.eml": {"kijitora@example.co.jp"},
    "lhost-zoho-02.eml": {"mikeneko@example.co.jp", "sabineko@example.co.jp"},
}


def test_prose_bounce_recipients_match_the_hand_checked_ones(
        sisimai: list[Case], capsys: pytest.CaptureFixture[str]) -> None:
    by_name = {Path(c.path).name: c for c in sisimai}
    wrong = {}
    for name, want in HAND_CHECKED.items():
        bounce = by_name[name].result.bounce
        got = {r.address for r in bounce.recipients} if bounce else set()
        if got != want:
            wrong[name] = got
    with capsys.disabled():
        print(f"sisimai prose bounces, hand-checked recipients: "
              f"{len(HAND_CHECKED) - len(wrong)}/{len(HAND_CHECKED)}")
    assert not wrong


_ID_LINE = re.compile(rb"^[ \t>]*Message-I[dD][ \t]*:[ \t]*(?:\n[ \t]+)?<?([^\s<>]+@[^\s<>]+?)>?"
                      rb"[ \t]*$", re.M | re.I)


def original_ids_in(raw: bytes) -> list[str]:
    """The oracle: Message-ID lines below the mail's own header block (the returned mail,
    attached or quoted), without the report's own. QP soft breaks and HTML escapes in the
    raw text leave ids cut or wrapped; they are compared by prefix."""
    raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    head, _, body = raw.partition(b"\n\n")
    own = {m.group(1).decode("latin-1").lower() for m in _ID_LINE.finditer(head)}
    ids = []
    for match in _ID_LINE.finditer(body):
        value = match.group(1).decode("latin-1").replace("&lt;", "").replace("&gt;", "")
        if value.lower() not in own:
            ids.append(value.rstrip("=").lower())
    return ids


def test_original_message_id_when_the_report_contains_the_original(
        sisimai: list[Case], capsys: pytest.CaptureFixture[str]) -> None:
    with_original = [(c, original_ids_in(c.raw)) for c in sisimai]
    with_original = [(c, ids) for c, ids in with_original if ids]
    missed = []
    for case, ids in with_original:
        got = case.result.original.message_ids if case.result.original else ()
        first = got[0].strip("<>").lower() if got else ""
        if not (first and any(first.startswith(i) for i in ids)):
            missed.append(f"{case.path}: want one of {ids[:2]}, got {got[:2]}")
    rate = 1 - len(missed) / len(with_original)
    with capsys.disabled():
        print(f"sisimai: original Message-ID found first in {len(with_original) - len(missed)}/"
              f"{len(with_original)} ({rate:.1%}) of the reports that contain the original")
        for line in missed:
            print("  missed", line)
    assert rate >= 0.95


def test_the_same_through_the_gateway_parser(sisimai: list[Case]) -> None:
    """What the pipeline does: `parsing.parse_message` then `classify_parsed`."""
    from gateway.mail.parse import parse_message

    received = datetime(2026, 3, 2, tzinfo=UTC)
    for case in sisimai:
        parsed = parse_message(case.raw, received=received)
        result = classify_parsed(parsed, envelope_from=None, our_addresses=())
        assert (result.kind, result.rule, result.bounce) == (
            case.result.kind, case.result.rule, case.result.bounce), case.path


def test_newline_variants_read_like_the_originals(corpus: Path) -> None:
    data = json.loads((corpus / "sisimai" / "expected-bounces.json").read_text())
    for variant, base in sorted(data["newline_variants"].items()):
        got = classify_file(corpus / "sisimai" / variant)
        want = classify_file(corpus / "sisimai" / base)
        assert (got.kind, got.bounce, got.original) == (want.kind, want.bounce, want.original), \
            variant


def test_the_negative_sisimai_case_is_human(corpus: Path) -> None:
    result = classify_file(corpus / "sisimai" / "maildir" / "not" / "is-not-bounce-01.eml")
    assert (result.kind, result.may_auto_answer) == (MailKind.HUMAN, True)


def test_a_bounce_read_from_an_mbox(corpus: Path) -> None:
    # split by hand: `mailbox.mbox` opens the file for writing, and the corpus is read-only
    raw = (corpus / "sisimai" / "mailbox" / "mbox-1").read_bytes()
    messages = [m for m in re.split(rb"\n(?=From )", raw) if m.strip()]
    assert messages and messages[0].startswith(b"From ")
    for message in messages:
        headers, mime, body = parse_mail(message)
        result = classify_message(headers, mime, body, envelope_from=None, our_addresses=())
        assert result.kind is MailKind.BOUNCE and result.bounce is not None
        assert result.bounce.recipients and result.bounce.original_message_ids


# -- flanker, zammad, cpython, spamscope -----------------------------------------------------

@pytest.mark.parametrize("path, address, status, permanent, message_id", [
    ("flanker/bounce/delayed.eml", "foo@example.com", "4.0.0", False, None),
    ("flanker/bounce/gmail-invalid-address.eml", "awfawfawfawfawfaw@someserverhere.com",
     "5.1.0", True, "<CAKsfaBUUGqVZiaMrmH3TRPfq1odQPtM7Ey5YW1SgyJJRHtAjgw@mail.gmail.com>"),
    ("flanker/bounce/mailbox-full.eml", "user@aol.com", "5.2.2", True,
     "<4E326A95.3010907@example.com>"),
    ("flanker/bounce/office365.eml", "noname@example.com", "5.1.10", True,
     "<20171013111011.20866.254C2F3A4D7AA526@ninomail.com>"),
    ("zammad/mail033-undelivered-mail-returned-to-sender-notification.box",
     "not_existing@znuny.com", "5.1.1", True,
     "<notification.20150830145600.1.4.5f4fd063-f69b-4e64-a92d-5e7128bd6682@127.0.0.1:3000>"),
    ("zammad/mail055.box", "ticket-bounce-trigger2@example.com", "5.1.1", True,
     "<20170526150141.232.13312@example.zammad.loc>"),
    ("cpython/msg_16.txt", "jangel1@cougar.noc.ucla.edu", "5.0.0", True,
     "<002001c144a6$8752e060$56104586@oxy.edu>"),
    ("spamscope-mail-parser/mail_malformed_2", "abh@netpar.com.br", "4.2.2", False,
     "<004801d1fc84$01c934ac$b247f0b7$@infospacemail.com>"),
])
def test_bounces_from_other_sources(corpus: Path, path: str, address: str, status: str,
                                    permanent: bool, message_id: str | None) -> None:
    for policy in (email.policy.compat32, email.policy.default):
        result = classify_file(corpus / path, policy)
        assert (result.kind, result.may_auto_answer) == (MailKind.BOUNCE, False)
        assert result.bounce is not None
        [recipient] = result.bounce.recipients
        assert (recipient.address, recipient.status, recipient.permanent) == (
            address, status, permanent)
        if message_id:
            assert result.bounce.original_message_ids[0] == message_id


def test_zammads_bounce_names_the_ticket_of_the_returned_mail(corpus: Path) -> None:
    result = classify_file(
        corpus / "zammad" / "mail033-undelivered-mail-returned-to-sender-notification.box")
    assert result.original is not None and "[Ticket#10010]" in result.original.subject


def test_aol_complaint(corpus: Path) -> None:
    result = classify_file(corpus / "flanker" / "complaints" / "aol.eml")
    assert (result.kind, result.rule, result.may_auto_answer) == (
        MailKind.COMPLAINT, "arf", False)
    assert result.bounce is not None
    assert result.bounce.original_message_ids == ("<20101117174130.28884.55421@luna>",)


def test_a_read_receipt_is_never_answered(corpus: Path) -> None:
    result = classify_file(corpus / "flanker" / "disposition-notification.eml")
    assert (result.kind, result.rule, result.may_auto_answer) == (
        MailKind.AUTOMATIC, "read-receipt", False)
    assert result.original is not None
    assert result.original.message_ids == ("<199509192301.23456@example.org>",)


# Plain mails people wrote (their headers checked: no list, precedence or automatic header).
HUMAN_MAILS = [
    "zammad/mail001.box", "zammad/mail005.box", "zammad/mail068.box", "zammad/mail070.box",
    "cpython/msg_10.txt", "cpython/msg_15.txt", "cpython/msg_44.txt", "cpython/msg_47.txt",
    "django-helpdesk/quoted_printable.eml", "django-helpdesk/blank-body-with-attachment.eml",
    "flanker/8bitmime.eml", "flanker/attached-pdf.eml", "flanker/bilingual-simple.eml",
    "flanker/dashed-boundaries.eml", "flanker/enclosed.eml", "flanker/encoded-header.eml",
    "flanker/false-multipart.eml", "flanker/iphone.eml", "flanker/missing-boundaries.eml",
    "flanker/multipart.eml", "flanker/no-ctype.eml", "flanker/outlook-express.eml",
    "flanker/quoted-printable.eml", "flanker/relative.eml", "flanker/signed.eml",
    "flanker/text-only.eml", "flanker/torture-part.eml",
    "spamscope-mail-parser/mail_malformed_1", "spamscope-mail-parser/mail_malformed_3",
    "spamscope-mail-parser/mail_test_2", "spamscope-mail-parser/mail_test_3",
    "spamscope-mail-parser/mail_test_7", "spamscope-mail-parser/mail_test_8",
    "spamscope-mail-parser/mail_test_9", "spamscope-mail-parser/mail_test_10",
    "spamscope-mail-parser/mail_test_12", "spamscope-mail-parser/mail_test_14",
    "spamscope-mail-parser/mail_test_17", "spamscope-mail-parser/mail_test_18",
    "spamscope-mail-parser/mail_test_19",
]

# Mails that came through a list or bulk sender: rightly not answered.
LIST_MAILS = {
    "zammad/mail078-content_transfer_encoding_x_uuencode.box": "owner-rrga-l@list.example.com",
    "cpython/msg_02.txt": "X-Mailman-Version",
    "flanker/from-encoding.eml": "Precedence: bulk",
    "spamscope-mail-parser/mail_test_5": "Precedence: bulk",
    "spamscope-mail-parser/mail_test_6": "List-Id",
    "spamscope-mail-parser/mail_test_13": "List-Id",
    "spamscope-mail-parser/mail_test_16": "Precedence: junk",
}


@pytest.mark.parametrize("path", HUMAN_MAILS)
def test_human_mail_stays_human(corpus: Path, path: str) -> None:
    for policy in (email.policy.compat32, email.policy.default):
        result = classify_file(corpus / path, policy)
        assert (result.kind, result.may_auto_answer, result.rule) == (
            MailKind.HUMAN, True, "human"), result.reason


@pytest.mark.parametrize("path, seen", sorted(LIST_MAILS.items()))
def test_list_mail_is_not_answered(corpus: Path, path: str, seen: str) -> None:
    result = classify_file(corpus / path)
    assert (result.kind, result.may_auto_answer) == (MailKind.LIST, False)
    assert seen.lower() in result.reason.lower()


def test_both_parser_policies_agree_on_the_whole_corpus(corpus: Path) -> None:
    paths = [p for p in sorted(corpus.rglob("*"))
             if p.is_file() and p.suffix not in (".tsv", ".md", ".json", ".yml")
             and p.parent.name != "LICENSES"]
    assert len(paths) > 300
    for path in paths:
        compat = classify_file(path)
        default = classify_file(path, email.policy.default)
        assert (compat.kind, compat.rule, compat.bounce, compat.original) == (
            default.kind, default.rule, default.bounce, default.original), path


def test_damaged_corpus_mails_still_get_a_classification(corpus: Path) -> None:
    """Truncated and bit-flipped copies (in memory) of real bounces and mails."""
    rng = random.Random(20260302)
    paths = sorted((corpus / "sisimai" / "maildir" / "bsd").glob("*.eml"))[::6]
    paths += [corpus / p for p in HUMAN_MAILS[::4]]
    for path in paths:
        raw = path.read_bytes()
        for _ in range(4):
            damaged = bytearray(raw[: rng.randrange(1, len(raw) + 1)])
            for _ in range(rng.randrange(0, 20)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            for policy in (email.policy.compat32, email.policy.default):
                assert isinstance(classify_raw(bytes(damaged), policy=policy), Classification)


# The absence subject prefixes ("Abwesend:", "Out of Office:", "Automatic reply:") on the
# whole corpus: only these mails carry one, and each is an auto-reply.
STRONG_ABSENCE_SUBJECTS = {"sisimai/maildir/bsd/rfc3834-04.eml": "Automatic reply: Nyaan"}


def test_absence_subject_prefixes_on_the_whole_corpus(corpus: Path) -> None:
    found = {}
    for path in sorted(corpus.rglob("*")):
        if not path.is_file() or path.suffix in (".tsv", ".md", ".json", ".yml") \
                or path.parent.name == "LICENSES":
            continue
        headers, _, _ = parse_mail(path.read_bytes())
        if out_of_office_subject(headers.get("subject", "")) == "strong":
            found[str(path.relative_to(corpus))] = headers["subject"]
    assert found == STRONG_ABSENCE_SUBJECTS


@pytest.mark.parametrize("path", HUMAN_MAILS[::3])
@pytest.mark.parametrize("subject, kind", [
    ("Abwesend: Drucker defekt", MailKind.AUTO_REPLY),
    ("Out of Office: Printer broken", MailKind.AUTO_REPLY),
    ("Re: Out of office hours support", MailKind.HUMAN),
    ("AW: Abwesend: Drucker defekt", MailKind.HUMAN),
])
def test_real_mails_under_an_absence_subject(corpus: Path, path: str, subject: str,
                                             kind: MailKind) -> None:
    """Real human mails (no automatic header) with only their Subject replaced: the prefix
    alone makes an auto-reply, a reply to one or a subject that merely holds the words not."""
    parts = re.split(rb"(\r?\n[ \t]*\r?\n)", (corpus / path).read_bytes(), maxsplit=1)
    head, blank, body = [*parts, b"", b""][:3]
    head = re.sub(rb"(?im)^Subject:[^\n]*\n?(?:[ \t][^\n]*\n?)*", b"", head)
    result = classify_raw(b"Subject: " + subject.encode() + b"\n" + head + blank + body)
    assert result.kind is kind, result.reason
    assert result.may_auto_answer is (kind is MailKind.HUMAN)
