"""A mail composed at queue time and rendered at delivery: the recipe carries the context
exactly, the bytes are the same on every rendering, and what can fail fails at queue time."""

from __future__ import annotations

import dataclasses
import email
import email.policy
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.mail.attachment_scan import ScannedFile
from gateway.outbound import recipe, render
from gateway.outbound.headers import HeaderError, MailIdentity
from gateway.outbound.render import FaqArticle, GuideAnswer, MailRenderer, RenderError

QUEUE = MailIdentity("Service Desk", "support@support.example.com")
CUSTOMER = ("Jürgen Müller", "juergen.mueller@kunde.example.org")
NOW = datetime(2026, 11, 27, 14, 30, tzinfo=UTC)
ACK = {"customer_name": "Jürgen", "title": "Drucker", "template_name": "Störung",
       "priority": 3, "answers": [GuideAnswer("Gerät", "HP 4250")], "missing": ["Raum"],
       "faq": [FaqArticle("Toner wechseln", "Klappe öffnen …", "https://d/faq/1", "de")]}


def compose_ack(renderer: MailRenderer, **options: object) -> object:
    return renderer.compose("ack", "de", ACK, sender=QUEUE, to=[CUSTOMER],
                            ticket_number="2026112710000017", in_reply_to="<a@kunde>",
                            references=("<a@kunde>",), now=NOW, **options)  # type: ignore[arg-type]


def sample(**context: object) -> recipe.Recipe:
    return recipe.Recipe(
        event="ack", language="de", context=context, ticket_number="1", sender_name="Desk",
        subject="[Ticket#1] Drucker", date=NOW, sender=("Desk", "support@example.com"),
        to=(("Max", "max@example.com"),), reply_to=None, in_reply_to=None, references=(),
        auto_submitted="auto-replied", sign_for="example.com")


def test_every_kind_of_context_value_comes_back_as_it_went_in() -> None:
    berlin = datetime(2026, 3, 29, 3, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    context = {
        "text": "Grüße\r\n<b>", "number": 3, "ratio": 0.5, "flag": True, "nothing": None,
        "aware": NOW, "zoned": berlin, "naive": datetime(2026, 1, 2, 3, 4, 5),
        "day": date(2026, 12, 24), "answers": [GuideAnswer("Gerät", "HP")],
        "faq": [FaqArticle("T", "E", "https://x/faq/1")],
        "left_out": [ScannedFile("dump.bin", "application/octet-stream", 3 << 20)],
        "entries": [{"number": "1", "due": None, "created": NOW, "nested": {"a": [1, 2]}}],
        "looks_tagged": {"$datetime": "not a date"},
    }
    back = recipe.decode(recipe.encode(sample(**context))).context
    assert back == context
    assert back["zoned"].utcoffset() == timedelta(hours=2)        # the offset of that moment
    assert back["naive"].tzinfo is None
    assert type(back["answers"][0]) is GuideAnswer and type(back["day"]) is date


def test_tuples_come_back_as_lists() -> None:
    assert recipe.decode(recipe.encode(sample(pairs=(("a", 1),)))).context == {
        "pairs": [["a", 1]]}


@pytest.mark.parametrize("value", [{1, 2}, object(), b"bytes", {1: "not a string key"}])
def test_a_value_a_recipe_cannot_carry_fails_when_the_mail_is_queued(value: object) -> None:
    renderer = MailRenderer(base_url="https://desk.example.com")
    with pytest.raises(RenderError, match=r"context\.strange"):
        renderer.compose("ack", "de", {**ACK, "strange": value}, sender=QUEUE, to=[CUSTOMER],
                         ticket_number="1")


def test_an_unregistered_dataclass_is_refused() -> None:
    @dataclasses.dataclass
    class Secret:
        value: str

    with pytest.raises(TypeError, match="Secret"):
        recipe.encode(sample(x=Secret("s")))


def test_a_composed_mail_has_no_bytes_until_finished_and_then_always_the_same() -> None:
    renderer = MailRenderer(base_url="https://desk.example.com")
    mail = compose_ack(renderer)
    assert mail.raw is None and mail.recipe  # type: ignore[attr-defined]
    first = renderer.finish(mail.recipe, mail.message_id)  # type: ignore[attr-defined]
    again = MailRenderer(base_url="https://desk.example.com").finish(
        mail.recipe, mail.message_id)  # type: ignore[attr-defined]
    assert first == again                               # a retry sends the same bytes
    message = email.message_from_bytes(first, policy=email.policy.default)
    assert message["Message-ID"] == mail.message_id  # type: ignore[attr-defined]
    assert message["Date"].datetime == NOW                # fixed when it was queued
    assert str(message["Subject"]) == ("Ihre Anfrage ist eingegangen: Drucker "
                                       "[Ticket#2026112710000017]")
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "HP 4250" in text and "Toner wechseln" in text and "Raum" in text


def test_render_is_compose_then_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.outbound.render.new_message_id",
                        lambda domain: f"<ticketgw.0123456789abcdef@{domain}>")
    renderer = MailRenderer(base_url="https://desk.example.com")
    rendered = renderer.render("ack", "de", ACK, sender=QUEUE, to=[CUSTOMER],
                               ticket_number="2026112710000017", in_reply_to="<a@kunde>",
                               references=("<a@kunde>",), now=NOW)
    composed = compose_ack(renderer)
    assert rendered.recipe is None
    assert rendered.raw == renderer.finish(composed.recipe,  # type: ignore[attr-defined]
                                           composed.message_id)  # type: ignore[attr-defined]


