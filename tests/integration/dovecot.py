"""A throwaway Dovecot (Debian `dovecot-imapd`) for the IMAP tests and `bench/imap.py`.

`Dovecot().start()` makes its own directory in /tmp, writes a configuration, a self-signed
certificate and a passwd-file per user there, and runs `dovecot -c ROOT/dovecot.conf` on free
ports of 127.0.0.1: plain IMAP (`port`, STARTTLS offered) and IMAPS (`tls_port`). Nothing
outside that directory is touched; the system Dovecot, if any, is left alone. `stop()` ends
the master and every process it started (as systemd would: sessions die with it);
`restart()` starts it again on the same ports; `cleanup()` stops it and removes the directory.

Recipe: docs/contributing/testing.md. Known Dovecot gotchas handled here: mail does not run
as root (the `dovecot` user owns it), and in the configuration a `{` must end its line.
Found here besides:
- the directory must be traversable by the auth process: pytest's tmp_path (0700) is not;
- the master daemonizes and keeps stderr open: start it with stderr in a file, not a pipe;
- stopping only the master leaves imap and imap-login processes, and their sessions, alive;
- one passwd-file for all users is re-read only every few seconds: one file per user
  (`users/%u`) makes a new user usable at once; a changed password takes ~5 s;
- after failed logins anvil's auth penalty delays the next ones from the same IP by
  seconds: it is turned off, so tests measure the gateway's backoff, not Dovecot's.

XOAUTH2: Dovecot 2.3 checks an XOAUTH2/OAUTHBEARER token like a password against the
passwd-file, so a user whose "password" is the token stands in for Microsoft 365 or Gmail.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

from imapclient import IMAPClient

from tests.serve_helpers import free_port

INSTALL_HINT = ("dovecot is not installed: the IMAP tests need a real Dovecot. Install it "
                "with `apt-get install -y dovecot-imapd` (the system service it starts is not "
                "used; the tests run their own on a free port)")

PASSWORD = "secret"          # every test user's password unless a test says otherwise

_CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root}/tls/cert.pem
ssl_key = <{root}/tls/key.pem
ssl_dh = <{dh}
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2 oauthbearer
auth_failure_delay = {failure_delay}
log_path = {root}/dovecot.log
first_valid_uid = 0
mail_location = maildir:{root}/home/%u/Maildir
default_login_user = dovenull
default_internal_user = dovecot
imap_idle_notify_interval = 2 mins
# IDLE learns of new mail through inotify; when the machine has no inotify instance left
# (128 per user by default, and a test run starts many processes) Dovecot falls back to
# looking every mailbox_idle_check_interval, 30 s by default: far longer than the tests wait
mailbox_idle_check_interval = 1 secs
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users/%u
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={root}/home/%u
}}
# no penalty per client IP after failed logins (the documented way to turn off anvil's
# auth_penalty): the tests measure the gateway's own backoff, not Dovecot's
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = {tls_port}
    ssl = yes
  }}
}}
"""


def dovecot_binary() -> str | None:
    """The `dovecot` executable (it lives in /usr/sbin, which a user's PATH may lack)."""
    found = shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/sbin")
    return found


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"   # a zombie nobody reaps is gone for our purposes


