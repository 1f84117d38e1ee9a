"""Portal pages of ticket templates (KIX "Ticketvorlagen"): /templates groups the templates
available to the user's organisation into change requests, incident reports and service
requests, each with the addresses that open the same ticket by mail; /templates/{id} is a
template's form (subject*, the conversation guide field by
field, free text, attachments, priority defaulting to the template's) and creates the ticket
on POST (see `actions.create_from_template`: the same ticket and acknowledgment as by mail).

Guarantees: a template that is not available to the user answers 404 (GET and POST alike);
required fields and the priority (1-5; absent: the template's) are checked on the server (the
`required` attribute is only a help); a form with a problem is shown again with what was
typed and what is wrong, and nothing is stored.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from gateway.config.settings import TEMPLATE_GROUPS, TemplateSettings
from gateway.web.actions import (
    TemplateForm,
    available,
    create_from_template,
    guide_labels,
    localised,
)
from gateway.web.formats import format_size
from gateway.web.i18n import text
from gateway.web.pages import Portal, Visitor
from gateway.web.sessions import PortalUser
from gateway.web.uploads import TooLarge, chosen, store_uploads


def _name(template: TemplateSettings, language: str) -> str:
    return localised(template.name, language, template.id)


def build_router(portal: Portal) -> APIRouter:
    router = APIRouter()
    web = portal.settings.web

    def templates_for(user: PortalUser) -> list[TemplateSettings]:
        return [t for t in portal.settings.template if available(t, user)]

    def find(user: PortalUser, template_id: str) -> TemplateSettings | None:
        return next((t for t in templates_for(user) if t.id == template_id), None)

    def not_found(visitor: Visitor) -> Response:
        return portal.render(visitor, "error.html", 404,
                             message=text(visitor.language, "not_found"))

    @router.get("/templates")
    def template_list(request: Request) -> Response:
        visitor = portal.require_user(request)
        assert visitor.user is not None
        mine = templates_for(visitor.user)
        # the template's own addresses: a customer can just as well mail them (issue #17)
        groups = [(group, [(t.id, _name(t, visitor.language), [str(a) for a in t.addresses])
                           for t in mine if t.group == group]) for group in TEMPLATE_GROUPS]
        return portal.render(visitor, "templates.html",
                             groups=[(g, items) for g, items in groups if items])

    def form_page(visitor: Visitor, template: TemplateSettings, status: int = 200,
                  error: str | None = None, values: dict[str, str] | None = None) -> Response:
        labels = guide_labels(template, visitor.language)
        return portal.render(
            visitor, "template_form.html", status, template=template,
            name=_name(template, visitor.language), labels=labels, error=error,
            values=values or {"priority": str(template.priority)})

    @router.get("/templates/{template_id}")
    def template_form(request: Request, template_id: str) -> Response:
        visitor = portal.require_user(request)
        assert visitor.user is not None
        template = find(visitor.user, template_id)
        if template is None:
            return not_found(visitor)
        return form_page(visitor, template)

    @router.post("/templates/{template_id}")
    async def create(request: Request, template_id: str) -> Response:
        visitor = await run_in_threadpool(portal.require_user, request)
        assert visitor.user is not None
        user = visitor.user
        template = find(user, template_id)
        if template is None:
            return await run_in_threadpool(not_found, visitor)
        if int(request.headers.get("content-length") or 0) > web.max_upload_size + 2**20:
            return await run_in_threadpool(
                form_page, visitor, template, 413,
                text(visitor.language, "too_large",
                     size=format_size(web.max_upload_size, visitor.language)))
        form = await request.form(max_files=50, max_fields=200)
        portal.check_csrf(visitor, form.get("csrf"))
        values = {k: str(v) for k, v in form.items() if isinstance(v, str) and k != "csrf"}
        subject = values.get("subject", "").strip()
        priority = values.get("priority", "")
        labels = guide_labels(template, visitor.language)
        missing = [text(visitor.language, "subject")] if not subject else []
        answers = []
        for question in template.guide:
            answer = values.get(f"guide_{question.key}", "").strip()
            if answer:
                answers.append((question.key, answer))
            elif question.required:
                missing.append(labels[question.key])
        files = chosen(form.getlist("attachments"))

        def work() -> Response:
            if missing:
                return form_page(visitor, template, 400, text(
                    visitor.language, "required_missing", fields=", ".join(missing)), values)
            if priority not in ("", "1", "2", "3", "4", "5"):
                return form_page(visitor, template, 400,
                                 text(visitor.language, "priority_invalid"), values)
            try:
                stored = store_uploads(portal.blobs, files, web.max_upload_size)
            except TooLarge:
                return form_page(visitor, template, 413, text(
                    visitor.language, "too_large",
                    size=format_size(web.max_upload_size, visitor.language)),
                    values)
            chosen_priority = int(priority) if priority else template.priority
            with portal.db.write() as session:
                form = TemplateForm(subject=subject, text=values.get("text", "").strip(),
                                    priority=chosen_priority, answers=tuple(answers))
                ref, acknowledged = create_from_template(
                    session, portal.answering, portal.numbering, user, template, form, stored)
            created = "1" if acknowledged else "quiet"    # "quiet": no acknowledgment sent
            return portal.redirect(f"/tickets/{quote(ref.number)}?created={created}")

        try:
            return await run_in_threadpool(work)
        finally:
            await form.close()

    return router
