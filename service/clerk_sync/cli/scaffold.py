"""`clerk-sync plugin new`: the files of a new, installable plugin distribution.

The templates are `string.Template`s (placeholders `${name}`) kept here rather than as package
data, so the installed `clerk-sync` always carries them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from clerk_sync import __version__
from clerk_sync.plugins import ENTRY_POINT_GROUP

NAME = re.compile(r"^[a-z][a-z0-9_-]{0,40}$")


@dataclass(frozen=True, slots=True)
class Names:
    """Every spelling of a plugin's name that the templates need."""

    name: str

    @property
    def distribution(self) -> str:
        return f"clerk-sync-{self.name}"

    @property
    def package(self) -> str:
        return "clerk_sync_" + self.name.replace("-", "_")

    @property
    def env_prefix(self) -> str:
        return f"CLERK_SYNC_PLUGIN_{self.name.upper().replace('-', '_')}_"

    @property
    def class_prefix(self) -> str:
        return "".join(part.capitalize() for part in re.split(r"[-_]", self.name))

    @property
    def collection(self) -> str:
        return self.name.replace("-", "_") + "_sign_ups"

    def mapping(self) -> dict[str, str]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "package": self.package,
            "env_prefix": self.env_prefix,
            "Class": self.class_prefix,
            "collection": self.collection,
            "group": ENTRY_POINT_GROUP,
            "core_version": __version__,
        }


PYPROJECT = Template("""\
[build-system]
requires = ["setuptools>=75"]
build-backend = "setuptools.build_meta"

[project]
name = "${distribution}"
version = "0.1.0"
description = "clerk-sync plugin ${name}: records Clerk sign-ups in MongoDB."
readme = "README.md"
requires-python = ">=3.13"
dependencies = ["clerk-sync>=${core_version}"]

[project.optional-dependencies]
test = ["pytest", "pytest-asyncio"]

# The entry point is how clerk-sync finds the plugin: its name is the plugin's name.
[project.entry-points."${group}"]
${name} = "${package}:plugin"

[tool.setuptools.packages.find]
where = ["src"]

[tool.setuptools.package-data]
${package} = ["py.typed"]

[tool.pytest.ini_options]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
asyncio_default_test_loop_scope = "function"
filterwarnings = ["error"]

[tool.ruff]
line-length = 100
target-version = "py313"

[tool.ruff.lint]
select = ["E", "F", "W", "I", "B", "UP", "ASYNC", "S", "RUF", "SIM", "PT"]
ignore = ["S101"]
""")

MODULE = Template('''\
"""clerk-sync plugin `${name}`: records each Clerk sign-up in MongoDB."""

from __future__ import annotations

from datetime import datetime

from clerk_sync import Context, Event, Plugin
from odmantic import Field, Model
from pydantic import BaseModel


class ${Class}Settings(BaseModel):
    """The plugin's settings, read from ${env_prefix}<FIELD> when it loads."""

    tag: str = "clerk"


class SignUp(Model):
    """One user who signed up; the Clerk id is the primary key, so saving twice is harmless."""

    model_config = {"collection": "${collection}"}  # noqa: RUF012 - a plain dict for ODMantic

    clerk_id: str = Field(primary_field=True)
    tag: str
    signed_up_at: datetime | None = Field(default=None, index=True)


plugin = Plugin("${name}", models=[SignUp], settings=${Class}Settings)


@plugin.on("user.created")
async def record_sign_up(event: Event, ctx: Context[${Class}Settings]) -> None:
    """Save one SignUp per user: safe to run twice, independent of every other handler."""
    sign_up = SignUp(clerk_id=event.data["id"], tag=ctx.settings.tag, signed_up_at=event.timestamp)
    await ctx.engine.save(sign_up)
    ctx.log.info("sign_up_recorded", clerk_id=sign_up.clerk_id)
''')

