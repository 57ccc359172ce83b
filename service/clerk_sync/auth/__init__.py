"""Session tokens and the read API (`/api/v1/*`).

`tokens` and `keys` are plain code (PyJWT, httpx); `models` are the read API's answers as pydantic
models; `read_api` and `http` are HTTP modules, the only ones here that import Quart. May import
`clerk_sync.observability`, `clerk_sync.storage`, `clerk_sync.settings` and `clerk_sync.errors`;
never the delivery path, reconcile or the CLI.
"""
