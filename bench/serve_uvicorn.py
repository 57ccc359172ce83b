"""clerk-sync's app under uvicorn (uvloop + httptools), to measure what a server switch would buy.

Not a user-facing command: `python -m bench --clerk-sync-server uvicorn` starts it in place of
`clerk-sync serve`.

Same app factory, same settings, one worker; the embedded store is started as a child process
when MONGODB_URL is unset, as `clerk-sync serve` does. `clerk-sync serve` itself stays on
hypercorn (docs/performance.md says why).
"""

from __future__ import annotations

import argparse
import os

import uvicorn

from clerk_sync.settings import load_settings
from clerk_sync.storage.embedded import EmbeddedProcess


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    settings = load_settings()
    store = None
    if settings.mongodb_url is None:
        store = EmbeddedProcess(settings.clerk_sync_data_dir)
        os.environ["MONGODB_URL"] = store.start()
    try:
        uvicorn.run(
            "clerk_sync.app:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_level="warning",
            timeout_keep_alive=20,
            timeout_graceful_shutdown=15,
        )
    finally:
        if store is not None:
            store.stop()


if __name__ == "__main__":
    main()
