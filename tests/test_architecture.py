"""docs/architecture.md matches the code: what it names exists, its layers are the contract's."""

from __future__ import annotations

import importlib
import importlib.util
import re
import tomllib
from pathlib import Path

import pytest

import clerk_sync
import clerk_sync.events

ROOT = Path(__file__).parents[1]
DOC = ROOT / "docs" / "architecture.md"
CORE = Path(clerk_sync.__file__).parent
CODE = re.compile(r"`([^`\s]+)`")


def names_in_doc() -> set[str]:
    return set(CODE.findall(DOC.read_text()))


def layer_rows() -> list[list[str]]:
    """The first column of the layer table, each row split into its entries."""
    section = DOC.read_text().split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [CODE.findall(row.split("|")[1]) for row in rows]


def contract_layers() -> list[list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [layers] = [c for c in config["contracts"] if c["id"] == "layers"]
    assert layers["containers"] == ["clerk_sync"]
    return [[entry.strip() for entry in layer.split("|")] for layer in layers["layers"]]


def resolves(dotted: str) -> bool:
    """A module or package, or an attribute of one (`clerk_sync.events.parse_envelope`)."""
    module, _, attribute = dotted.rpartition(".")
    parent = importlib.import_module(module)
    if hasattr(parent, attribute):
        return True
    return hasattr(parent, "__path__") and importlib.util.find_spec(dotted) is not None


def test_every_module_the_page_names_exists() -> None:
    """Each `clerk_sync...` name and `clerk_sync/...` path on the page is in the code."""
    dotted = {n for n in names_in_doc() if re.fullmatch(r"clerk_sync(_\w+)?(\.\w+)+", n)}
    paths = {n for n in names_in_doc() if n.startswith("clerk_sync/") and "<" not in n}
    assert len(dotted) > 20
    assert len(paths) > 5
    assert [n for n in sorted(dotted) if not resolves(n)] == []
    assert [p for p in sorted(paths) if not (CORE.parent / p).exists()] == []


def test_every_package_of_the_core_is_on_the_page() -> None:
    """A module or package added under clerk_sync/ needs its row in the layer table."""
    placed = {entry for row in layer_rows() for entry in row}
    present = {
        p.stem if p.is_file() else p.name
        for p in CORE.iterdir()
        if (p.suffix == ".py" or (p / "__init__.py").exists()) and p.name != "__init__.py"
    } - {"__main__"}
    assert present == placed


def test_the_layer_table_is_the_import_linter_contract() -> None:
    """Same layers, same order, same independent entries as `[tool.importlinter]`."""
    assert layer_rows() == contract_layers()


@pytest.mark.parametrize(
    "package",
    ["webhooks", "plugins", "storage", "auth", "observability", "reconcile", "cli", "testing"],
)
def test_each_package_says_what_it_owns_and_may_import(package: str) -> None:
    module = importlib.import_module(f"clerk_sync.{package}")
    assert module.__doc__ is not None
    assert "may import" in " ".join(module.__doc__.split()).lower()


def test_the_import_paths_plugin_authors_use_stay_valid() -> None:
    """DESIGN.md: `clerk_sync` (its __all__), `clerk_sync.testing`, `clerk_sync.projection` and
    `clerk_sync.events` keep their names whatever moves inside the core."""
    import clerk_sync.projection
    import clerk_sync.storage.projection
    from clerk_sync.app import create_app
    from clerk_sync.plugins.api import Context, Plugin
    from clerk_sync.testing import TEST_SECRET, envelope, sample, signed_headers

    assert set(clerk_sync.__all__) >= {
        "Plugin",
        "Context",
        "Event",
        "EVENT_TYPES",
        "Settings",
        "create_app",
        "ClerkSyncError",
    }
    assert (clerk_sync.Plugin, clerk_sync.Context, clerk_sync.create_app) == (
        Plugin,
        Context,
        create_app,
    )
    for name in clerk_sync.projection.__all__:
        assert getattr(clerk_sync.projection, name) is getattr(clerk_sync.storage.projection, name)
    assert clerk_sync.events.Event is clerk_sync.Event
    assert callable(clerk_sync.events.timestamp_from_clerk)
    assert signed_headers(envelope("user.created", {"id": "user_1"}), secret=TEST_SECRET)
    assert sample("user.created")
