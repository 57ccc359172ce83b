"""The queries of docs/data.md answer their questions on the sample story, as written there.

Every python block of its "Common questions" section is run as one module; its functions are
called on a database filled through POST /webhooks/clerk with the bundled samples.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clerk_sync_billing import plugin as billing
from clerk_sync_organizations import plugin as organizations
from clerk_sync_users import plugin as users
from pymongo import MongoClient

from clerk_sync.testing import sample
from tests.conftest import Runner
from tests.devloop import blocks, section

DOC = Path(__file__).parents[1] / "docs" / "data.md"
MAYA = "user_3AvkQGK8zGLvRC091k2sjGGUeLN"
PAYER = "cpayer_3BWPl86tnY0yVvFf3xWRjqqWHqq"
T0 = 1774602000000
DAY = 86_400_000


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def queries() -> dict[str, Any]:
    """The functions the section defines, every block marked as run by this file."""
    found = blocks(section(DOC.read_text(), "Common questions"))
    python = [(mark, body) for mark, lang, body in found if lang == "python"]
    assert len(python) == 4
    assert {mark for mark, _ in python} == {"docs-test: run by tests/test_docs_data.py"}
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(body for _, body in python), str(DOC), "exec"), namespace)  # noqa: S102
    return namespace


async def test_each_common_question_is_answered_by_its_query(
    running: Runner, mongodb_url: str, mongodb_db: str
) -> None:
    q = queries()
    story = (
        "user.created",
        "organization.created",
        "organizationDomain.created",
        "role.created",
        "permission.created",
        "subscriptionItem.active",
        "paymentAttempt.updated",
    )
    async with running(plugins=[users, organizations, billing]) as r:
        for event_type in story:
            assert (await r.post(sample(event_type)))[0] == 200
        client: MongoClient[dict[str, Any]] = MongoClient(mongodb_url, tz_aware=True)
        try:
            db = client[mongodb_db]
            on_pro, on_free = q["on_plan"](db, "pro"), q["on_plan"](db, "free")
            failed = q["failed_payments"](db, now=at(T0 + 16 * DAY))
            failed_later = q["failed_payments"](db, now=at(T0 + 30 * DAY))
            permissions = q["role_permissions"](db, "org:billing_manager")
            unknown_role = q["role_permissions"](db, "org:nobody")
            claims = q["claiming"](db, "northwind.example")
            await r.post(sample("organization.deleted"))
            claims_after = q["claiming"](db, "northwind.example")
        finally:
            client.close()

    assert on_pro == [
        {
            "user_id": MAYA,
            "organization_id": None,
            "email": "maya.okafor@northwind.example",
            "status": "active",
        }
    ]
    assert on_free == []
    assert failed == [
        (
            PAYER,
            {"amount": 2856, "currency": "EUR"},
            {"code": "card_declined", "decline_code": "insufficient_funds"},
            at(T0 + 15 * DAY - 60_000),
        )
    ]
    assert failed_later == []
    assert permissions == {
        "org:invoices:read": None,  # its permission.created was never delivered
        "org:invoices:manage": "Manage invoices",
        "org:sys_memberships:read": None,
    }
    assert unknown_role is None
    assert claims == ["Northwind Labs"]
    assert claims_after == []
