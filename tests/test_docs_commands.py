"""Every shell command of README.md and docs/*.md runs as written, or says what it needs.

Each fenced `sh`/`console` block either runs here, in a fresh checkout with `clerk-sync serve`
running in development mode (`.venv/bin` on PATH, as after `source .venv/bin/activate`), or is
marked just above its fence with `<!-- docs-test: not run: REASON -->` (something this machine
lacks) or `<!-- docs-test: run by tests/FILE -->`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clerk_sync.testing import sample, signed_headers
from clerk_sync.webhooks.verify import decode_secret
from tests.devloop import REPO, Background, blocks, clean_environment, fresh_checkout, shell
from tests.processes import free_port

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL = ("sh", "console", "bash", "shell")
REASONS = {
    "needs Clerk's network",
    "needs Docker",
    "needs a Kubernetes cluster",
    "needs a deployment",
    "needs a MongoDB server",
    "needs the plugin installed in step 3",
    "is the test suite",
    "takes minutes",
}
#: The delivery id the docs use in their examples; the sandbox has it recorded.
EXAMPLE_ID = "msg_2uXfYtQk3bWq8NnRrVx1mZs0aPL"


def shell_blocks(doc: Path) -> list[tuple[str, str]]:
    return [(mark, body) for mark, lang, body in blocks(doc.read_text()) if lang in SHELL]


def runnable(doc: Path) -> list[str]:
    return [body for mark, body in shell_blocks(doc) if not mark.startswith("docs-test:")]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_shell_block_runs_here_or_says_what_it_needs(doc: Path) -> None:
    for mark, lang, body in blocks(doc.read_text()):
        assert lang, f"{doc.name}: a fence without a language:\n{body}"
        if lang not in SHELL or not mark.startswith("docs-test:"):
            continue
        kind = mark.removeprefix("docs-test:").strip()
        if kind.startswith("run by "):
            assert (REPO / kind.removeprefix("run by ")).is_file(), mark
        elif not kind.startswith("file "):
            assert kind.removeprefix("not run: ") in REASONS, f"{doc.name}: {mark}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_whsec_secret_shown_is_valid(doc: Path) -> None:
    """Example secrets decode, so a reader pasting one gets a configuration that starts;
    placeholders (`whsec_CHANGEME`, `whsec_paste-…`) are plainly not secrets."""
    for secret in re.findall(r"whsec_[A-Za-z0-9+/=]+", doc.read_text()):
        if re.fullmatch(r"whsec_([A-Z]+|paste)", secret):
            continue
        assert decode_secret(secret), secret


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A fresh checkout serving in development mode, with the docs' example delivery recorded
    and the files the docs show (`<!-- docs-test: file NAME -->`) written."""
    checkout = fresh_checkout(tmp_path_factory.mktemp("docs") / "clerk-sync")
    bin_dir = str(checkout / ".venv" / "bin")
    env = clean_environment(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    for doc in DOCS:
        for mark, _, body in blocks(doc.read_text()):
            if mark.startswith("docs-test: file "):
                (checkout / mark.removeprefix("docs-test: file ")).write_text(body)
    server = Background(f".venv/bin/clerk-sync serve --dev --port {free_port()}", checkout, env)
    with server:
        found = server.start()
        _record_example(checkout, found)
        yield checkout, env


def _record_example(checkout: Path, server: dict[str, Any]) -> None:
    secret = (checkout / ".clerk-sync" / "dev-signing-secret").read_text().strip()
    body = sample("user.created")
    headers = signed_headers(body, secret=secret, msg_id=EXAMPLE_ID)
    answer = httpx.post(server["server_url"] + "/webhooks/clerk", content=body, headers=headers)
    assert answer.json()["status"] == "processed"


@pytest.mark.parametrize("doc", [d for d in DOCS if runnable(d)], ids=lambda p: p.name)
def test_documented_commands_run_as_written(
    sandbox: tuple[Path, dict[str, str]], doc: Path
) -> None:
    """Each runnable block, as one `bash -e` script in the checkout, exits 0."""
    checkout, env = sandbox
    for body in runnable(doc):
        script = "set -euo pipefail\n" + re.sub(r"^\$ ", "", body, flags=re.M)
        result = shell(script, checkout, env, timeout=120)
        assert result.returncode == 0, f"{doc.name}:\n{body}\n{result.stdout}\n{result.stderr}"


def test_the_example_event_file_is_what_send_test_posts(
    sandbox: tuple[Path, dict[str, str]],
) -> None:
    """The my-event.json of operations.md is a valid delivery: it updates the user."""
    checkout, env = sandbox
    sent = shell("clerk-sync send-test ./my-event.json --json", checkout, env)
    found = shell(
        'clerk-sync db find users \'{"clerk_id": "user_3AvkQGK8zGLvRC091k2sjGGUeLN"}\' --json',
        checkout,
        env,
    )
    assert json.loads(sent.stdout)["body"]["status"] in ("processed", "duplicate")
    [user] = json.loads(found.stdout)
    assert user["last_name"] == "Okafor-Reyes"
