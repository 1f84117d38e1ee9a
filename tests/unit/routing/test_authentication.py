"""What our border MTA vouches for (`routing.authentication.check_sender`): Authentication-
Results headers as OpenDMARC, rspamd and forgers write them."""

from __future__ import annotations

import pytest

from gateway.routing.authentication import check_sender

MX = "mx.example.com"
ANNA = "anna.agent@example.com"


@pytest.mark.parametrize("header, result", [
    (f"{MX}; dmarc=pass (p=reject) header.from=example.com", "pass"),
    (f"{MX}; dkim=pass header.d=example.com header.s=sel; spf=fail", "pass"),
    (f"{MX}; dkim=pass header.i=@example.com", "pass"),
    (f"{MX} (version); spf=pass smtp.mailfrom=example.com; dmarc=pass header.from=Example.COM",
     "pass"),
    # rspamd: a reason with parentheses, the policy in a comment
    (f'{MX}; dkim=none; dmarc=fail reason="SPF not aligned (relaxed)" header.from=example.com '
     "(policy=reject); spf=pass smtp.mailfrom=evil.example", "fail"),
    (f"{MX}; dmarc=fail (p=none dis=none) header.from=example.com", "fail"),
    (f"{MX}; dmarc=none header.from=example.com", "none"),
    (f"{MX}; dkim=pass header.d=evil.example", "none"),                 # another domain
    (f"{MX}; spf=pass smtp.mailfrom=example.com", "none"),              # SPF alone: no
    (f"{MX}; dmarc=fail header.from=evil.example (header.from=example.com)", "none"),  # comment
    ("mx.evil.example; dmarc=pass header.from=example.com", "none"),    # not our server
    (f"{MX}.evil.example; dmarc=pass header.from=example.com", "none"),
    ("garbage without any structure", "none"),
])
def test_results(header: str, result: str) -> None:
    assert check_sender([header], ANNA, MX).result == result


def test_only_our_topmost_header_counts() -> None:
    forged_below = [f"{MX}; dmarc=fail header.from=example.com",
                    f"{MX}; dmarc=pass header.from=example.com"]
    check = check_sender(forged_below, ANNA, MX)
    assert (check.result, check.failed, check.vouched) == ("fail", True, False)
    assert "dmarc=fail for example.com" in check.detail
    assert check_sender(["mx.evil.example; dmarc=pass header.from=example.com",
                         f"{MX}; dmarc=pass header.from=example.com"], ANNA, MX).vouched
    missing = check_sender([], ANNA, MX)
    assert missing.result == "none" and f"no Authentication-Results header from {MX}" in \
        missing.detail


def test_nothing_is_checked_without_an_authserv_id() -> None:
    check = check_sender([f"{MX}; dmarc=fail header.from=example.com"], ANNA, "")
    assert (check.result, check.vouched, check.failed) == ("unchecked", True, False)


def test_a_hop_we_do_not_trust_is_not_believed() -> None:
    """What the SMTP listener says about a client that is not a trusted relay: even our own
    authserv-id in its header may have been written by the sender."""
    check = check_sender([f"{MX}; dmarc=pass header.from=example.com"], ANNA, MX,
                         hop_trusted=False)
    assert (check.result, check.vouched, check.failed) == ("none", False, False)
    assert "not a trusted relay" in check.detail
    assert not check_sender([f"{MX}; dmarc=fail header.from=example.com"], ANNA, MX,
                            hop_trusted=False).failed


def test_a_mail_without_from_is_no_verdict() -> None:
    assert check_sender([f"{MX}; dmarc=pass header.from=example.com"], "", MX).result == "none"
