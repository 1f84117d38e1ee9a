"""The file-exchange pages: GET /files/{token} (files and the upload form), POST
/files/{token} (upload, several files at once), GET /files/{token}/{file_id} (download),
and POST /tickets/{number}/files (the ticket view's button: a new area for the ticket, its
link shown and mailed to the logged-in customer; rate-limited per username).

In: the token from the path, the request body (streamed, see `file_uploads`). Out: pages in
the visitor's language, downloads, uploads recorded with their ticket article and staff mail.

Guarantees:
- Every request checks the token again (expiry, revocation) through `find_area`. A wrong,
  expired or revoked token gets the same answer: 404 and the same page. Each such answer
  counts against the client address (`[files] rate_limit_per_address` in
  `rate_limit_minutes`, rows in `web_attempt`); past the limit every file-exchange request
  from that address is answered 429, valid token or not, so guessing learns nothing.
- Uploads: limits enforced while streaming; a refused upload leaves no staging file, no
  blob and no row, and answers 413 (400 for a broken body) with the area page and the
  reason.
- Downloads: always an attachment (`Content-Disposition` with an ASCII `filename` and the
  RFC 8187 `filename*`), `nosniff`, the CSP `sandbox; default-src 'none'`, and a
  `Content-Type` from a short safe list, else `application/octet-stream`. A download limit
  is counted before the bytes go out.
- No page links elsewhere and every response has `Referrer-Policy: no-referrer` (set for
  the whole app), so the token never leaves in a `Referer`; `redaction` keeps it out of
  uvicorn's logs.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from gateway.files.exchange import (
    AreaPolicy,
    DownloadLimitReached,
    OpenArea,
    UploadRefused,
    claim_download,
    create_area,
    find_area,
    record_uploads,
)
from gateway.web import limits
from gateway.web.file_uploads import UploadLimits, discard_staged, receive_files
from gateway.web.formats import format_size
from gateway.web.i18n import text, text_n
from gateway.web.pages import Portal, Visitor
from gateway.web.queries import find_visible_ticket
from gateway.web.tickets import ATTACHMENT_CSP, content_disposition

log = logging.getLogger(__name__)

ATTEMPTS = "file-token"         # web_attempt kinds: failed tokens per address,
NEW_AREAS = "file-area"         # areas a customer asked for per username
SAFE_TYPES = frozenset({"application/pdf", "image/png", "image/jpeg", "image/gif",
                        "image/webp", "text/plain", "text/csv", "application/zip"})
PAGE_HEADERS = {"X-Robots-Tag": "noindex, nofollow"}


def download_type(content_type: str) -> str:
    return content_type if content_type in SAFE_TYPES else "application/octet-stream"


def build_router(portal: Portal) -> APIRouter:
    router = APIRouter()
    files = portal.settings.files
    policy = AreaPolicy.from_settings(files)
    limit = limits.Limit(window=timedelta(minutes=files.rate_limit_minutes),
                         per_user=files.rate_limit_per_address,
                         per_address=files.rate_limit_per_address)

    def refuse(visitor: Visitor, status: int, message: str, back: str | None = None) -> Response:
        # `here`: the language switch of a refusal does not echo the token, so every bad
        # token gets the very same page
        response = portal.render(visitor, "files_error.html", status, message=message,
                                 back=back, here="/")
        response.headers.update(PAGE_HEADERS)
        return response

    def gate(visitor: Visitor, token: str) -> OpenArea | Response:
        """The area, or the refusal: 429 past the guessing limit, else 404 for every bad
        token alike (and the failure counted)."""
        keys = [f"addr:{visitor.address}"]
        with portal.db.read() as session:
            if not limits.allowed(session, ATTEMPTS, keys, limit):
                return refuse(visitor, 429, text(visitor.language, "rate_limited"))
            area = find_area(session, token)
        if area is not None:
            return area
        with portal.db.write() as session:
            limits.record(session, ATTEMPTS, keys, limit)
        return refuse(visitor, 404, text(visitor.language, "files_invalid"))

    def page(visitor: Visitor, token: str, area: OpenArea, status: int = 200,
             error: str | None = None, notice: str | None = None) -> Response:
        upload = upload_limits(area)
        response = portal.render(visitor, "files.html", status, area=area, error=error,
                                 notice=notice, base=f"/files/{quote(token, safe='')}",
                                 limits=upload)
        response.headers.update(PAGE_HEADERS)
        return response

    def upload_limits(area: OpenArea) -> UploadLimits:
        return UploadLimits(max_file_size=policy.max_file_size,
                            files_left=max(0, policy.max_files - len(area.files)),
                            bytes_left=max(0, policy.max_total_size - area.total_size),
                            max_files=policy.max_files, max_total_size=policy.max_total_size)

    def refusal_text(visitor: Visitor, refused: UploadRefused) -> str:
        language = visitor.language
        if refused.reason in ("file-too-large", "area-full"):
            return text(language, "files_too_large",
                        size=format_size(policy.max_file_size, language),
                        total=format_size(policy.max_total_size, language))
        if refused.reason == "too-many-files":
            return text(language, "files_too_many", files=policy.max_files)
        return text(language, "files_incomplete")

    @router.get("/files/{token}")
    def show(request: Request, token: str) -> Response:
        visitor = portal.visitor(request)
        found = gate(visitor, token)
        if isinstance(found, Response):
            return found
        uploaded = request.query_params.get("uploaded", "")
        notice = (text_n(visitor.language, "files_uploaded", int(uploaded))
                  if uploaded.isdigit() and len(uploaded) < 5 else None)
        return page(visitor, token, found, notice=notice)

    @router.post("/files/{token}")
    async def upload(request: Request, token: str) -> Response:
        visitor = await run_in_threadpool(portal.visitor, request)
        found = await run_in_threadpool(gate, visitor, token)
        if isinstance(found, Response):
            return found
        area = found
        try:
            staged = await receive_files(request, portal.blobs, upload_limits(area),
                                         drain_limit=policy.max_total_size)
        except ClientDisconnect:               # the browser went away: nothing was kept
            log.info("file area %d: upload aborted by the client", area.id)
            return Response(status_code=400)
        except UploadRefused as refused:
            log.info("file area %d: upload refused: %s", area.id, refused.reason)
            status = 400 if refused.reason == "incomplete" else 413
            return await run_in_threadpool(page, visitor, token, area, status,
                                           refusal_text(visitor, refused))
        if not staged:
            return await run_in_threadpool(page, visitor, token, area, 400,
                                           text(visitor.language, "files_empty"))

        def commit() -> Response:
            try:
                with portal.db.write() as session:
                    current = find_area(session, token, lock=True)
                    if current is None:        # expired or revoked while uploading
                        return refuse(visitor, 404, text(visitor.language, "files_invalid"))
                    record_uploads(session, portal.answering, portal.blobs, current, staged)
            except UploadRefused as refused:   # a parallel upload filled the area
                return page(visitor, token, area, 413, refusal_text(visitor, refused))
            finally:
                discard_staged(staged)         # what was not adopted (nothing, normally)
            log.info("file area %d: %d file(s) uploaded", area.id, len(staged))
            return portal.redirect(f"/files/{quote(token, safe='')}?uploaded={len(staged)}")

        return await run_in_threadpool(commit)

    @router.post("/tickets/{number}/files")
    async def request_link(request: Request, number: str) -> Response:
        """The ticket view's button: an area for this ticket, its link shown and mailed to
        the logged-in customer's stored address (never one typed into a form)."""
        visitor = await run_in_threadpool(portal.require_user, request)
        form = await request.form(max_files=0, max_fields=5)
        portal.check_csrf(visitor, form.get("csrf"))
        return await run_in_threadpool(new_link, visitor, number)

    def new_link(visitor: Visitor, number: str) -> Response:
        user = visitor.user
        assert user is not None
        with portal.db.write() as session:
            found = find_visible_ticket(session, user, number,
                                        organisation=portal.settings.web.organisation_tickets)
            if found is None:
                return portal.render(visitor, "error.html", 404,
                                     message=text(visitor.language, "not_found"))
            keys = [f"user:{user.username}"]
            if not limits.allowed(session, NEW_AREAS, keys, portal.limit):
                return refuse(visitor, 429, text(visitor.language, "rate_limited"),
                              f"/tickets/{quote(number)}")
            limits.record(session, NEW_AREAS, keys, portal.limit)
            created = create_area(session, portal.answering, found.id,
                                  created_by=f"web:{user.username}", mail_to=user.email)
        response = portal.render(visitor, "files_created.html", number=number,
                                 link=created.url, mailed=bool(created.mailed_to),
                                 expires=created.expires)
        response.headers.update(PAGE_HEADERS)
        return response

    @router.get("/files/{token}/{file_id}")
    def download(request: Request, token: str, file_id: str) -> Response:
        visitor = portal.visitor(request)
        found = gate(visitor, token)
        if isinstance(found, Response):
            return found
        back = f"/files/{quote(token, safe='')}"
        if not file_id.isdigit() or len(file_id) > 18:
            return refuse(visitor, 404, text(visitor.language, "not_found"), back)
        handle = None
        try:
            with portal.db.write() as session:
                wanted = claim_download(session, found, int(file_id))
                if wanted is None:
                    return refuse(visitor, 404, text(visitor.language, "not_found"), back)
                handle = portal.blobs.open(wanted.sha256)   # a missing file counts nothing
        except DownloadLimitReached:
            return refuse(visitor, 410, text(visitor.language, "files_used_up"), back)
        except BaseException:
            if handle is not None:                       # the count did not commit
                handle.close()
            raise

        def chunks() -> object:
            with handle:
                while chunk := handle.read(256 * 1024):
                    yield chunk

        return StreamingResponse(chunks(), media_type=download_type(wanted.content_type),  # type: ignore[arg-type]
                                 headers={
            "Content-Disposition": content_disposition(wanted.filename),
            "Content-Length": str(wanted.size),
            "Content-Security-Policy": ATTACHMENT_CSP,
            "Cache-Control": "private, no-store", **PAGE_HEADERS})

    return router
