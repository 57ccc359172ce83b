"""Plans, features and permissions from synced Clerk state, through real webhooks: the guards
`require_plan`, `require_feature`, `require_permission`, `clerk.entitlements()` and
`/api/v1/me/billing` (DESIGN.md "The Quart extension")."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from clerk_sync_billing import plugin as billing_plugin
from clerk_sync_organizations import plugin as organizations_plugin
from clerk_sync_users import plugin as users_plugin
from quart import Quart

from clerk_sync import ClerkSync, Settings
from clerk_sync.testing import envelope, sample
from tests.test_extension import MEMBER, ORG, OUTSIDER, Host, membership_event, serving

MAYA = "user_3AvkQGK8zGLvRC091k2sjGGUeLN"  # the payer of the bundled billing samples
PRO = ("cplan_39cetQEPMkpqyNDST4gyAvQm9ny", "pro")
TEAM = ("cplan_3teamplan00000000000000000", "team")
DAY_MS = 86_400_000


def now_ms() -> int:
    return int(time.time() * 1000)


def item(
    kind: str,
    item_id: str,
    *,
    status: str,
    updated_at: int,
    plan: tuple[str, str] = PRO,
    user_id: str = MAYA,
    org_id: str = "",
    period_end: int | None = None,
    subscription_id: str = "csub_3BWPl4U1juTrJylWmraWDRmpupt",
) -> bytes:
    """A `subscriptionItem.<kind>` delivery shaped like Clerk's sample, for one payer."""
    data = copy.deepcopy(json.loads(sample("subscriptionItem.active"))["data"])
    data |= {"id": item_id, "status": status, "updated_at": updated_at, "plan_id": plan[0]}
    data["period_end"] = period_end if period_end is not None else updated_at + 30 * DAY_MS
    data["plan"] |= {"id": plan[0], "slug": plan[1], "name": plan[1].title()}
    data["payer"] |= {"user_id": user_id, "organization_id": org_id}
    data["subscription_id"] = subscription_id
    return envelope(f"subscriptionItem.{kind}", data)


def role_event(event_type: str, key: str, permissions: list[str], updated_at: int) -> bytes:
    data = copy.deepcopy(json.loads(sample("role.created"))["data"])
    data |= {"key": key, "updated_at": updated_at}
    data["permissions"] = [{"object": "permission", "key": p} for p in permissions]
    return envelope(event_type, data)


def member_with(
    event_type: str, user_id: str, role: str, permissions: list[str], updated_at: int
) -> bytes:
    data = json.loads(membership_event(event_type, user_id, role))["data"]
    data |= {"permissions": permissions, "updated_at": updated_at}
    return envelope(event_type, data)


async def plan_features(host: Host, plan: tuple[str, str], features: list[str]) -> None:
    """`billing_plans` as reconcile keeps it (Clerk sends no plan webhooks)."""
    await host.db.billing_plans.update_one(
        {"clerk_id": plan[0]},
        {"$set": {"slug": plan[1], "features": features, "updated_at": datetime.now(UTC)}},
        upsert=True,
    )


def entitled_app(settings: Settings) -> tuple[Quart, ClerkSync]:
    app = Quart("entitled")
    clerk = ClerkSync(
        app, settings=settings, plugins=[users_plugin, organizations_plugin, billing_plugin]
    )

    @app.get("/pro")
    @clerk.require_plan("pro")
    async def pro() -> str:
        return "pro"

    @app.get("/exports")
    @clerk.require_feature("exports")
    async def exports() -> str:
        return "exports"

    @app.get("/orgs/<org_id>/team")
    @clerk.require_plan("team", org_from="org_id")
    async def team(org_id: str) -> str:
        return org_id

    @app.get("/orgs/<org_id>/audit")
    @clerk.require_feature("audit_log", org_from="org_id")
    async def audit(org_id: str) -> str:
        return org_id

    @app.get("/orgs/<org_id>/invoices")
    @clerk.require_permission("org:invoices:read")
    async def invoices(org_id: str) -> str:
        return org_id

    @app.get("/active/invoices")
    @clerk.require_permission("org:invoices:read", org_from=None)
    async def active_invoices() -> str:
        return "active"

    return app, clerk


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    from tests.test_auth import signer

    return make_settings(clerk_jwt_key=signer("ins_key_one").pem)


async def status(host: Host, path: str, user_id: str | None, **claims: Any) -> tuple[int, str]:
    """The guard's answer: the status and, for a refusal, its reason."""
    code, body = await host.get(path, user_id, **claims)
    return code, (body or {}).get("reason", "") if code != 200 else ""


async def deliver_all(host: Host, *bodies: bytes) -> None:
    for body in bodies:
        assert (await host.deliver(body))[0] == 200


# -- require_plan: item statuses, ordering, organization subjects -------------------------------


