"""What the console's tests share: a plugin whose handler fails until it is fixed, signed
deliveries, session tokens, and reading the pages' forms. Used by tests/test_console*.py."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import unescape
from typing import Any

from clerk_sync import Context, Event, Plugin
from clerk_sync.testing import envelope
from tests.test_auth import bearer, signer

OPERATOR = "user_2operator000000000000000"
STRANGER = "user_2stranger000000000000000"
ORG = "org_2consoleops00000000000000"
ERROR = "the upstream CRM said no"


@dataclass
class Switch:
    """Whether the `crm` handler still fails, and what it saw."""

    broken: bool = True
    seen: list[str] = field(default_factory=list)


def crm_plugin(switch: Switch) -> Plugin:
    """`crm` on user.created and organization.created: raises while `switch.broken`."""
    plugin = Plugin("crm")

    @plugin.on("user.created", "organization.created")
    async def push(event: Event, ctx: Context[None]) -> None:
        if switch.broken:
            raise RuntimeError(ERROR)
        switch.seen.append(event.svix_id)

    return plugin


def user_body(user_id: str, **data: Any) -> bytes:
    return envelope("user.created", {"id": user_id, "object": "user", **data})


def token_headers(user_id: str = OPERATOR) -> dict[str, str]:
    return bearer(signer("ins_key_one").token(sub=user_id))


def session_key() -> str:
    return signer("ins_key_one").pem


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]*)"', page)
    assert found is not None, "the page has no replay form"
    return unescape(found.group(1))


def listed_ids(page: str) -> list[str]:
    """The svix-ids the deliveries list links to, in page order."""
    return [unescape(m) for m in re.findall(r'href="/console/deliveries/([^"?]+)"', page)]


def next_cursor(page: str) -> str | None:
    found = re.search(r'href="/console/deliveries\?([^"]*)" rel="next"', page)
    if found is None:
        return None
    query = dict(part.split("=", 1) for part in unescape(found.group(1)).split("&"))
    return query["after"]