class Dovecot:
    """One Dovecot master process serving IMAP and IMAPS on 127.0.0.1."""

    host = "127.0.0.1"

    def __init__(self, root: Path | None = None, *, failure_delay: str = "0 secs") -> None:
        # every directory above the users files must be traversable by the auth process
        # (user dovecot): pytest's tmp_path is not (0700), a directory of our own in /tmp is
        self.owns_root = root is None
        self.root = root or Path(tempfile.mkdtemp(prefix="tgw-dovecot-"))
        self.failure_delay = failure_delay
        self.port = 0
        self.tls_port = 0
        self.binary = dovecot_binary() or ""
        self.cafile = self.root / "tls" / "cert.pem"

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> Dovecot:
        if not self.binary:
            raise RuntimeError(INSTALL_HINT)
        for sub in ("run", "state", "home", "tls"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for path in (self.root, self.root / "home"):
            path.chmod(0o755)   # the auth process (user dovecot) must reach the users file
        shutil.chown(self.root / "home", "dovecot", "dovecot")
        if not self.cafile.exists():
            self._make_certificate()
        (self.root / "users").mkdir(exist_ok=True)
        (self.root / "users").chmod(0o755)
        if not self.port:
            self.port, self.tls_port = free_port(), free_port()
        dh = "/usr/share/dovecot/dh.pem"
        (self.root / "dovecot.conf").write_text(_CONFIG.format(
            root=self.root, port=self.port, tls_port=self.tls_port, dh=dh,
            failure_delay=self.failure_delay))
        self._run_master()
        return self

    def _run_master(self) -> None:
        # the master daemonizes and keeps its stderr: a file, not a pipe we would wait on
        errors = self.root / "start.err"
        with errors.open("wb") as err:
            result = subprocess.run([self.binary, "-c", str(self.root / "dovecot.conf")],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=err, timeout=30, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"dovecot did not start ({result.returncode}): "
                               f"{errors.read_text(errors='replace').strip()} "
                               f"{self.log_tail()}")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"dovecot does not answer on port {self.port}: {self.log_tail()}")

    def _make_certificate(self) -> None:
        tls = self.root / "tls"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
             "-keyout", str(tls / "key.pem"), "-out", str(tls / "cert.pem"),
             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            capture_output=True, check=True, timeout=60)
        (tls / "key.pem").chmod(0o600)

    @property
    def pid(self) -> int | None:
        try:
            return int((self.root / "run" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """Stop this Dovecot and every process it started, and wait until they are gone.

        Sessions die with it, as under systemd (which kills the whole control group): the
        master alone would leave running imap and imap-login processes behind, and the
        clients' sessions with them."""
        pid = self.pid
        if pid is None:
            return
        children = _children(pid)
        for target in (pid, *children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, signal.SIGTERM if target == pid else signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        for child in _children(pid) + children:   # any started while we stopped it
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        (self.root / "run" / "master.pid").unlink(missing_ok=True)
        while time.monotonic() < deadline + 5:   # the port must be free for a restart
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    time.sleep(0.05)
            except OSError:
                return

    def cleanup(self) -> None:
        """Stop, and remove the directory if this object created it."""
        self.stop()
        if self.owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def restart(self) -> None:
        self.stop()
        self._run_master()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.root / "dovecot.log").read_text(errors="replace")
                             .splitlines()[-lines:])
        except OSError:
            return ""

    # -- users and mail -----------------------------------------------------------------------
    def add_user(self, name: str | None = None, password: str = PASSWORD) -> str:
        """A new user (and so a new, empty mail store); its name."""
        name = name or f"u{secrets.token_hex(4)}"
        self.set_password(name, password)
        return name

    def set_password(self, name: str, password: str) -> None:
        path = self.root / "users" / name
        # a new file renamed into place: Dovecot never reads half a file
        staged = path.with_suffix(".new")
        staged.write_text(f"{name}:{{PLAIN}}{password}\n")
        staged.chmod(0o644)
        staged.replace(path)

    def client(self, user: str, password: str = PASSWORD) -> IMAPClient:
        """A logged-in plain IMAP connection (the test's own hands on the mailbox)."""
        client = IMAPClient(self.host, self.port, ssl=False, timeout=30)
        try:
            client.login(user, password)
        except BaseException:
            client.shutdown()
            raise
        return client

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's self-signed certificate."""
        return ssl.create_default_context(cafile=str(self.cafile))

    def append(self, user: str, folder: str, *mails: bytes, password: str = PASSWORD) -> None:
        with self.client(user, password) as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            for raw in mails:
                client.append(folder, raw)
