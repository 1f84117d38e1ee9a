"""Checks between the sections of a config file: ids are unique, every reference resolves.

In: the raw mapping as parsed from TOML, before pydantic sees it, so these problems are
reported together with the per-key ones (`loading.settings_from_mapping`).

Out: `cross_reference_problems`: one "key: problem" line per problem (the caller puts the
file name in front), none when the sections agree.

Guarantees: queue, template and mailbox ids and staff addresses are unique; an address
opens at most one template; every queue or template that a template, a route or `[faq]`
names is configured. Entries that are not tables are skipped here: pydantic reports them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _duplicates(values: list[str]) -> list[str]:
    seen: set[str] = set()
    return sorted({v for v in values if v in seen or seen.add(v)})  # type: ignore[func-returns-value]


def _entries(data: Mapping[str, Any], section: str) -> list[dict[str, Any]]:
    value = data.get(section, [])
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


def cross_reference_problems(data: Mapping[str, Any]) -> list[str]:
    """Checks between sections: ids are unique and every reference points somewhere. Works
    on the raw file, so these problems are reported together with the per-key ones."""
    problems: list[str] = []
    queues, templates = _entries(data, "queue"), _entries(data, "template")
    queue_ids = [str(q.get("id")) for q in queues]
    template_ids = {str(t.get("id")) for t in templates}
    for dup in _duplicates(queue_ids):
        problems.append(f"queue: id {dup!r} is used twice")
    for dup in _duplicates([str(t.get("id")) for t in templates]):
        problems.append(f"template: id {dup!r} is used twice")
    for dup in _duplicates([str(s.get("email")) for s in _entries(data, "staff")]):
        problems.append(f"staff: {dup!r} is listed twice")
    for dup in _duplicates([str(m.get("name")) for m in _entries(data, "mailbox")]):
        problems.append(f"mailbox: name {dup!r} is used twice")
    addresses = [str(a).lower() for t in templates for a in t.get("addresses", [])
                 if isinstance(t.get("addresses"), list)]
    for dup in _duplicates(addresses):
        problems.append(f"template: address {dup!r} opens two templates")
    for i, template in enumerate(templates):
        if "queue" in template and str(template["queue"]) not in queue_ids:
            problems.append(f"template[{i}].queue: unknown queue {template['queue']!r} "
                            f"(known: {', '.join(queue_ids) or 'none'})")
    problems += _faq_problems(data, queue_ids, template_ids)
    for i, route in enumerate(_entries(data, "route")):
        if route.get("template") and str(route["template"]) not in template_ids:
            problems.append(f"route[{i}].template: unknown template {route['template']!r}")
        if route.get("queue") and str(route["queue"]) not in queue_ids:
            problems.append(f"route[{i}].queue: unknown queue {route['queue']!r}")
        if not route.get("template") and not route.get("queue"):
            problems.append(f"route[{i}]: needs a template or a queue")
    return problems


def _faq_problems(data: Mapping[str, Any], queue_ids: list[str],
                  template_ids: set[str]) -> list[str]:
    faq = data.get("faq")
    if not isinstance(faq, dict):
        return []
    problems = []
    if faq.get("template") and str(faq["template"]) not in template_ids:
        problems.append(f"faq.template: unknown template {faq['template']!r}")
    if faq.get("queue") and str(faq["queue"]) not in queue_ids:
        problems.append(f"faq.queue: unknown queue {faq['queue']!r}")
    if faq.get("template") and faq.get("queue"):
        problems.append("faq: give a template or a queue for \"not solved\" tickets, not both")
    if faq.get("address") and not queue_ids:
        problems.append("faq.address: needs a [[queue]]: tickets from \"not solved\" replies "
                        "go to one")
    return problems