async def test_an_active_item_gives_the_plan_until_it_ends_and_a_late_older_event_does_not_revive(
    settings: Settings,
) -> None:
    app, _ = entitled_app(settings)
    t = now_ms()
    async with serving(app, settings) as host:
        before = await status(host, "/pro", MAYA)
        await host.deliver(item("active", "csub_item_1", status="active", updated_at=t))
        active = await status(host, "/pro", MAYA)
        await host.deliver(item("ended", "csub_item_1", status="ended", updated_at=t + 2000))
        ended = await status(host, "/pro", MAYA)
        await host.deliver(item("active", "csub_item_1", status="active", updated_at=t + 1000))
        late = await status(host, "/pro", MAYA)
        anonymous = await status(host, "/pro", None)
    assert before == (403, "plan_required")
    assert active == (200, "")
    assert ended == (403, "plan_required")
    assert late == (403, "plan_required")
    assert anonymous == (401, "token_missing")


async def test_a_canceled_item_entitles_until_its_period_end(settings: Settings) -> None:
    app, _ = entitled_app(settings)
    t = now_ms()
    async with serving(app, settings) as host:
        ahead = item(
            "canceled", "csub_item_2", status="canceled", updated_at=t, period_end=t + DAY_MS
        )
        await host.deliver(ahead)
        still = await status(host, "/pro", MAYA)
        past = item(
            "canceled", "csub_item_2", status="canceled", updated_at=t + 1, period_end=t - DAY_MS
        )
        await host.deliver(past)
        over = await status(host, "/pro", MAYA)
    assert still == (200, "")
    assert over == (403, "plan_required")


@pytest.mark.parametrize(("grace", "expected"), [(0, 403), (7 * 86_400, 200)], ids=["0", "7d"])
async def test_a_past_due_item_entitles_only_within_the_grace(
    make_settings: Callable[..., Settings], grace: int, expected: int
) -> None:
    from tests.test_auth import signer

    settings = make_settings(
        clerk_jwt_key=signer("ins_key_one").pem, clerk_sync_past_due_grace=grace
    )
    app, _ = entitled_app(settings)
    t = now_ms()
    async with serving(app, settings) as host:
        await host.deliver(item("pastDue", "csub_item_3", status="past_due", updated_at=t - DAY_MS))
        answer = await status(host, "/pro", MAYA)
    assert answer[0] == expected


async def test_an_organizations_plan_applies_to_its_members_only(settings: Settings) -> None:
    """The organization's item gives `team` to its members on its routes; an outsider is
    refused, and a member's own (user) subject does not have the organization's plan."""
    app, clerk = entitled_app(settings)
    t = now_ms()
    async with serving(app, settings) as host:
        await deliver_all(
            host,
            sample("organization.created"),
            membership_event("organizationMembership.created", MEMBER, "org:member"),
            # the member who subscribed the organization is its payer's user: still its plan
            item(
                "active",
                "csub_item_9",
                status="active",
                updated_at=t,
                plan=TEAM,
                user_id=MEMBER,
                org_id=ORG,
            ),
        )
        member = await status(host, f"/orgs/{ORG}/team", MEMBER)
        outsider = await status(host, f"/orgs/{ORG}/team", OUTSIDER)
        other_org = await status(host, "/orgs/org_someoneelse/team", MEMBER)
        async with app.app_context():
            own = await clerk.entitlements(user_id=MEMBER)
            of_org = await clerk.entitlements(organization_id=ORG)
    assert member == (200, "")
    assert outsider == (403, "not_a_member")
    assert other_org == (403, "not_a_member")
    assert own["plans"] == []
    assert of_org["plans"] == ["team"]
    assert [(i["id"], i["entitled"]) for i in of_org["items"]] == [("csub_item_9", True)]


# -- require_feature: the plan's features in billing_plans --------------------------------------


async def test_require_feature_follows_the_plans_features(settings: Settings) -> None:
    app, _ = entitled_app(settings)
    async with serving(app, settings) as host:
        await host.deliver(item("active", "csub_item_4", status="active", updated_at=now_ms()))
        unknown_plan = await status(host, "/exports", MAYA)
        await plan_features(host, PRO, ["exports", "sso"])
        listed = await status(host, "/exports", MAYA)
        await plan_features(host, PRO, ["sso"])
        dropped = await status(host, "/exports", MAYA)
    assert unknown_plan == (403, "feature_required")
    assert listed == (200, "")
    assert dropped == (403, "feature_required")


# -- require_permission: the membership's permissions, else its role's ---------------------------