TESTS = Template('''\
"""The plugin in a real clerk-sync app: signed deliveries in, documents in MongoDB out.

`mongodb_url` and `mongodb_db` come with clerk-sync (its pytest plugin): a MongoDB server from
TEST_MONGODB_URL, a testcontainers container, or an embedded in-memory server.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
from clerk_sync import Settings, create_app
from clerk_sync.testing import TEST_SECRET, sample, signed_headers
from motor.motor_asyncio import AsyncIOMotorClient
from odmantic import AIOEngine

from ${package} import SignUp, plugin

if TYPE_CHECKING:
    from quart.typing import TestClientProtocol

USER_ID = json.loads(sample("user.created"))["data"]["id"]


@pytest.fixture
async def engine(mongodb_url: str, mongodb_db: str) -> AsyncIterator[AIOEngine]:
    client: AsyncIOMotorClient[dict[str, object]] = AsyncIOMotorClient(mongodb_url)
    yield AIOEngine(client=client, database=mongodb_db)
    client.close()


def settings(mongodb_url: str, mongodb_db: str) -> Settings:
    return Settings(
        _env_file=None,
        clerk_webhook_signing_secret=TEST_SECRET,
        mongodb_url=mongodb_url,
        mongodb_db=mongodb_db,
        clerk_sync_plugins=None,
        log_format="json",
    )


async def deliver(client: TestClientProtocol, body: bytes, headers: dict[str, str]) -> int:
    response = await client.post("/webhooks/clerk", data=body, headers=headers)
    return response.status_code


async def test_user_created_is_recorded_once(
    mongodb_url: str, mongodb_db: str, engine: AIOEngine
) -> None:
    """A signed user.created is processed, and its redelivery adds nothing."""
    app = create_app(settings(mongodb_url, mongodb_db), plugins=[plugin])
    body = sample("user.created")
    headers = signed_headers(body)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        first = await deliver(client, body, headers)
        again = await deliver(client, body, headers)
    assert (first, again) == (200, 200)
    sign_ups = await engine.find(SignUp)
    assert [(s.clerk_id, s.tag) for s in sign_ups] == [(USER_ID, "clerk")]


async def test_tag_is_read_from_the_environment(
    mongodb_url: str, mongodb_db: str, engine: AIOEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """${env_prefix}TAG sets the plugin's `tag` setting."""
    monkeypatch.setenv("${env_prefix}TAG", "beta")
    app = create_app(settings(mongodb_url, mongodb_db), plugins=[plugin])
    body = sample("user.created")
    async with app.test_app() as test_app:
        assert await deliver(test_app.test_client(), body, signed_headers(body)) == 200
    sign_up = await engine.find_one(SignUp, SignUp.clerk_id == USER_ID)
    assert sign_up is not None
    assert sign_up.tag == "beta"
''')

README = Template("""\
# ${distribution}

A [clerk-sync](https://github.com/clerk-sync/clerk-sync) plugin named `${name}`: it records
every Clerk sign-up (`user.created`) in the MongoDB collection `${collection}`.

## Develop

```sh
pip install -e '.[test]'
pytest
```

The tests need a MongoDB server; clerk-sync's pytest plugin provides one (`TEST_MONGODB_URL`,
else a testcontainers `mongo:8.0` when Docker answers, else an embedded in-memory server).

## Settings

| variable | meaning | default |
|---|---|---|
| `${env_prefix}TAG` | tag stored with each sign-up | `clerk` |

## Deploy

Install the distribution next to clerk-sync; it is discovered through its entry point
`${name}` in the group `${group}`:

```dockerfile
FROM clerk-sync
RUN pip install --no-cache-dir ${distribution}
```

or build the clerk-sync image with `--build-arg EXTRA_REQUIREMENTS="${distribution}"`.
`clerk-sync plugins` lists it, and `CLERK_SYNC_DISABLED_PLUGINS=${name}` turns it off.
""")


def files(name: str) -> dict[str, str]:
    """Relative path → content of every file of the plugin `name`."""
    names = Names(name)
    values = names.mapping()
    package = Path("src") / names.package
    return {
        "pyproject.toml": PYPROJECT.substitute(values),
        "README.md": README.substitute(values),
        str(package / "__init__.py"): MODULE.substitute(values),
        str(package / "py.typed"): "",
        "tests/test_plugin.py": TESTS.substitute(values),
    }


def create(name: str, directory: Path) -> Path:
    """Write the plugin into `directory/name`, which must not exist or be empty."""
    target = directory / name
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} exists and is not empty")
    for relative, content in files(name).items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return target
