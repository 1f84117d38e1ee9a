"""Attachments from portal forms into the blob store, with a size limit.

In: the `UploadFile`s of a parsed multipart form (python-multipart has spooled them to
temporary files). Out: `NewAttachment`s whose content is stored (content-addressed,
fsynced) before any database row refers to it.

Guarantees: empty file inputs (no file chosen) are skipped; `TooLarge` is raised before
anything is stored when the files together exceed the limit; file names are cleaned by
`mail.attachment_names.clean_filename`, exactly as a mail attachment's (last path
component: browsers on Windows sent full paths; no control, bidi or zero-width characters).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from starlette.datastructures import UploadFile

from gateway.mail.attachment_names import clean_filename
from gateway.store.blobs import BlobStore
from gateway.tickets.ticket import NewAttachment

CHUNK = 1024 * 1024
MAX_FILES = 20


class TooLarge(Exception):
    pass


def chosen(files: Sequence[object]) -> list[UploadFile]:
    return [f for f in files if isinstance(f, UploadFile) and f.filename and (f.size or 0) > 0]


def store_uploads(blobs: BlobStore, files: Sequence[UploadFile], limit: int
                  ) -> list[NewAttachment]:
    if len(files) > MAX_FILES or sum(f.size or 0 for f in files) > limit:
        raise TooLarge
    stored = []
    for upload in files:
        upload.file.seek(0)
        blob = blobs.put(_chunks(upload))
        content_type = (upload.content_type or "application/octet-stream").split(";")[0]
        stored.append(NewAttachment(filename=clean_filename(upload.filename or "",
                                                            "attachment"),
                                    content_type=content_type.strip().lower()[:200],
                                    sha256=blob.sha256, size=blob.size))
    return stored


def _chunks(upload: UploadFile) -> Iterator[bytes]:
    while chunk := upload.file.read(CHUNK):
        yield chunk
