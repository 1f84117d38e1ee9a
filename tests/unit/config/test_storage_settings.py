"""`[storage]`: where blobs live (issue #15 item 2), checked when the file is loaded."""

from __future__ import annotations

from pathlib import Path

from gateway.config.loading import load_settings
from gateway.store.blob_backends import split_s3_location
from tests.unit.config.test_settings import problems_of


def test_an_s3_location_with_its_endpoint_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "ticketgw.toml"
    path.write_text('[storage]\nblobs = "s3://tgw-files/prod/blobs"\n'
                    's3_endpoint = "http://127.0.0.1:8333"\ns3_region = "us-east-1"\n',
                    encoding="utf-8")
    storage = load_settings(path).storage
    assert (storage.blobs, storage.s3_endpoint, storage.s3_region) == (
        "s3://tgw-files/prod/blobs", "http://127.0.0.1:8333", "us-east-1")
    assert split_s3_location(storage.blobs) == ("tgw-files", "prod/blobs")
    assert split_s3_location("s3://tgw-files") == ("tgw-files", "")


def test_anything_but_an_s3_url_is_refused_with_the_form_to_use(tmp_path: Path) -> None:
    for wrong in ("/srv/blobs", "s3://", "s3://UPPER/x", "http://bucket/x", "s3://a/x?y=1"):
        problems = problems_of(tmp_path, f'[storage]\nblobs = "{wrong}"\n')
        assert len(problems) == 1, wrong
        assert problems[0].endswith(
            f"storage.blobs: {wrong!r}: use s3://BUCKET/PREFIX for S3-compatible object "
            "storage, or leave it empty for DATA_DIR/attachments"), problems


def test_s3_keys_without_an_s3_location_are_refused(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, '[storage]\ns3_endpoint = "http://127.0.0.1:8333"\n')
    assert "s3_endpoint and s3_region are used only with blobs" in problems[0]
    problems = problems_of(tmp_path, '[storage]\nblobs = "s3://b-1/x"\n'
                                     's3_endpoint = "127.0.0.1:8333"\n')
    assert problems[0].endswith("storage.s3_endpoint: '127.0.0.1:8333': use "
                                "http(s)://HOST:PORT of the S3 server (empty: AWS itself)")
