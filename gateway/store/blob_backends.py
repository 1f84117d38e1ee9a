"""Which blob store a configuration means: `[storage] blobs` in, a `BlobStore` out.

"" (the default) is the local directory DATA_DIR/attachments; "s3://BUCKET/PREFIX" is that
bucket of an S3-compatible server (`endpoint` for one that is not AWS, `region` if it
wants one). Building opens no connection: an unreachable server shows when the first blob
is stored or read (as `BlobStoreError`), not at start.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from gateway.store.blob_files import FileBlobStore
from gateway.store.blobs import BlobStore

CONNECT_TIMEOUT = 5      # seconds: an SMTP client waits for our answer meanwhile
READ_TIMEOUT = 60
ATTEMPTS = 3             # boto3's standard retry mode, with its backoff


def split_s3_location(location: str) -> tuple[str, str]:
    """("bucket", "prefix") of "s3://bucket/prefix"; ValueError for anything else."""
    parts = urlsplit(location)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"{location!r}: use s3://BUCKET/PREFIX (or leave it empty)")
    return parts.netloc, parts.path.strip("/")


def build_blob_store(location: str, *, attachments_dir: Path, endpoint: str = "",
                     region: str = "") -> BlobStore:
    """The store for `location`; `attachments_dir` holds the blobs of the local store and the
    staging files of the object store."""
    if not location:
        return FileBlobStore(attachments_dir)
    bucket, prefix = split_s3_location(location)
    # imported here: an installation on the local directory never loads boto3 (importing
    # it and building a client took 0.3 s here, on every CLI call)
    import boto3
    from botocore.config import Config

    from gateway.store.blob_s3 import S3BlobStore

    client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint or None, region_name=region or None,
        config=Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                      retries={"mode": "standard", "max_attempts": ATTEMPTS},
                      # path-style URLs (http://host/bucket/key) work with every server
                      s3={"addressing_style": "path"} if endpoint else None))
    return S3BlobStore(client, bucket, prefix, spool=attachments_dir)
