"""Answering mail to the FAQ address with matching articles.

In: the session of the mail's transaction, an `answers.Answering` (settings and renderer),
the parsed question and its stored mail's id. Out: the reason for the processing log
(outcome `ignored`, rule `faq-address`) and, when answered, a `faq-answer` mail in the outbox
plus a `faq_mail_answer` row (so a "not solved" reply finds the question again; see
`routing.rules._route_faq`). No ticket is opened.

Rules: one search per question, a second one in every language when the first finds nothing
(`search.answer_hits`: subject and the new text of the body,
typo alternatives, good matches only, at most `[faq] max_answers`); registered customers
also get customers-only articles. The answer's language is the customer's stored language,
else the question's (German or English stop words, `text.guess_language`), else the language
of the queue "not solved" tickets go to. Only articles in that language are offered; when
none matches, articles in the other languages are, and the answer says so. An answer counts
against the sender's automatic answers per hour like an acknowledgment (RFC 3834 §2); over
the limit, the question is logged and not answered. Automatic mail never gets here (routing
ignores it).
"""

from __future__ import annotations

from sqlalchemy import insert
from sqlmodel import Session

from gateway.config.settings import Settings
from gateway.faq.search import CUSTOMERS, PUBLIC, answer_hits
from gateway.faq.text import guess_language
from gateway.inbound.directory import DatabaseDirectory
from gateway.mail.addresses import address_key
from gateway.mail.message import ParsedMessage
from gateway.outbound import answers
from gateway.outbound.answers import Answering
from gateway.outbound.render import FaqArticle
from gateway.store.models import table_of, utcnow
from gateway.store.models_faq import FaqMailAnswer

_answer = table_of(FaqMailAnswer)
DEFAULT_LANGUAGE = "de"


def answer_question(session: Session, answering: Answering, parsed: ParsedMessage,
                    mail_id: int | None) -> str:
    """Answer a question sent to the FAQ address; what was done, for the log."""
    sender = parsed.from_.address if parsed.from_ else ""
    if not sender:
        return "a question to the FAQ address without a sender address: not answered"
    if not answers.claim_auto_answer(session, answering, sender, "faq-answer"):
        limit = answering.settings.outbound.max_auto_replies_per_hour
        return (f"a question to the FAQ address, not answered: {sender} reached the limit of "
                f"{limit} automatic answers per hour")
    customer = DatabaseDirectory(session).customer_by_address(sender)
    text = parsed.body_text[:parsed.quote_start] if parsed.quote_start else parsed.body_text
    question = f"{parsed.subject}\n{text}"
    language = (customer.language if customer else None) or guess_language(question) \
        or default_language(answering.settings)
    seen, limit = CUSTOMERS if customer else PUBLIC, answering.settings.faq.max_answers
    hits = answer_hits(session, question, visibilities=seen, limit=limit, language=language)
    other_language = not hits
    if other_language:     # nothing in the question's language: the others, and say so
        hits = answer_hits(session, question, visibilities=seen, limit=limit)
    base_url = answering.renderer.base_url
    articles = [FaqArticle(hit.title, hit.snippet.text, f"{base_url}/faq/{hit.key}",
                           hit.language) for hit in hits]
    message_id = answers.faq_answered(session, answering, parsed, language=language,
                                      articles=articles, other_language=other_language)
    if message_id is None:
        return f"a question to the FAQ address, not answered: cannot write to {sender}"
    if mail_id is not None:
        session.execute(insert(_answer).values(
            message_id=message_id, received_mail_id=mail_id, address_key=address_key(sender),
            language=language, articles=len(hits), created=utcnow()))
    if not hits:
        return "a question to the FAQ address, answered: no matching article (sent the FAQ link)"
    elsewhere = f" in other languages (none in {language})" if other_language else ""
    return (f"a question to the FAQ address, answered with {len(hits)} article(s){elsewhere}: "
            + ", ".join(hit.key for hit in hits))


def default_language(settings: Settings) -> str:
    """The language of the queue a "not solved" reply would open its ticket in ([faq]
    template's queue, [faq] queue, else the first queue), for questions whose language is
    unknown; German without queues."""
    template = next((t for t in settings.template if t.id == settings.faq.template), None)
    queue = template.queue if template else settings.faq.queue
    queues = [q for q in settings.queue if q.id == queue] or list(settings.queue)
    return queues[0].language if queues else DEFAULT_LANGUAGE
