"""docs/extension.md shows only code the tests run: each Python block is an excerpt, as written,
of an example under examples/, whose own tests `make test` collects."""

from __future__ import annotations

import tomllib

from tests.devloop import REPO, blocks

DOC = REPO / "docs" / "extension.md"
EXCERPT = "docs-test: excerpt of "


def python_blocks() -> list[tuple[str, str]]:
    return [(mark, body) for mark, lang, body in blocks(DOC.read_text()) if lang == "python"]


def test_every_python_block_is_an_excerpt_of_an_example_as_written() -> None:
    found = python_blocks()
    assert len(found) >= 5
    for mark, body in found:
        assert mark.startswith(EXCERPT), f"a Python block without its example:\n{body}"
        source = REPO / mark.removeprefix(EXCERPT)
        assert source.is_relative_to(REPO / "examples"), mark
        assert body in source.read_text(), f"{source.name} has no such lines:\n{body}"


def test_the_examples_and_their_tests_are_collected_by_make_test() -> None:
    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]
    assert "examples" in options["ini_options"]["testpaths"]
    for example in ("quart-app", "fastapi-mount"):
        folder = REPO / "examples" / example
        assert list(folder.glob("test_*.py")), example
        assert f"examples/{example}" in options["ini_options"]["pythonpath"]


def test_the_page_is_linked_from_the_readme() -> None:
    assert "(docs/extension.md)" in (REPO / "README.md").read_text()
