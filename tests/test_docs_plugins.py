"""The plugin and operations docs show code that runs and commands that exist."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import types
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from clerk_sync.cli import main

DOCS = Path(__file__).parents[1] / "docs"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.DOTALL | re.MULTILINE)
COMMAND_DOCS = ("operations.md", "plugins.md")
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))


def blocks(doc: str, language: str) -> list[str]:
    """The fenced code blocks of `docs/<doc>` in one language, in order."""
    text = (DOCS / doc).read_text()
    return [body for lang, body in FENCE.findall(text) if lang == language]


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("CLERK_", "MONGODB_", "LOG_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


async def test_plugin_api_examples_run(
    clean_environment: None, monkeypatch: pytest.MonkeyPatch, mongodb_url: str, mongodb_db: str
) -> None:
    """Every Python block of plugin-api.md runs in order, and its test passes on MongoDB."""
    module = types.ModuleType("docs_plugin_api")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for number, source in enumerate(blocks("plugin-api.md", "python"), start=1):
        exec(compile(source, f"docs/plugin-api.md block {number}", "exec"), module.__dict__)  # noqa: S102
    await module.test_welcome_points(mongodb_url, mongodb_db)


def test_plugins_guide_shows_what_plugin_new_generates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The output, entry point and module in plugins.md are what `plugin new welcome` makes."""
    [output] = [b for b in blocks("plugins.md", "text") if b.startswith("created welcome")]
    [module] = blocks("plugins.md", "python")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["plugin", "new", "welcome"])
    generated = (tmp_path / "welcome/src/clerk_sync_welcome/__init__.py").read_text()
    pyproject = (tmp_path / "welcome/pyproject.toml").read_text()
    assert result.exit_code == 0
    assert result.stdout == output
    assert generated == module
    assert all(block in pyproject for block in blocks("plugins.md", "toml"))


def documented_commands() -> list[list[str]]:
    """Each `clerk-sync …` line of the shell blocks, as arguments after `clerk-sync`."""
    found = []
    for doc in COMMAND_DOCS:
        for block in blocks(doc, "sh"):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line)
                words = words[words.index("--") + 1 :] if "--" in words else words
                while words and re.match(r"^[A-Z_]+=", words[0]):
                    words = words[1:]
                if words and words[0] == "clerk-sync":
                    found.append(words[1:])
    return found


def parse(args: list[str]) -> str:
    """Parse `args` as click would, without running anything; return the command path."""
    ctx = main.make_context("clerk-sync", list(args))
    command: click.Command = main
    while isinstance(command, click.Group):
        rest = [*ctx._protected_args, *ctx.args]
        if not rest and command.invoke_without_command:  # `clerk-sync plugins` lists
            break
        name, sub, rest = command.resolve_command(ctx, rest)
        assert name is not None
        assert sub is not None
        ctx = sub.make_context(name, rest, parent=ctx)
        command = sub
    return ctx.command_path


def every_command(group: click.Group = main, prefix: str = "clerk-sync") -> set[str]:
    paths = set()
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            paths |= every_command(command, path)
            if command.invoke_without_command:
                paths.add(path)
        else:
            paths.add(path)
    return paths


#: The commands that operations.md and plugins.md document.
OPERATOR_COMMANDS = {
    "clerk-sync check",
    "clerk-sync send-test",
    "clerk-sync events list",
    "clerk-sync events show",
    "clerk-sync events replay",
    "clerk-sync plugin new",
    "clerk-sync plugins",
    "clerk-sync plugins catch-up",
}


def test_documented_commands_exist_and_every_operator_command_is_documented() -> None:
    """Each `clerk-sync` line of the docs parses, and each operator command is shown."""
    parsed = {parse(args) for args in documented_commands()}
    assert parsed <= every_command()
    assert parsed >= OPERATOR_COMMANDS


def test_every_operator_command_has_help_with_exit_codes() -> None:
    """`--help` of each operator command says what its exit status means."""
    for path in OPERATOR_COMMANDS - {"clerk-sync plugins"}:
        result = CliRunner().invoke(main, [*path.split()[1:], "--help"])
        assert result.exit_code == 0
        assert "Exit status" in result.stdout, path


@pytest.mark.skipif(not Path(HADOLINT).exists(), reason="hadolint is not installed")
def test_dockerfile_in_plugins_guide_passes_hadolint() -> None:
    """The derived-image Dockerfile of plugins.md is lint-clean."""
    [dockerfile] = blocks("plugins.md", "dockerfile")
    lint = subprocess.run(
        [HADOLINT, "-"], input=dockerfile, capture_output=True, text=True, check=False
    )
    assert lint.returncode == 0, lint.stdout
