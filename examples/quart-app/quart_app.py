"""Northwind's own Quart app, with Clerk users synced into its MongoDB by clerk-sync.

Run it with `hypercorn 'quart_app:create_app()'` from this folder, with the settings of
docs/configuration.md in the environment (MONGODB_URL, CLERK_WEBHOOK_SIGNING_SECRET,
CLERK_JWT_KEY); Clerk's webhooks go to /webhooks/clerk.
"""

from __future__ import annotations

from quart import Blueprint, Quart, Response, jsonify

from clerk_sync import ClerkSync

clerk = ClerkSync()
pages = Blueprint("pages", __name__)


@pages.get("/")
async def home() -> str:
    return "Northwind"


@pages.get("/profile")
@clerk.require_session
async def profile() -> Response:
    session = clerk.current_session()
    user = await clerk.current_user()  # None until Clerk's user.created is synced
    if user is None:
        return jsonify(user_id=session.user_id, synced=False)
    return jsonify(user_id=session.user_id, synced=True, first_name=user["first_name"])


@pages.get("/orgs/<org_id>/settings")
@clerk.require_org_role("org:admin")
async def organization_settings(org_id: str) -> Response:
    return jsonify(org_id=org_id, editable_by=clerk.current_session().user_id)


@pages.get("/reports")
@clerk.require_plan("pro")
async def reports() -> Response:
    return jsonify(plan="pro", user_id=clerk.current_session().user_id)


@pages.get("/exports.csv")
@clerk.require_feature("csv_exports")
async def csv_export() -> Response:
    return Response("id,total\n", mimetype="text/csv")


@pages.get("/orgs/<org_id>/members")
@clerk.require_permission("org:sys_memberships:read")
async def organization_members(org_id: str) -> Response:
    return jsonify(org_id=org_id, readable_by=clerk.current_session().user_id)


async def users_on_pro(app: Quart, user_ids: list[str]) -> list[str]:
    """A back-end job (no request, no token): which of these users have the plan `pro` now."""
    async with app.app_context():
        return [u for u in user_ids if "pro" in (await clerk.entitlements(user_id=u))["plans"]]


def create_app() -> Quart:
    app = Quart(__name__)
    app.register_blueprint(pages)
    clerk.init_app(app)  # settings from the environment, plugins from the installed ones
    return app
