"""The OpenAPI 3.1 document of every endpoint, served at `/openapi.json`.

Written out by hand as data: the contract in DESIGN.md is the source, and tests check the live
answers against it (openapi-spec-validator for the document, schemathesis for the answers).
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from clerk_sync.auth.read_api import CURSOR_PATTERN, DEFAULT_LIMIT, MAX_CURSOR, MAX_LIMIT

#: Every reason a session token is refused with (401).
AUTH_REASONS = (
    "token_missing",
    "token_malformed",
    "token_expired",
    "token_not_yet_valid",
    "signature_invalid",
    "algorithm_not_allowed",
    "issuer_invalid",
    "azp_not_allowed",
    "session_pending",
    "claims_invalid",
    "key_not_found",
    "jwks_unavailable",
)

type Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **extra: Any) -> Schema:
    return {"type": [kind, "null"], **extra}


def _json(description: str, schema: Schema, **extra: Any) -> Schema:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def _object(required: list[str], properties: dict[str, Schema], **extra: Any) -> Schema:
    return {"type": "object", "required": required, "properties": properties, **extra}


def _api_error(*reasons: str) -> Schema:
    reason: Schema = {"type": "string", "enum": list(reasons)}
    return _object(["error", "reason"], {"error": {"type": "string"}, "reason": reason})


_TIME = _nullable("string", format="date-time")
_METADATA: Schema = {"type": "object", "additionalProperties": True}
_TEXT = _nullable("string")
_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}}
}

WEBHOOK_SCHEMAS: dict[str, Schema] = {
    "Error": _object(["error"], {"error": {"type": "string"}}),
    "DeliveryAccepted": _object(
        ["status", "svix_id"],
        {
            "status": {"type": "string", "enum": ["processed", "duplicate", "ignored"]},
            "svix_id": {"type": "string"},
        },
    ),
    "DeliveryRejected": _object(
        ["status", "svix_id", "reason"],
        {
            "status": {"const": "rejected"},
            "svix_id": {"type": "string"},
            "reason": {"type": "string"},
        },
    ),
    "DeliveryBusy": _object(
        ["error", "svix_id"], {"error": {"type": "string"}, "svix_id": {"type": "string"}}
    ),
    "DeliveryFailed": _object(
        ["svix_id", "error"],
        {
            "status": {"const": "failed"},
            "svix_id": {"type": "string"},
            "error": {"type": "string"},
        },
    ),
    "Unavailable": _object(["error"], {"error": {"type": "string"}, "svix_id": {"type": "string"}}),
    "Plugin": _object(
        ["name", "version", "distribution", "subscriptions", "status", "error"],
        {
            "name": {"type": "string"},
            "version": _TEXT,
            "distribution": _TEXT,
            "subscriptions": {"type": "array", "items": {"type": "string"}},
            "status": {"type": "string", "enum": ["loaded", "failed", "disabled"]},
            "error": _TEXT,
        },
    ),
}

READ_API_SCHEMAS: dict[str, Schema] = {
    "AuthError": _api_error(*AUTH_REASONS),
    "BadRequest": _api_error("limit_invalid", "cursor_invalid"),
    "Forbidden": _api_error("not_a_member"),
    "UserNotFound": _api_error("user_not_synced", "user_deleted"),
    "StorageUnavailable": _api_error("storage_unavailable"),
    "User": _object(
        ["clerk_id"],
        {
            "clerk_id": {"type": "string"},
            "external_id": _TEXT,
            "email": _TEXT,
            "email_addresses": {"type": "array", "items": {"type": "string"}},
            "phone": _TEXT,
            "username": _TEXT,
            "first_name": _TEXT,
            "last_name": _TEXT,
            "image_url": _TEXT,
            "public_metadata": _METADATA,
            "unsafe_metadata": _METADATA,
            "banned": {"type": "boolean"},
            "locked": {"type": "boolean"},
            "last_sign_in_at": _TIME,
            "created_at": _TIME,
            "updated_at": _TIME,
            "deleted": {"type": "boolean"},
            "deleted_at": _TIME,
        },
        description="The user as projected by the `users` plugin; `private_metadata` is never "
        "returned.",
        **{"not": {"required": ["private_metadata"]}},
    ),
    "OrganizationSummary": _object(
        ["id", "name", "slug", "image_url"],
        {"id": _TEXT, "name": _TEXT, "slug": _TEXT, "image_url": _TEXT},
        description="Names are null while the organization itself is not yet synced.",
    ),
    "UserSummary": _object(
        ["id", "username", "first_name", "last_name", "image_url"],
        {
            "id": _TEXT,
            "username": _TEXT,
            "first_name": _TEXT,
            "last_name": _TEXT,
            "image_url": _TEXT,
        },
    ),
    "Membership": _object(
        [
            "id",
            "organization_id",
            "user_id",
            "role",
            "permissions",
            "public_metadata",
            "created_at",
            "updated_at",
        ],
        {
            "id": {"type": "string"},
            "organization_id": _TEXT,
            "user_id": _TEXT,
            "role": _TEXT,
            "permissions": {"type": "array", "items": {"type": "string"}},
            "public_metadata": _METADATA,
            "created_at": _TIME,
            "updated_at": _TIME,
        },
    ),
    "MyMembership": {
        "allOf": [
            _ref("Membership"),
            _object(["organization"], {"organization": _ref("OrganizationSummary")}),
        ]
    },
    "Member": {
        "allOf": [
            _ref("Membership"),
            _object(
                ["user"],
                {"user": {"oneOf": [_ref("UserSummary"), {"type": "null"}]}},
                description="`user` is null while the user is not synced, or once deleted.",
            ),
        ]
    },
    "MyOrganizations": _object(
        ["data"], {"data": {"type": "array", "items": _ref("MyMembership")}}
    ),
    "MemberPage": _object(
        ["data", "next_cursor"],
        {
            "data": {"type": "array", "items": _ref("Member")},
            "next_cursor": _nullable("string", pattern=CURSOR_PATTERN),
        },
    ),
}


def _webhook_path() -> Schema:
    svix = [
        {
            "name": name,
            "in": "header",
            "required": False,
            "description": f"Svix `{name}` (or its `webhook-*` twin); required in practice.",
            "schema": {"type": "string"},
        }
        for name in ("svix-id", "svix-timestamp", "svix-signature")
    ]
    error = _ref("Error")
    return {
        "post": {
            "operationId": "receiveClerkWebhook",
            "summary": "Receive one Clerk webhook delivery (Svix-signed).",
            "tags": ["webhooks"],
            "parameters": svix,
            "requestBody": {
                "required": True,
                "description": "The raw Clerk event envelope, verified byte for byte.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "responses": {
                "200": _json(
                    "Processed, a duplicate, or of a type no plugin handles.",
                    _ref("DeliveryAccepted"),
                ),
                "202": _json(
                    "Signed, but not a Clerk envelope: recorded as rejected.",
                    _ref("DeliveryRejected"),
                ),
                "400": _json("Svix headers missing or malformed.", error),
                "401": _json("Signature or timestamp did not verify.", error),
                "409": _json("Being processed right now by another request.", _ref("DeliveryBusy")),
                "413": _json("Body larger than CLERK_SYNC_MAX_BODY_BYTES.", error),
                "500": _json(
                    "A handler failed or timed out (`status: failed`), or an internal error; "
                    "Svix retries.",
                    _ref("DeliveryFailed"),
                ),
                "503": _json(
                    "MongoDB unreachable (with Retry-After), or no signing secret configured.",
                    _ref("Unavailable"),
                    headers=_RETRY_AFTER,
                ),
            },
        }
    }


def _operations_paths() -> dict[str, Schema]:
    status = _object(["status"], {"status": {"const": "ok"}})
    ready = _object(
        ["status", "plugins_failed"],
        {
            "status": {"const": "ready"},
            "plugins_failed": {"type": "array", "items": {"type": "string"}},
        },
    )
    not_ready = _object(
        ["status", "reasons"],
        {
            "status": {"const": "not_ready"},
            "reasons": {"type": "array", "items": {"type": "string"}},
        },
    )
    plugins = _object(["plugins"], {"plugins": {"type": "array", "items": _ref("Plugin")}})
    metrics = {"text/plain": {"schema": {"type": "string"}}}

    def get(operation_id: str, summary: str, responses: Schema) -> Schema:
        return {
            "get": {
                "operationId": operation_id,
                "summary": summary,
                "tags": ["operations"],
                "responses": responses,
            }
        }

    return {
        "/livez": get(
            "livez", "Liveness: 200 while the process serves.", {"200": _json("Serving.", status)}
        ),
        "/readyz": get(
            "readyz",
            "Readiness: MongoDB answers a ping and plugins are loaded.",
            {
                "200": _json("Ready.", ready),
                "503": _json("Not ready, with reasons.", not_ready),
            },
        ),
        "/metrics": get(
            "metrics",
            "Prometheus metrics in text format.",
            {"200": {"description": "Prometheus exposition format.", "content": metrics}},
        ),
        "/plugins": get(
            "plugins",
            "Every discovered plugin and its status.",
            {"200": _json("Plugins.", plugins)},
        ),
        "/openapi.json": get(
            "openapi", "This document.", {"200": _json("OpenAPI document.", {"type": "object"})}
        ),
    }


def _read_api_paths() -> dict[str, Schema]:
    unauthorized = _json(
        "No valid session token; `reason` says why.",
        _ref("AuthError"),
        headers={"WWW-Authenticate": {"schema": {"type": "string"}}},
    )
    unavailable = _json("MongoDB unavailable.", _ref("StorageUnavailable"), headers=_RETRY_AFTER)
    security: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"sessionCookie": []}]

    def get(operation_id: str, summary: str, responses: Schema, **extra: Any) -> Schema:
        answers = {**responses, "401": unauthorized, "503": unavailable}
        operation = {
            "operationId": operation_id,
            "summary": summary,
            "tags": ["read API"],
            "security": security,
            "responses": dict(sorted(answers.items())),
            **extra,
        }
        return {"get": operation}

    org_id = {
        "name": "org_id",
        "in": "path",
        "required": True,
        "description": "Clerk organization id (`org_…`).",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_]{1,64}$"},
    }
    limit = {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    }
    cursor = {
        "name": "cursor",
        "in": "query",
        "required": False,
        "description": "`next_cursor` of the previous page (opaque).",
        "schema": {
            "type": "string",
            "minLength": 2,
            "maxLength": MAX_CURSOR,
            "pattern": CURSOR_PATTERN,
        },
    }
    return {
        "/api/v1/me": get(
            "getMe",
            "The caller's user document.",
            {
                "200": _json("The caller.", _ref("User")),
                "404": _json("Not synced yet, or deleted.", _ref("UserNotFound")),
            },
        ),
        "/api/v1/me/organizations": get(
            "getMyOrganizations",
            "The caller's live memberships with organization summaries.",
            {"200": _json("Memberships.", _ref("MyOrganizations"))},
        ),
        "/api/v1/organizations/{org_id}/members": get(
            "listOrganizationMembers",
            "Live members of an organization the caller belongs to, in pages.",
            {
                "200": _json("One page of members.", _ref("MemberPage")),
                "400": _json("Bad `limit` or `cursor`.", _ref("BadRequest")),
                "403": _json("The caller is not a live member.", _ref("Forbidden")),
            },
            parameters=[org_id, limit, cursor],
        ),
    }


def openapi_document(read_api: bool) -> dict[str, Any]:
    """The document; the read API's paths and security schemes only when it is mounted."""
    paths = {"/webhooks/clerk": _webhook_path(), **_operations_paths()}
    schemas = dict(WEBHOOK_SCHEMAS)
    components: dict[str, Any] = {"schemas": schemas}
    if read_api:
        paths.update(_read_api_paths())
        schemas.update(READ_API_SCHEMAS)
        components["securitySchemes"] = {
            "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "__session"},
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "clerk-sync",
            "version": version("clerk-sync"),
            "description": "Clerk webhooks in, MongoDB projections out, and a small read API "
            "protected by Clerk session tokens.",
        },
        "paths": paths,
        "components": components,
    }
