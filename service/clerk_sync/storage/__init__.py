"""Storage: the MongoDB client and ODMantic engine, the delivery log, order-safe projection
writes, and the embedded development store.

May import `clerk_sync.settings` and `clerk_sync.errors` only: everything above talks to MongoDB
through this package, and nothing here knows about HTTP, plugins or events.
"""
