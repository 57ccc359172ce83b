"""`python -m clerk_sync` is the `clerk-sync` command."""

from clerk_sync.cli import main

main()