async def test_require_permission_follows_the_membership_and_a_role_change(
    settings: Settings,
) -> None:
    app, _ = entitled_app(settings)
    t = now_ms()
    path = f"/orgs/{ORG}/invoices"
    reader = ["org:invoices:read", "org:sys_memberships:read"]
    async with serving(app, settings) as host:
        await deliver_all(
            host,
            sample("organization.created"),
            member_with("organizationMembership.created", MEMBER, "org:billing", reader, t),
        )
        own = await status(host, path, MEMBER)
        active = await status(host, "/active/invoices", MEMBER, o={"id": ORG, "rol": "billing"})
        await host.deliver(
            member_with("organizationMembership.updated", MEMBER, "org:member", [], t + 1000)
        )
        no_role_known = await status(host, path, MEMBER)
        await host.deliver(role_event("role.created", "org:member", ["org:invoices:read"], t))
        from_role = await status(host, path, MEMBER)
        await host.deliver(role_event("role.updated", "org:member", [], t + 5000))
        role_changed = await status(host, path, MEMBER)
        outsider = await status(host, path, OUTSIDER)
        no_active = await status(host, "/active/invoices", MEMBER)
    assert own == (200, "")
    assert active == (200, "")
    assert no_role_known == (403, "permission_required")
    assert from_role == (200, "")
    assert role_changed == (403, "permission_required")
    assert outsider == (403, "not_a_member")
    assert no_active == (403, "no_active_organization")


# -- one table for the guards and entitlements() -------------------------------------------------

#: (caller, path of the guard, subject for entitlements(), plans or features, the key)
TABLE = [
    (MAYA, "/pro", {"user_id": MAYA}, "plans", "pro"),
    (MAYA, "/exports", {"user_id": MAYA}, "features", "exports"),
    (MEMBER, "/pro", {"user_id": MEMBER}, "plans", "pro"),
    (MEMBER, f"/orgs/{ORG}/team", {"user_id": MEMBER, "organization_id": ORG}, "plans", "team"),
    (
        MEMBER,
        f"/orgs/{ORG}/audit",
        {"user_id": MEMBER, "organization_id": ORG},
        "features",
        "audit_log",
    ),
    (OUTSIDER, f"/orgs/{ORG}/team", {"user_id": OUTSIDER, "organization_id": ORG}, "plans", "team"),
    (MAYA, f"/orgs/{ORG}/team", {"user_id": MAYA, "organization_id": ORG}, "plans", "team"),
]


async def test_entitlements_answer_as_the_guards_for_the_same_subjects(settings: Settings) -> None:
    app, clerk = entitled_app(settings)
    t = now_ms()
    async with serving(app, settings) as host:
        await deliver_all(
            host,
            sample("organization.created"),
            membership_event("organizationMembership.created", MEMBER, "org:member"),
            item("active", "csub_item_5", status="active", updated_at=t),
            item("active", "csub_item_6", status="active", updated_at=t, plan=TEAM, org_id=ORG),
        )
        await plan_features(host, PRO, ["exports"])
        await plan_features(host, TEAM, ["audit_log"])
        rows = []
        for caller, path, subject, kind, key in TABLE:
            guard = (await status(host, path, caller))[0] == 200
            async with app.app_context():
                helper = key in (await clerk.entitlements(**subject))[kind]
            rows.append((caller, path, guard, helper))
    assert [(c, p, g) for c, p, g, _ in rows] == [(c, p, h) for c, p, _, h in rows]
    assert [g for *_, g, _ in rows] == [True, True, False, True, True, False, False]


async def test_entitlements_needs_a_subject(settings: Settings) -> None:
    app, clerk = entitled_app(settings)
    async with serving(app, settings), app.app_context():
        with pytest.raises(TypeError, match="user_id, organization_id"):
            await clerk.entitlements()


# -- the read API: /api/v1/me/billing ------------------------------------------------------------


async def test_me_billing_gives_the_callers_and_a_member_organizations_entitlements(
    settings: Settings,
) -> None:
    app, _ = entitled_app(settings)
    t = now_ms()
    async with serving(app, settings) as host:
        await deliver_all(
            host,
            sample("organization.created"),
            membership_event("organizationMembership.created", MEMBER, "org:member"),
            item("active", "csub_item_7", status="active", updated_at=t),
            item("ended", "csub_item_8", status="ended", updated_at=t - 5000),
            item("active", "csub_item_10", status="active", updated_at=t, plan=TEAM, org_id=ORG),
        )
        await plan_features(host, PRO, ["exports", "sso"])
        mine = await host.get("/api/v1/me/billing", MAYA)
        org = await host.get(f"/api/v1/me/billing?organization_id={ORG}", MEMBER)
        refused = await host.get(f"/api/v1/me/billing?organization_id={ORG}", OUTSIDER)
        anonymous = await host.get("/api/v1/me/billing")
    assert mine[0] == 200
    assert (mine[1]["plans"], mine[1]["features"]) == (["pro"], ["exports", "sso"])
    items = {i["id"]: (i["status"], i["entitled"], i["plan"]["slug"]) for i in mine[1]["items"]}
    assert items == {
        "csub_item_7": ("active", True, "pro"),
        "csub_item_8": ("ended", False, "pro"),
    }
    assert "payer" not in json.dumps(mine[1])
    assert "@" not in json.dumps(mine[1])
    assert (org[0], org[1]["plans"], org[1]["features"]) == (200, ["team"], [])
    assert (refused[0], refused[1]["reason"]) == (403, "not_a_member")
    assert (anonymous[0], anonymous[1]["reason"]) == (401, "token_missing")
