"""Answering mail to the FAQ address with matching articles.

In: the session of the mail's transaction, an `answers.Answering` (settings and renderer),
the parsed question and its stored mail's id. Out: the reason for the processing log
(outcome `ignored`, rule `faq-address`) and, when answered, a `faq-answer` mail in the outbox
plus a `faq_mail_answer` row (so a "not solved" reply finds the question again; see
`routing.rules._route_faq`). No ticket is opened.

Rules: one search per question (`search.answer_hits`: subject and the new text of the body,
typo alternatives, good matches only, at most `[faq] max_answers`); registered customers
also get customers-only articles; the language is the customer's, else the question's
(German or English stop words), else German. An answer counts against the sender's
automatic answers per hour like an acknowledgment (RFC 3834 §2); over the limit, the
question is logged and not answered. Automatic mail never gets here (routing ignores it).
"""

from __future__ import annotations

from sqlalchemy import insert
from sqlmodel import Session

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
        or DEFAULT_LANGUAGE
    hits = answer_hits(session, question, visibilities=CUSTOMERS if customer else PUBLIC,
                       limit=answering.settings.faq.max_answers)
    base_url = answering.renderer.base_url
    articles = [FaqArticle(hit.title, hit.snippet.text, f"{base_url}/faq/{hit.key}")
                for hit in hits]
    message_id = answers.faq_answered(session, answering, parsed, language=language,
                                      articles=articles)
    if message_id is None:
        return f"a question to the FAQ address, not answered: cannot write to {sender}"
    if mail_id is not None:
        session.execute(insert(_answer).values(
            message_id=message_id, received_mail_id=mail_id, address_key=address_key(sender),
            language=language, articles=len(hits), created=utcnow()))
    if not hits:
        return "a question to the FAQ address, answered: no matching article (sent the FAQ link)"
    return (f"a question to the FAQ address, answered with {len(hits)} article(s): "
            + ", ".join(hit.key for hit in hits))
