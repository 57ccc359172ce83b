"""Session tokens and the read API (`/api/v1/*`) with its OpenAPI document.

`tokens` is plain code (PyJWT, httpx); `read_api` and `openapi` are HTTP modules and the only
ones here that import Quart. May import `clerk_sync.observability`, `clerk_sync.storage`,
`clerk_sync.settings` and `clerk_sync.errors`; never the delivery path, reconcile or the CLI.
"""
