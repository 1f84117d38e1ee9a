"""Benchmark: CPU time to render what one new ticket's mail makes the worker send.

What is measured: `answers.ticket_created`'s rendering without the database, in this process:
the acknowledgment to the customer (`answers._render("ack", …)`, with one missing guide
answer) and the notice to each of the queue's `--staff` staff members
(`answers._staff_notices`, all reading English), for `--count` tickets after 50 for warm-up.
The customer's text is ~3.9 KiB of German with umlauts, every line different from every
other ticket's (so nothing a cache keeps between mails can stand in for it). The settings
and renderer are built as `ticketgw serve` builds them (`build_renderer`, no DKIM).

Printed: CPU ms per ticket (process time, so other load on the machine counts less than in a
wall-clock figure), one line per round; compare commits by running this script of each
worktree in turn, alternating (see bench/README.md, inbound, "rendering").

Run:  .venv/bin/python bench/render.py [--count 500] [--staff 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.app import build_renderer
from gateway.config.loading import settings_from_mapping
from gateway.config.settings import Settings
from gateway.outbound import answers
from gateway.tickets.facts import new_ticket_facts


def settings_with_staff(staff: int, data_dir: Path) -> Settings:
    people = [{"email": f"agent{i}@example.com", "name": f"Agent {i}", "language": "en"}
              for i in range(staff)]
    return settings_from_mapping({
        "database": {"url": f"sqlite:///{data_dir}/unused.db"},
        "storage": {"data_dir": str(data_dir)},
        "inbound": {"smtp": "", "domains": ["support.example.com"]},
        "web": {"listen": "", "base_url": "https://desk.example.com"},
        "queue": [{"id": "servicedesk", "name": "Service Desk", "language": "en",
                   "from": "Service Desk <support@support.example.com>",
                   "staff": [p["email"] for p in people]}],
        "staff": people,
        "template": [{"id": "incident", "group": "incident", "queue": "servicedesk",
                      "priority": 3, "name": {"en": "General incident report"},
                      "addresses": ["incident@support.example.com"],
                      "guide": [{"key": "system", "label": {"en": "Affected system"},
                                 "required": True}]}],
    }, "bench-render", data_dir)


def render_ticket(answering: answers.Answering, i: int) -> int:
    """What a new ticket renders; the number of mails."""
    settings = answering.settings
    body = "".join(f"Hallo zusammen {i}/{k}, der Drucker im zweiten Stock druckt seit heute "
                   "morgen nur noch leere Seiten. Grüße.\n" for k in range(32))
    thread = f"<m{i}@acme.example>"
    facts = new_ticket_facts(
        settings, i, number=f"2026120710{i:06d}", title=f"Drucker im 2. OG {i}", priority=3,
        queue="servicedesk", template="incident", customer_name=f"Kunde {i}", registered=True,
        address=f"kunde{i}@acme.example", customer_language="en", reply_token=f"r{i}",
        staff_token=f"s{i}", thread=(thread,),
        first_response_due=datetime.now(UTC) + timedelta(hours=4))
    ack = answers._render(answering, "ack", facts.language, {
        "customer_name": facts.customer_name, "title": facts.title,
        "template_name": "General incident report", "priority": facts.priority,
        "answers": [], "missing": ["Affected system"], "faq": []},
        sender=answers._queue_identity(facts.queue), to=[(facts.customer_name, facts.address)],
        facts=facts, in_reply_to=thread, reply_to=answers.reply_address(answering, facts))
    notices = answers._staff_notices(answering, facts, kind="new", body=body,
                                     in_reply_to=thread)
    mails = [ack, *notices]
    if not all(mails):
        raise RuntimeError(f"ticket {i}: a mail was not rendered")
    return len(mails)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=500, help="tickets per round")
    parser.add_argument("--staff", type=int, default=1, help="staff members on the queue")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_with_staff(args.staff, Path(tmp))
        answering = answers.Answering(settings, build_renderer(settings))
        for i in range(50):
            render_ticket(answering, i)
        results = []
        for round_ in range(args.rounds):
            start = time.process_time()
            mails = sum(render_ticket(answering, 1000 + round_ * args.count + i)
                        for i in range(args.count))
            per_ticket = (time.process_time() - start) / args.count * 1000
            results.append(per_ticket)
            print(f"round {round_ + 1}: {per_ticket:.3f} CPU ms per ticket "
                  f"({mails / args.count:.0f} mails each, staff {args.staff})")
        print(f"median: {statistics.median(results):.3f} CPU ms per ticket")


if __name__ == "__main__":
    main()
