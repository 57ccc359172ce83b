"""Observability: the Prometheus metrics of the service and the structlog logger.

May import `clerk_sync.plugins` (to describe loaded plugins), `clerk_sync.settings` and
`clerk_sync.errors`; never HTTP code, storage or the layers that record metrics.
"""
