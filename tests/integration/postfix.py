"""A throwaway Postfix (Debian `postfix`) in front of the gateway, for the end-to-end tests of
docs/admin.md section 2.

`Postfix(main=..., master=..., maps=...).start()` makes its own directory in /tmp with a
`config_directory` (etc/), a `queue_directory` (spool/), a `data_directory` (data/) and a log
file, and runs `postfix -c ROOT/etc start`. It listens with one smtpd on a free port of
127.0.0.1 and can deliver nowhere but where the test's `transport_maps` say: `mydestination`
is empty and every other transport is `error`, so nothing ever leaves the machine. The
system Postfix, if any, and /etc/postfix are left alone. `cleanup()` stops it and removes
the directory.

What the test adds comes from docs/admin.md itself (`admin_snippets`): the `main.cf` lines,
maps and `master.cf` entries of a section, with the paths and ports of this instance put in.
So the docs say what the tests run.

Found here besides (Postfix 3.7):
- the master runs as root and everything else as `mail_owner` (postfix): the queue and data
  directories must belong to it, and every directory above them must be traversable (so a
  directory of our own in /tmp, not pytest's 0700 tmp_path);
- `maillog_file` must start with one of `maillog_file_prefixes`, or `postfix start` fails
  its integrity check without a word on the terminal (the reason goes to the log file);
- `postfix start` with a non-default `-c` directory needs no entry in /etc/postfix/main.cf
  when run as root;
- a `pipe` service runs its command as `user=`, never as root: that user must be able to run
  the Python interpreter and read the code (`pipe_python`).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import smtplib
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO
from tests.serve_helpers import free_port

INSTALL_HINT = ("postfix is not installed: the Postfix tests need Debian's postfix. Install "
                "it with `apt-get install postfix` (preseed `postfix postfix/main_mailer_type "
                "select No configuration`; the tests run their own instance, never the "
                "system one)")

ADMIN_GUIDE = REPO / "docs" / "admin.md"
DOMAIN = "support.example.com"
SBIN = "/usr/sbin:/sbin"

# What every test instance has, whatever the docs add after it (a later line wins).
_MAIN = """\
compatibility_level = 3.6
queue_directory = {root}/spool
data_directory = {root}/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = mx.{domain}
mydomain = {domain}
mydestination =
# nobody is trusted: the test's client on 127.0.0.1 plays a stranger from the internet
mynetworks = 192.0.2.0/24
default_transport = error:nothing leaves this test instance
relay_transport = error:nothing leaves this test instance
local_transport = error:no local delivery here
alias_maps =
alias_database =
biff = no
maillog_file = {root}/postfix.log
maillog_file_prefixes = {root}
smtpd_banner = $myhostname ESMTP test instance
# the verify probe's answer arrives in well under a second here; poll for it
address_verify_poll_delay = 1s
address_verify_poll_count = 10
"""

# The services a loopback-only relay needs (no chroot: the paths are ours). `postqueue -f`
# takes a missing pickup service for "the mail system is down".
_MASTER = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
lmtp      unix  - - n - - lmtp
smtp      unix  - - n - - smtp
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def postfix_binary() -> str:
    found = shutil.which("postfix") or shutil.which("postfix", path=SBIN)
    if not found:
        raise RuntimeError(INSTALL_HINT)
    return found


def _tool(name: str) -> str:
    return shutil.which(name) or shutil.which(name, path=SBIN) or name


# -- the snippets of docs/admin.md ----------------------------------------------------------

def admin_blocks(heading: str) -> list[str]:
    """The fenced code blocks (dedented) under the docs/admin.md heading that begins with
    `heading`, up to the next heading of any level."""
    text = ADMIN_GUIDE.read_text(encoding="utf-8")
    start = text.index(f"\n{heading}")
    following = re.search(r"\n#{2,4} ", text[start + 1:])
    section = text[start:start + 1 + following.start()] if following else text[start:]
    return [textwrap.dedent(block)
            for block in re.findall(r"```[a-z]*\n(.*?)```", section, flags=re.S)]


def admin_snippets(heading: str) -> list[dict[str, str]]:
    """The Postfix files each code block of a section shows, by name: the lines under each
    `# /etc/postfix/NAME` line (`main.cf`, `master.cf`, `transport`, ...)."""
    found = []
    for block in admin_blocks(heading):
        files: dict[str, list[str]] = {}
        current: list[str] | None = None
        for line in block.splitlines():
            match = re.match(r"# /etc/postfix/(\S+)", line)
            if match:
                current = files.setdefault(match.group(1).rstrip(":"), [])
            elif current is not None:
                current.append(line)
        if files:
            found.append({name: "\n".join(lines).strip() + "\n"
                          for name, lines in files.items()})
    assert found, f"no Postfix snippet under {heading!r} in {ADMIN_GUIDE}"
    return found


# -- running a command as the pipe user ------------------------------------------------------

@dataclass(frozen=True)
class PipePython:
    """An interpreter `user` can run, and the PYTHONPATH that gives it this checkout's
    gateway and the test virtualenv's packages."""

    python: str
    pythonpath: str
    user: str

    @property
    def group(self) -> str:
        """The user's primary group (nogroup for nobody on Debian)."""
        return grp.getgrgid(pwd.getpwnam(self.user).pw_gid).gr_name

    def run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        """`python ARGS` as the pipe user (what the pipe's command would see)."""
        gid = pwd.getpwnam(self.user).pw_gid
        return subprocess.run(
            ["setpriv", f"--reuid={self.user}", f"--regid={gid}", "--init-groups",
             "env", "-i", f"PYTHONPATH={self.pythonpath}", "PATH=/usr/bin:/bin",
             self.python, *args],
            capture_output=True, text=True, timeout=120, check=False, cwd="/")