def test_what_can_fail_fails_when_the_mail_is_queued() -> None:
    renderer = MailRenderer(base_url="https://desk.example.com")
    with pytest.raises(HeaderError):
        renderer.compose("ack", "de", ACK, sender=QUEUE, to=[("X", "jürgen@kunde.example")],
                         ticket_number="1")
    with pytest.raises(RenderError, match="missing 'missing'"):
        renderer.compose("ack", "de", {k: v for k, v in ACK.items() if k != "missing"},
                         sender=QUEUE, to=[CUSTOMER], ticket_number="1")


def test_a_template_broken_after_queueing_fails_at_delivery_with_its_name(
        tmp_path: Path) -> None:
    renderer = MailRenderer(base_url="https://desk.example.com", override_dir=tmp_path)
    mail = compose_ack(renderer)
    (tmp_path / "ack.de.txt.j2").write_text("{{ no_such_value }}\n")
    broken = MailRenderer(base_url="https://desk.example.com", override_dir=tmp_path)
    with pytest.raises(RenderError, match=r"ack\.de\.txt\.j2"):
        broken.finish(mail.recipe, mail.message_id)  # type: ignore[attr-defined]


def test_a_recipe_of_another_version_is_refused_not_guessed() -> None:
    text = recipe.encode(sample()).replace('"v":1', '"v":99')
    renderer = MailRenderer(base_url="https://desk.example.com")
    with pytest.raises(RenderError, match="version 99"):
        renderer.finish(text, "<x@example.com>")


def test_datetimes_in_other_zones_show_the_same_local_time() -> None:
    moment = datetime(2026, 7, 1, 12, 0, tzinfo=timezone(timedelta(hours=-4)))
    back = recipe.decode(recipe.encode(sample(due=moment))).context["due"]
    assert back == moment and back.utcoffset() == timedelta(hours=-4)


def test_a_notice_to_several_staff_members_is_rendered_once_per_batch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    renderer = MailRenderer(base_url="https://desk.example.com")
    context = {"kind": "new", "customer_name": "Jürgen", "customer_address": CUSTOMER[1],
               "title": "Drucker", "body": "Er druckt nicht.", "priority": 3}
    notices = [renderer.compose("staff-notify", "de", context, sender=QUEUE,
                                to=[(name, f"{name.lower()}@example.com")],
                                ticket_number="2026112710000017")
               for name in ("Anna", "Bert", "Cleo")]
    rendered: list[str] = []
    render_one = render._render_one
    monkeypatch.setattr(render, "_render_one", lambda event, template, values: (
        rendered.append(template.name) or render_one(event, template, values)))
    texts: dict[str, tuple[str, str]] = {}
    mails = [renderer.finish(n.recipe, n.message_id, texts=texts)  # type: ignore[arg-type]
             for n in notices]
    assert rendered == ["staff-notify.de.txt.j2", "staff-notify.de.html.j2"]
    bodies = [email.message_from_bytes(m, policy=email.policy.default) for m in mails]
    assert [str(b["To"]) for b in bodies] == [
        "Anna <anna@example.com>", "Bert <bert@example.com>", "Cleo <cleo@example.com>"]
    assert len({b.get_body(("plain",)).get_content() for b in bodies}) == 1  # type: ignore[union-attr]
    # without the batch's cache each is rendered on its own, to the same bytes
    assert [renderer.finish(n.recipe, n.message_id) for n in notices] == mails  # type: ignore[arg-type]


@pytest.mark.parametrize("text", [
    '{"v":1,"event":',                                   # cut short
    '{"v":1,"event":"ack"}',                             # fields missing
    '[1, 2]',                                            # not an object
    '{"v":1,"event":"ack","language":"de","context":{},"ticket_number":null,'
    '"sender_name":"D","subject":"s","date":"2026-12-07T06:00:00+00:00","sender":"x",'
    '"to":[],"reply_to":null,"in_reply_to":null,"references":[],'
    '"auto_submitted":"no","sign_for":"example.com"}',   # a field of another shape
    '{"v":1,"event":"ack","language":"de","context":{"$Secret":{"a":1}}}',
])
def test_a_damaged_recipe_is_refused_with_one_kind_of_error(text: str) -> None:
    with pytest.raises(ValueError):
        recipe.decode(text)
    renderer = MailRenderer(base_url="https://desk.example.com")
    with pytest.raises(RenderError, match="cannot be read"):
        renderer.finish(text, "<x@example.com>")
