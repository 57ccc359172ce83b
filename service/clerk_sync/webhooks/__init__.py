"""The delivery path: the ASGI endpoint, the receiver pipeline, the signature check.

Owns `POST /webhooks/clerk` from the socket to the plugins' handlers. May import
`clerk_sync.observability`, `clerk_sync.plugins`, `clerk_sync.events`, `clerk_sync.storage`,
`clerk_sync.settings` and `clerk_sync.errors`; never Quart, the read API, reconcile or the CLI.
"""