def pipe_python(user: str) -> PipePython:
    """The interpreter for the `pipe` command running as `user`.

    First choice is the one running the tests. When `user` cannot run it (a pyenv or
    virtualenv under /root, which is 0700), Debian's python of the same version runs this
    checkout with the test virtualenv's site-packages on its path: same code, same packages
    (compiled for the same CPython ABI)."""
    site = [sysconfig.get_paths()[key] for key in ("purelib", "platlib")]
    pythonpath = os.pathsep.join(dict.fromkeys([str(REPO), *site]))
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [str(Path(sys.executable).resolve()), f"/usr/bin/python{version}"]
    tried = []
    for python in candidates:
        candidate = PipePython(python, pythonpath, user)
        if not Path(python).exists():
            tried.append(f"{python}: missing")
            continue
        check = candidate.run(["-c", "import gateway.cli"])
        if check.returncode == 0:
            return candidate
        tried.append(f"{python}: {check.stderr.strip().splitlines()[-1:]}")
    raise RuntimeError(f"no Python {version} that user {user} can run with the gateway on "
                       f"its path ({'; '.join(tried)}): install python{version} "
                       "(apt-get install python3) or use a virtualenv outside /root")


# -- the instance -----------------------------------------------------------------------------

class Postfix:
    """One private Postfix on a free port of 127.0.0.1."""

    host = "127.0.0.1"

    def __init__(self, *, main: str = "", master: str = "",
                 maps: dict[str, str] | None = None) -> None:
        self.binary = postfix_binary()
        self.root = Path(tempfile.mkdtemp(prefix="tgw-postfix-"))
        self.root.chmod(0o755)     # postfix (mail_owner) must reach the queue below it
        self.etc = self.root / "etc"
        self.log = self.root / "postfix.log"
        self.port = free_port()
        self.main, self.master, self.maps = main, master, dict(maps or {})

    def localize(self, text: str) -> str:
        """A docs snippet with this instance's config directory for /etc/postfix."""
        return text.replace("/etc/postfix/", f"{self.etc}/")

    def start(self) -> Postfix:
        for sub in ("etc", "spool", "data"):
            (self.root / sub).mkdir(exist_ok=True)
        shutil.chown(self.root / "data", "postfix")
        main = _MAIN.format(root=self.root, domain=DOMAIN) + self.localize(self.main)
        (self.etc / "main.cf").write_text(main)
        (self.etc / "master.cf").write_text(_MASTER.format(port=self.port)
                                            + self.localize(self.master))
        for name, content in self.maps.items():
            path = self.etc / name
            path.write_text(content)
            if f"hash:{path}" in main:
                self._run(_tool("postmap"), "-c", str(self.etc), f"hash:{path}")
        self._run(self.binary, "-c", str(self.etc), "check")
        self._run(self.binary, "-c", str(self.etc), "start")
        self._wait_listening()
        return self

    def _run(self, *args: str) -> str:
        result = subprocess.run(list(args), capture_output=True, text=True, timeout=60,
                                check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): "
                               f"{result.stdout}{result.stderr}\n{self.log_tail()}")
        return result.stdout

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, smtplib.SMTPException), \
                    smtplib.SMTP(self.host, self.port, timeout=5) as client:
                client.noop()
                return
            time.sleep(0.1)
        raise RuntimeError(f"postfix does not answer on port {self.port}: {self.log_tail()}")

    def master_pid(self) -> int | None:
        try:
            return int((self.root / "spool" / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        pid = self.master_pid()
        if pid is None:
            return
        subprocess.run([self.binary, "-c", str(self.etc), "stop"], capture_output=True,
                       timeout=60, check=False)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            subprocess.run([self.binary, "-c", str(self.etc), "abort"], capture_output=True,
                           timeout=60, check=False)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- the queue and the log -----------------------------------------------------------------
    def flush(self) -> None:
        """`postqueue -f`: try every deferred mail again now."""
        self._run(_tool("postqueue"), "-c", str(self.etc), "-f")

    def queue(self) -> str:
        """`postqueue -p`: what is queued."""
        return self._run(_tool("postqueue"), "-c", str(self.etc), "-p")

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_status(self, queue_id: str, status: str, *, after: int = 0,
                    timeout: float = 120) -> str:
        """The first log line of `queue_id` with `status=STATUS` (sent, deferred, bounced)
        found beyond character `after` of the log; fails with the log's tail."""
        deadline = time.monotonic() + timeout
        pattern = re.compile(rf"^.*\b{re.escape(queue_id)}: .*\bstatus=(\w+)\b.*$", re.M)
        while time.monotonic() < deadline:
            for match in pattern.finditer(self.log_text(), after):
                if match.group(1) == status:
                    return match.group(0)
                if match.group(1) in ("bounced", "sent", "expired"):   # final, and not it
                    raise AssertionError(f"{queue_id}: expected status={status}, got "
                                         f"{match.group(0)}")
            time.sleep(0.2)
        raise AssertionError(f"no status={status} for {queue_id} in time; queue:\n"
                             f"{self.queue()}\nlog:\n{self.log_tail()}")

    # -- sending ---------------------------------------------------------------------------------
    def send(self, sender: str, recipient: str, message: bytes) -> str:
        """One mail over SMTP to this Postfix; its queue id."""
        with smtplib.SMTP(self.host, self.port, timeout=60) as client:
            client.ehlo("client.example.org")
            code, reply = client.mail(sender)
            assert code == 250, reply
            code, reply = client.rcpt(recipient)
            assert code == 250, (code, reply, self.log_tail())
            code, reply = client.data(message)
            assert code == 250, reply
        match = re.search(rb"queued as (\w+)", reply)
        assert match, reply
        return match.group(1).decode()

    def rcpt_reply(self, recipient: str, sender: str = "someone@example.org"
                   ) -> tuple[int, str]:
        """Postfix's answer to RCPT TO for `recipient` (the mail is not sent)."""
        with smtplib.SMTP(self.host, self.port, timeout=60) as client:
            client.ehlo("client.example.org")
            client.mail(sender)
            code, reply = client.rcpt(recipient)
            client.rset()
        return code, reply.decode(errors="replace")
