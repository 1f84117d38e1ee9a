"""A 1 GiB upload to a real `ticketgw serve` process, streamed by the client (generated on
the fly, never held whole by either side): the server's peak memory (VmHWM from /proc)
barely moves, the file arrives whole (SHA-256), nothing is spooled to the temp directory or
left beside the blobs, and the token is nowhere in the server's output. Memory, not time,
is asserted (timings are for bench/files.py)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serve_helpers import TICKETGW, free_port, serving
from tests.web.test_portal_browser import CONFIG

GIB = 1024**3
CHUNK = 1024 * 1024
BOUNDARY = "tgw-bench-boundary-7c1f"


def vm_hwm(pid: int) -> int:
    """Peak resident memory of a process in bytes (/proc/PID/status, VmHWM)."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    assert match, status
    return int(match.group(1)) * 1024


def multipart_stream(size: int, filename: str, digest: Any) -> tuple[int, Iterator[bytes]]:
    """A multipart body with one file of `size` bytes, generated chunk by chunk; its length
    and the chunks. `digest` is fed the file's bytes as they are produced."""
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; "
            f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    block = os.urandom(CHUNK)

    def chunks() -> Iterator[bytes]:
        yield head
        sent = 0
        counter = 0
        while sent < size:
            piece = (counter.to_bytes(8, "big") + block[8:])[:min(CHUNK, size - sent)]
            digest.update(piece)
            counter += 1
            sent += len(piece)
            yield piece
        yield tail

    return len(head) + size + len(tail), chunks()


def run(config: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETGW_")}
    done = subprocess.run([*TICKETGW, "--config", str(config), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[str],
                                                               Path]]:
    port = free_port()
    config = tmp_path / "ticketgw.toml"
    config.write_text(CONFIG.format(database_url=database_url, port=port)
                      + '\n[files]\nmax_file_size = "1100MB"\nmax_total_size = "1200MB"\n',
                      encoding="utf-8")
    run(config, "customer", "add", "mmuster", "max@acme.example", "--name", "Max", cwd=tmp_path)
    spool = tmp_path / "tmp"
    spool.mkdir()
    base = f"http://127.0.0.1:{port}"
    # anything spooled would show up in TMPDIR
    with serving(["--config", str(config), "serve"], tmp_path, f"{base}/healthz",
                 env={"TMPDIR": str(spool)}) as process:
        yield base, config, process, spool


# One database is enough: the memory at stake is the web layer's (the database only records
# the file), and this test is the suite's slowest (about 40 s per run).
@pytest.mark.backends("sqlite")
def test_a_1_gib_upload_streams_with_flat_memory(
        served: tuple[str, Path, subprocess.Popen[str], Path], tmp_path: Path) -> None:
    base, config, process, spool = served
    ticket = _ticket(config, tmp_path)
    link = run(config, "files", "new", "--ticket", ticket, cwd=tmp_path).stdout.strip()
    token = link.rsplit("/", 1)[1]
    path = link.removeprefix(base)

    with httpx.Client(base_url=base, timeout=600) as client:
        # warm up every code path once with a small file, then take the baseline
        small = hashlib.sha256()
        length, body = multipart_stream(100_000, "warm-up.bin", small)
        assert client.post(path, content=body, headers=_headers(length)).status_code == 303
        before = vm_hwm(process.pid)

        digest = hashlib.sha256()
        length, body = multipart_stream(GIB, "disk-image.bin", digest)
        response = client.post(path, content=body, headers=_headers(length))
        assert response.status_code == 303, response.text[:500]
        after_upload = vm_hwm(process.pid)

        listed = json.loads(run(config, "files", "list", "--json", cwd=tmp_path).stdout)
        files = {f["filename"]: f for f in listed[0]["files"]}
        assert files["disk-image.bin"]["size"] == GIB
        assert files["disk-image.bin"]["sha256"] == digest.hexdigest()

        page = client.get(path).text
        file_id = re.search(r'href="/files/[^/"]+/(\d+)" download>disk-image\.bin<', page)
        assert file_id, page
        check = hashlib.sha256()
        with client.stream("GET", f"{path}/{file_id.group(1)}") as download:
            assert download.status_code == 200
            for chunk in download.iter_bytes(CHUNK):
                check.update(chunk)
        assert check.hexdigest() == digest.hexdigest()
        after_download = vm_hwm(process.pid)

    growth = max(after_upload, after_download) - before
    print(f"\nserver VmHWM: {before / 2**20:.1f} MiB before, {after_upload / 2**20:.1f} MiB "
          f"after the 1 GiB upload, {after_download / 2**20:.1f} MiB after its download")
    assert growth < 100 * 2**20, f"peak memory grew by {growth / 2**20:.0f} MiB"
    assert list(spool.iterdir()) == []                            # nothing spooled
    data = tmp_path / "data" / "attachments"
    assert not list(data.rglob(".incoming-*"))                    # no staging file left
    shown = json.loads(run(config, "ticket", "show", ticket, "--json", cwd=tmp_path).stdout)
    attached = [a["sha256"] for a in shown["articles"][-1]["attachments"]]
    assert attached == [digest.hexdigest()]                       # the ticket has it

    process.terminate()
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert token not in out and token not in err


def _headers(length: int) -> dict[str, str]:
    return {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "Content-Length": str(length)}


def _ticket(config: Path, cwd: Path) -> str:
    mail = cwd / "mail.eml"
    mail.write_bytes(b"From: Max <max@acme.example>\r\nTo: incident@support.example.com\r\n"
                     b"Subject: Festplattenabbild\r\nMessage-ID: <disk@acme>\r\n\r\n"
                     b"Betroffenes System: PC-17\r\n")
    run(config, "ingest", str(mail), "-r", "incident@support.example.com", cwd=cwd)
    tickets = json.loads(run(config, "ticket", "list", "--json", cwd=cwd).stdout)
    return str(tickets[0]["number"])
