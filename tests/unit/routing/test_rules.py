"""Routing decisions, pure: ParsedMessages built by hand and an in-memory Directory (a twin
of the database one, which the integration tests exercise)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.config.loading import settings_from_mapping
from gateway.config.settings import Settings
from gateway.mail.addresses import address_key
from gateway.mail.message import MailAddress, ParsedMessage
from gateway.routing.addressbook import (
    AddressBook,
    Verdict,
    reply_token_of,
    split_plus,
    staff_token_of,
)
from gateway.routing.context import (
    CustomerInfo,
    FaqAnswerInfo,
    MailContext,
    SenderCheck,
    TicketInfo,
)
from gateway.routing.decisions import (
    AppendDecision,
    FaqQuestion,
    IgnoreDecision,
    NewTicketDecision,
    RejectDecision,
)
from gateway.routing.mail_fields import clean_title
from gateway.routing.rules import route_message
from tests.conftest import BASE_CONFIG

MAX = CustomerInfo(1, "mmuster", "acme", "de")
OPEN_TICKET = TicketInfo(7, "2026112710000007", "open", "servicedesk", 1,
                         "max@acme.example")


@dataclass
class MemoryDirectory:
    """In-memory twin of `inbound.directory.DatabaseDirectory`."""

    tickets: list[TicketInfo] = field(default_factory=lambda: [OPEN_TICKET])
    message_ids: dict[str, int] = field(default_factory=lambda: {"<ack-1@gw>": 7})
    tokens: dict[str, int] = field(default_factory=lambda: {"A" * 24: 7})
    staff_tokens: dict[str, int] = field(default_factory=lambda: {"S" * 24: 7})
    customers: dict[str, CustomerInfo] = field(
        default_factory=lambda: {"max@acme.example": MAX})
    staff: set[str] = field(default_factory=lambda: {"anna.agent@example.com"})
    participants: set[str] = field(default_factory=lambda: {"colleague@acme.example"})
    seen: set[tuple[str, str]] = field(default_factory=set)
    faq_answers: dict[str, FaqAnswerInfo] = field(default_factory=lambda: {
        "<faq-1@gw>": FaqAnswerInfo("<faq-1@gw>", 41, "max@acme.example",
                                    "VPN bricht ab")})

    def _by_id(self, ticket_id: int) -> TicketInfo:
        return next(t for t in self.tickets if t.id == ticket_id)

    def ticket_by_reply_token(self, token: str) -> TicketInfo | None:
        return self._by_id(self.tokens[token]) if token in self.tokens else None

    def ticket_by_staff_token(self, token: str) -> TicketInfo | None:
        return self._by_id(self.staff_tokens[token]) if token in self.staff_tokens else None

    def ticket_by_message_ids(self, ids: Sequence[str]) -> tuple[TicketInfo, str] | None:
        for message_id in ids:
            if message_id in self.message_ids:
                return self._by_id(self.message_ids[message_id]), message_id
        return None

    def ticket_by_number(self, number: str) -> TicketInfo | None:
        return next((t for t in self.tickets if t.number == number), None)

    def customer_by_address(self, address: str) -> CustomerInfo | None:
        return self.customers.get(address_key(address))

    def is_staff(self, address: str) -> bool:
        return address_key(address).lower() in self.staff

    def is_participant(self, ticket_id: int, address: str) -> bool:
        return address_key(address).lower() in self.participants

    def is_duplicate(self, message_id: str, body: str) -> bool:
        return (message_id, body) in self.seen

    def faq_answer_by_message_ids(self, ids: Sequence[str]) -> FaqAnswerInfo | None:
        return next((self.faq_answers[i] for i in ids if i in self.faq_answers), None)


def settings(**extra: object) -> Settings:
    template = dict(BASE_CONFIG["template"][0])
    sap = {"id": "sap", "group": "incident", "queue": "servicedesk", "priority": 4,
           "name": {"en": "SAP"}, "addresses": ["sap@support.example.com"],
           "organisations": ["globex"]}
    data = {**BASE_CONFIG, "template": [template, BASE_CONFIG["template"][1], sap],
            "route": [{"address": "*@support.example.com", "queue": "servicedesk",
                       "unknown_sender": "accept"},
                      {"address": "vip@support.example.com", "template": "incident",
                       "unknown_sender": "reject"}],
            "faq": {"address": "faq@support.example.com"}, **extra}
    return settings_from_mapping(data, "test", Path("."))


def mail(subject: str = "Drucker defekt", sender: str = "max@acme.example",
         body: str = "Der Drucker druckt nicht.", **kwargs: object) -> ParsedMessage:
    values: dict[str, object] = dict(
        message_id="<new-1@acme.example>", message_id_generated=False, subject=subject,
        from_=MailAddress("Max Muster", sender), sender=None, reply_to=(),
        to=(MailAddress("", "incident@support.example.com"),), cc=(),
        date=datetime(2026, 11, 27, tzinfo=UTC), date_from_header=True, in_reply_to=(),
        references=(), headers={}, body_text=body, body_html=None, quote_start=None,
        attachments=(), content_type="text/plain")
    values.update(kwargs)
    return ParsedMessage(**values)  # type: ignore[arg-type]


def decide(parsed: ParsedMessage, recipients: tuple[str, ...] = ("incident@support.example.com",),
           directory: MemoryDirectory | None = None, config: Settings | None = None,
           **context: object) -> object:
    config = config or settings()
    values: dict[str, object] = {"automatic": False, **context}
    return route_message(parsed, MailContext(recipients=recipients, **values),  # type: ignore[arg-type]
                         settings=config, addressbook=AddressBook(config),
                         directory=directory or MemoryDirectory())


def test_a_customer_mail_to_a_template_address_opens_a_ticket() -> None:
    decision = decide(mail(body="Hallo\nBetroffenes System: HP LaserJet\n"))
    assert isinstance(decision, NewTicketDecision)
    assert (decision.rule, decision.template, decision.queue) == (
        "template-address", "incident", "servicedesk")
    assert decision.customer == MAX and decision.priority == 3
    assert decision.guide_answers == (("system", "HP LaserJet"),)
    assert decision.missing_required == ()


def test_guide_answers_by_key_or_either_label_and_missing_ones() -> None:
    assert decide(mail(body="affected system: VPN")).guide_answers == (  # type: ignore[union-attr]
        ("system", "VPN"),)
    assert decide(mail(body="SYSTEM: SAP")).guide_answers == (  # type: ignore[union-attr]
        ("system", "SAP"),)
    quoted = mail(body="Danke.\n\nAm 1.1. schrieb X:\n> Betroffenes System: alt", quote_start=8)
    decision = decide(quoted)
    assert isinstance(decision, NewTicketDecision)
    assert decision.guide_answers == () and decision.missing_required == ("system",)


def test_reply_by_in_reply_to_references_tag_and_token() -> None:
    by_header = decide(mail(subject="Re: x", in_reply_to=("<ack-1@gw>",)))
    assert isinstance(by_header, AppendDecision) and by_header.rule == "in-reply-to"
    by_refs = decide(mail(subject="Re: x", references=("<other@x>", "<ack-1@gw>")))
    assert isinstance(by_refs, AppendDecision) and by_refs.rule == "references"
    by_tag = decide(mail(subject="AW: WG: Drucker [Ticket#2026112710000007]"))
    assert isinstance(by_tag, AppendDecision) and by_tag.rule == "subject-tag"
    by_token = decide(mail(subject="anything"),
                      recipients=(f"support+r-{'A' * 24}@support.example.com",))
    assert isinstance(by_token, AppendDecision) and by_token.rule == "reply-token"
    assert by_token.ticket.number == "2026112710000007" and by_token.sender_role == "customer"


def test_a_stranger_with_a_valid_tag_opens_a_new_ticket_and_says_why() -> None:
    decision = decide(mail(subject="Re: [Ticket#2026112710000007] hijack",
                           sender="mallory@evil.example"))
    assert isinstance(decision, NewTicketDecision)
    assert "mallory@evil.example may not write to ticket 2026112710000007" in decision.reason
    assert decision.title == "hijack"


def test_staff_and_participants_may_write() -> None:
    staff = decide(mail(subject="Re: [Ticket#2026112710000007]", sender="Anna.Agent@Example.com"))
    assert isinstance(staff, AppendDecision) and staff.sender_role == "staff"
    assert staff.internal and "subject-tag" in staff.held_back     # not on the staff address
    colleague = decide(mail(subject="[Ticket#2026112710000007]", sender="colleague@acme.example"))
    assert isinstance(colleague, AppendDecision) and colleague.sender_role == "participant"


def test_a_reply_to_a_closed_ticket_reopens_it_or_opens_a_follow_up() -> None:
    closed = replace(OPEN_TICKET, state="closed")
    directory = MemoryDirectory(tickets=[closed])
    reopened = decide(mail(in_reply_to=("<ack-1@gw>",)), directory=directory)
    assert isinstance(reopened, AppendDecision) and reopened.reopen
    follow_up = decide(mail(in_reply_to=("<ack-1@gw>",)), directory=directory,
                       config=settings(tickets={"reopen_on_reply": False}))
    assert isinstance(follow_up, NewTicketDecision)
    assert follow_up.related_ticket == "2026112710000007"


def test_rejections() -> None:
    no_subject = decide(mail(subject="  "))
    assert isinstance(no_subject, RejectDecision) and no_subject.rule == "no-subject"
    assert no_subject.answer
    stranger = decide(mail(sender="who@nowhere.example"), recipients=("vip@support.example.com",))
    assert isinstance(stranger, RejectDecision) and stranger.rule == "unknown-sender"
    not_for_acme = decide(mail(), recipients=("sap@support.example.com",))
    assert isinstance(not_for_acme, RejectDecision)
    assert not_for_acme.rule == "template-not-available"
    nowhere = decide(mail(), recipients=("x@elsewhere.example",))
    assert isinstance(nowhere, RejectDecision) and nowhere.rule == "no-route"
    automatic = decide(mail(subject=""), automatic=True)
    assert isinstance(automatic, RejectDecision) and not automatic.answer


def test_unknown_senders_follow_the_route_policy() -> None:
    accepted = decide(mail(sender="new@customer.example"))
    assert isinstance(accepted, NewTicketDecision) and accepted.customer is None
    assert accepted.contact == "new@customer.example"
    assert "is not a registered customer" in accepted.reason


def test_routes_plus_tags_and_patterns() -> None:
    tagged = decide(mail(), recipients=("incident+change@support.example.com",))
    assert isinstance(tagged, NewTicketDecision) and tagged.template == "change"
    assert tagged.rule == "plus-tag"
    pattern = decide(mail(), recipients=("anything@support.example.com",))
    assert isinstance(pattern, NewTicketDecision) and pattern.rule == "route-pattern"
    assert pattern.template is None and pattern.queue == "servicedesk"
    two = decide(mail(), recipients=("change@support.example.com", "incident@support.example.com"))
    assert isinstance(two, NewTicketDecision) and two.template == "change"   # the first


def test_priority_from_headers_and_body() -> None:
    assert decide(mail(headers={"x-priority": "1 (Highest)"})).priority == 5  # type: ignore[union-attr]
    assert decide(mail(headers={"importance": "low"})).priority == 2  # type: ignore[union-attr]
    assert decide(mail(body="Priorität: 4\nbitte schnell")).priority == 4  # type: ignore[union-attr]
    assert decide(mail(), recipients=("sap@support.example.com",),
                  directory=MemoryDirectory(customers={"max@acme.example": replace(
                      MAX, organisation="globex")})).priority == 4  # type: ignore[union-attr]


@pytest.mark.parametrize(("body", "priority"), [
    ("Priorität: hoch\nDer Drucker steht.", 4),
    ("Priority: high\nThe printer is down.", 4),
    ("priority:   Very High", 5),
    ("Priorität: dringend", 5),
    ("Priority: urgent", 5),
    ("Priorität: sehr niedrig", 1),
    ("Hallo,\n\nPriorität: niedrig\n", 2),
    ("Priority: 4 high", 4),
])
def test_priority_names_in_a_priority_line(body: str, priority: int) -> None:
    assert decide(mail(body=body)).priority == priority  # type: ignore[union-attr]


@pytest.mark.parametrize("body", [
    "Das ist dringend!",                          # the word alone, not as a line's value
    "Priority: urgent, please",                   # not the whole value
    "Priority: whenever you can",
    "Wir haben eine hohe Priorität: hoch ist sie", # not a priority line
    "Hallo\n> Priority: urgent",                  # quoted history never counts
])
def test_priority_words_elsewhere_set_nothing(body: str) -> None:
    decision = decide(mail(body=body))
    assert isinstance(decision, NewTicketDecision) and decision.priority == 3


def test_loops_duplicates_bounces_and_out_of_office() -> None:
    own = decide(mail(sender="incident@support.example.com"))
    assert isinstance(own, IgnoreDecision) and own.rule == "own-address"
    directory = MemoryDirectory(seen={("<new-1@acme.example>", "Der Drucker druckt nicht.")})
    duplicate = decide(mail(), directory=directory)
    assert isinstance(duplicate, IgnoreDecision) and duplicate.rule == "duplicate"
    bounce = decide(mail(sender="MAILER-DAEMON@mx.example"), automatic_kind="bounce",
                    automatic_reason="dsn", original_message_ids=("<ack-1@gw>",))
    assert isinstance(bounce, IgnoreDecision) and bounce.ticket == OPEN_TICKET
    ooo = decide(mail(subject="Abwesenheitsnotiz", in_reply_to=("<ack-1@gw>",)),
                 automatic_kind="auto_reply", automatic_reason="Auto-Submitted: auto-replied")
    assert isinstance(ooo, AppendDecision) and ooo.internal and not ooo.reopen


def test_titles_and_addresses() -> None:
    assert clean_title("AW: Re: WG: Drucker [Ticket#2026112710000007]") == "Drucker"
    assert clean_title("RE[2]: Fwd: Test") == "Test"
    assert split_plus("support+incident@x.de") == ("support@x.de", "incident")
    assert reply_token_of(f"s+r-{'b' * 24}@x.de") == "b" * 24
    assert reply_token_of("s+incident@x.de") is None


@pytest.mark.parametrize("address, verdict", [
    ("incident@support.example.com", Verdict.OK),
    ("Incident@SUPPORT.example.com", Verdict.OK),
    ("incident+whatever@support.example.com", Verdict.OK),
    ("random@support.example.com", Verdict.OK),            # the catch-all route
    ("someone@gmail.example", Verdict.RELAY),
])
def test_recipient_checks(address: str, verdict: Verdict) -> None:
    assert AddressBook(settings()).check_recipient(address) is verdict


def test_unknown_address_in_our_domain() -> None:
    config = settings(route=[])
    assert AddressBook(config).check_recipient("random@support.example.com") is Verdict.UNKNOWN


def test_one_mail_to_two_template_addresses_opens_one_ticket_by_default() -> None:
    decision = decide(mail(), recipients=("incident@support.example.com",
                                          "change@support.example.com"))
    assert isinstance(decision, NewTicketDecision)
    assert (decision.template, decision.also) == ("incident", ())
    assert "also addressed to change: one ticket" in decision.reason


def test_with_several_templates_each_every_template_address_gets_its_ticket() -> None:
    config = settings(inbound={"several_templates": "each"})
    decision = decide(mail(), config=config,
                      recipients=("change@support.example.com", "incident@support.example.com",
                                  "incident@support.example.com", "sap@support.example.com"))
    assert isinstance(decision, NewTicketDecision)
    assert decision.template == "change"
    assert [d.template for d in decision.also] == ["incident"]   # each address once
    # sap is only for the organisation globex: that one is refused, the others go ahead
    assert "one ticket for each of 2 addresses" in decision.reason
    assert "not for: template-not-available" in decision.reason


# -- the FAQ address -------------------------------------------------------------------------

FAQ = ("faq@support.example.com",)
QUOTE = "\n\nAm 27.11.2026 um 10:00 schrieb Service Desk:\n> Ist Ihr Problem nicht gelöst?\n"


def test_a_question_to_the_faq_address_is_answered_not_ticketed() -> None:
    decision = decide(mail(subject="VPN bricht ab"), recipients=FAQ)
    assert isinstance(decision, IgnoreDecision)
    assert (decision.rule, decision.faq_question) == ("faq-address", True)


def test_automatic_mail_to_the_faq_address_gets_no_answer() -> None:
    decision = decide(mail(subject="Monitoring: disk full"), recipients=FAQ, automatic=True,
                      automatic_kind="automatic",
                      automatic_reason="Auto-Submitted: auto-generated")
    assert isinstance(decision, IgnoreDecision)
    assert decision.rule == "faq-address" and not decision.faq_question


def test_not_solved_above_the_quote_opens_a_ticket_with_the_question() -> None:
    body = "Leider nicht gelöst, der Client ist aktuell." + QUOTE
    reply = mail(subject="Re: Antworten aus unseren FAQ: VPN bricht ab", body=body,
                 in_reply_to=("<faq-1@gw>",), quote_start=body.index("Am 27."))
    decision = decide(reply, recipients=FAQ)
    assert isinstance(decision, NewTicketDecision)
    assert decision.rule == "faq-not-solved"
    assert decision.question == FaqQuestion(41, "<faq-1@gw>")
    assert (decision.title, decision.queue, decision.template) == ("VPN bricht ab",
                                                                   "servicedesk", None)
    assert decision.customer == MAX


@pytest.mark.parametrize("body", [
    "Danke, das hat geholfen!" + QUOTE,                  # "nicht gelöst" only in the quote
    "Super, danke.\n> Ist Ihr Problem nicht gelöst?\n",  # a quote the parser did not find
])
def test_a_reply_without_not_solved_is_ignored(body: str) -> None:
    start = body.index("Am 27.") if "Am 27." in body else None
    reply = mail(subject="Re: VPN", body=body, references=("<x@y>", "<faq-1@gw>"),
                 quote_start=start)
    decision = decide(reply, recipients=FAQ)
    assert isinstance(decision, IgnoreDecision) and decision.rule == "faq-reply"


@pytest.mark.parametrize("phrase", ["not solved", "Not resolved yet", "UNGELÖST",
                                    "noch nicht geloest"])
def test_not_solved_in_either_language(phrase: str) -> None:
    reply = mail(subject="Re: VPN", body=phrase, in_reply_to=("<faq-1@gw>",))
    assert isinstance(decide(reply, recipients=FAQ), NewTicketDecision)


def test_someone_else_replying_to_an_faq_answer_asks_a_new_question() -> None:
    reply = mail(subject="Re: VPN", body="nicht gelöst", sender="other@acme.example",
                 in_reply_to=("<faq-1@gw>",))
    decision = decide(reply, recipients=FAQ)
    assert isinstance(decision, IgnoreDecision) and decision.faq_question


def test_the_faq_template_decides_queue_and_priority() -> None:
    config = settings(faq={"address": "faq@support.example.com", "template": "change"})
    reply = mail(subject="Re: VPN", body="nicht gelöst", in_reply_to=("<faq-1@gw>",))
    decision = decide(reply, recipients=FAQ, config=config)
    assert isinstance(decision, NewTicketDecision)
    assert (decision.template, decision.queue) == ("change", "changes")


STAFF_ADDRESS = f"support+s-{'S' * 24}@support.example.com"
PASS = SenderCheck("pass", "mx: dmarc=pass for example.com")
NO_PASS = SenderCheck("none", "mx: no DMARC or DKIM pass for example.com")
FAIL = SenderCheck("fail", "mx: dmarc=fail for acme.example")


def test_only_the_staff_reply_address_lets_staff_act() -> None:
    acting = decide(mail(subject="Re: x", sender="anna.agent@example.com"),
                    recipients=(STAFF_ADDRESS,))
    assert isinstance(acting, AppendDecision)
    assert (acting.rule, acting.sender_role, acting.internal, acting.held_back) == (
        "staff-token", "staff", False, "")
    assert acting.ticket == OPEN_TICKET
    vouched = decide(mail(subject="Re: x", sender="anna.agent@example.com"),
                     recipients=(STAFF_ADDRESS,), sender_check=PASS)
    assert isinstance(vouched, AppendDecision) and not vouched.internal
    for path, recipients, fields in [
            ("reply-token", (f"support+r-{'A' * 24}@support.example.com",), {}),
            ("in-reply-to", ("incident@support.example.com",), {"in_reply_to": ("<ack-1@gw>",)}),
            ("references", ("incident@support.example.com",), {"references": ("<ack-1@gw>",)}),
            ("subject-tag", ("incident@support.example.com",),
             {"subject": "[Ticket#2026112710000007]"})]:
        held = decide(mail(sender="anna.agent@example.com", **fields), recipients=recipients,
                      sender_check=PASS)
        assert isinstance(held, AppendDecision), path
        assert (held.rule, held.sender_role, held.internal, held.reopen) == (
            path, "staff", True, False)
        assert "staff reply address" in held.held_back and path in held.held_back
        assert "kept as an internal note" in held.reason


def test_on_the_staff_address_our_mta_must_vouch_for_staff() -> None:
    held = decide(mail(sender="anna.agent@example.com"), recipients=(STAFF_ADDRESS,),
                  sender_check=NO_PASS)
    assert isinstance(held, AppendDecision) and held.internal and held.rule == "staff-token"
    assert "no DMARC or DKIM pass" in held.held_back


def test_anyone_else_on_the_staff_address_is_no_staff() -> None:
    stranger = decide(mail(sender="mallory@evil.example"), recipients=(STAFF_ADDRESS,))
    assert isinstance(stranger, NewTicketDecision)
    assert "staff reply address of ticket 2026112710000007, but mallory@evil.example may " \
           "not write to ticket" in stranger.reason
    customer = decide(mail(), recipients=(STAFF_ADDRESS,))      # a leaked staff address
    assert isinstance(customer, AppendDecision) and customer.sender_role == "customer"
    assert not customer.held_back


def test_a_staff_member_is_staff_on_the_staff_address_even_as_the_contact() -> None:
    own = replace(OPEN_TICKET, contact_key="anna.agent@example.com", customer_user_id=None)
    directory = MemoryDirectory(tickets=[own])
    decision = decide(mail(sender="anna.agent@example.com"), recipients=(STAFF_ADDRESS,),
                      directory=directory)
    assert isinstance(decision, AppendDecision) and decision.sender_role == "staff"
    as_customer = decide(mail(sender="anna.agent@example.com", in_reply_to=("<ack-1@gw>",)),
                         directory=directory)
    assert isinstance(as_customer, AppendDecision) and as_customer.sender_role == "customer"


def test_a_customer_failing_dmarc_is_not_appended_as_the_customer() -> None:
    decision = decide(mail(subject="Re: Drucker", in_reply_to=("<ack-1@gw>",)),
                      sender_check=FAIL)
    assert isinstance(decision, NewTicketDecision)
    assert decision.customer is None and decision.contact == "max@acme.example"
    assert (decision.unverified, decision.claimed_ticket) == (FAIL.detail, "2026112710000007")
    assert "not appended as the customer of ticket 2026112710000007" in decision.reason
    assert decision.title == "Drucker"
    bare = decide(mail(subject="Re: [Ticket#2026112710000007]"), sender_check=FAIL)
    assert isinstance(bare, NewTicketDecision) and bare.title == "Re: 2026112710000007"
    colleague = decide(mail(subject="Toner [Ticket#2026112710000007]",
                            sender="colleague@acme.example"), sender_check=FAIL)
    assert isinstance(colleague, NewTicketDecision) and colleague.unverified
    no_verdict = decide(mail(subject="Re: Drucker", in_reply_to=("<ack-1@gw>",)),
                        sender_check=NO_PASS)
    assert isinstance(no_verdict, AppendDecision) and no_verdict.sender_role == "customer"


def test_a_new_mail_failing_dmarc_is_no_registered_customer_and_gets_no_answer() -> None:
    fresh = decide(mail(), sender_check=FAIL)
    assert isinstance(fresh, NewTicketDecision)
    assert fresh.customer is None and fresh.unverified and fresh.claimed_ticket is None
    assert "unverified sender" in fresh.reason
    refused = decide(mail(), recipients=("vip@support.example.com",), sender_check=FAIL)
    assert isinstance(refused, RejectDecision) and refused.rule == "unknown-sender"
    assert not refused.answer                   # the answer would go to the forged address


def test_staff_tokens_are_recipients_of_ours() -> None:
    book = AddressBook(settings(route=[]))
    assert book.check_recipient(STAFF_ADDRESS) is Verdict.OK
    assert staff_token_of(STAFF_ADDRESS) == "S" * 24
    assert staff_token_of(f"support+r-{'A' * 24}@support.example.com") is None
    assert reply_token_of(STAFF_ADDRESS) is None
