"""The container image, built from the repository's Dockerfile with buildah and run, without Docker.

No registry can be reached here, so `scripts/local-base-image.sh` makes a local stand-in for
python:3.13-slim (Debian minbase + this machine's CPython 3.13 under /usr/local, with pip), cached
in buildah's storage in the tools cache outside the clone (tests/tools.py) by a digest of its
inputs. Package downloads do not work inside a build container, so the wheels the build needs are
made on the host first and the image is built in the Dockerfile's offline mode (`WHEELHOUSE`).
The image's own entry point then runs as its configured user (uid 10001) against the session's
MongoDB server on 127.0.0.1.

Figures of the last run (build times, image size, what the build added) are written to
.tools/image-build/last-run.json; docs/deploy.md quotes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import MongoClient

from clerk_sync.testing import TEST_SECRET, sample, signed_headers
from tests.processes import free_port
from tests.tools import run, tools_cache

pytestmark = pytest.mark.ops

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = REPO_ROOT / ".tools"
UNAVAILABLE = TOOLS / "image-build-tools.unavailable"
FIGURES = TOOLS / "image-build" / "last-run.json"
BUILDAH_ROOT = Path(os.environ.get("BUILDAH_ROOT", tools_cache() / "buildah"))
#: The wheelhouses, one per key of their inputs, shared by the clones of this machine.
WHEELHOUSES = tools_cache() / "image-build"
#: A wheelhouse unused this long is removed (another clone may be at an older commit).
STALE_SECONDS = 7 * 24 * 3600
WHEELHOUSE = "wheelhouse"
#: Distributions the Dockerfile builds from the repository itself (the rest come as wheels).
BUILT_HERE = (
    "clerk-sync",
    "clerk-sync-users",
    "clerk-sync-sessions",
    "clerk-sync-organizations",
    "clerk-sync-billing",
)
BUILT_IN_PLUGINS = ("users", "sessions", "organizations", "billing")
AUDIT_LOG_PROJECT = tomllib.loads((REPO_ROOT / "plugins/audit-log/pyproject.toml").read_text())
AUDIT_LOG = f"{AUDIT_LOG_PROJECT['project']['name']}=={AUDIT_LOG_PROJECT['project']['version']}"
BUILD_TIMEOUT = 1800
#: Not copied into the build context: none is part of it (.dockerignore), and some are large.
NOT_CONTEXT = (".git", ".venv", ".tools", WHEELHOUSE, "__pycache__", "*.egg-info", ".*_cache")


def _tools_or_skip() -> None:
    missing = [name for name in ("buildah", "mmdebstrap") if shutil.which(name) is None]
    if missing and UNAVAILABLE.exists():
        pytest.skip(
            f"IMAGE NOT BUILT: {', '.join(missing)} missing and could not be installed: "
            f"{UNAVAILABLE.read_text().strip()} (see scripts/install-tools.sh)"
        )
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not installed: run `bash scripts/install-tools.sh`",
            pytrace=False,
        )
    if os.geteuid() != 0:
        pytest.skip("IMAGE NOT BUILT: buildah's chroot isolation with vfs storage needs root")


class Buildah:
    """buildah on this checkout's own storage (vfs driver), failing the test on any error."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.prefix = [
            "buildah",
            "--root",
            str(root / "storage"),
            "--runroot",
            str(root / "run"),
            "--storage-driver",
            "vfs",
        ]

    def command(self, *args: str | Path) -> list[str]:
        return [*self.prefix, *(str(a) for a in args)]

    def __call__(self, *args: str | Path, timeout: float = 300) -> str:
        result = run(*self.command(*args), timeout=timeout)
        assert result.returncode == 0, f"buildah {args[0]} failed:\n{result.stdout}{result.stderr}"
        return result.stdout

    def attempt(self, *args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run(*self.command(*args), timeout=timeout)


@dataclass
class Image:
    name: str
    seconds: float
    config: dict[str, Any]
    size: int


@dataclass
class Figures:
    values: dict[str, Any] = field(default_factory=dict)

    def record(self, **values: Any) -> None:
        self.values.update(values)
        FIGURES.parent.mkdir(parents=True, exist_ok=True)
        FIGURES.write_text(json.dumps(self.values, indent=2, sort_keys=True) + "\n")


@pytest.fixture(scope="module")
def figures() -> Figures:
    return Figures({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})


@pytest.fixture(scope="module")
def buildah() -> Buildah:
    _tools_or_skip()
    return Buildah(BUILDAH_ROOT)


@pytest.fixture(scope="module")
def base_image(buildah: Buildah, figures: Figures) -> str:
    """The local python:3.13-slim stand-in (built once, then taken from buildah's storage)."""
    started = time.monotonic()
    result = run(
        "bash",
        REPO_ROOT / "scripts" / "local-base-image.sh",
        sys.executable,
        env={**os.environ, "BUILDAH_ROOT": str(buildah.root)},
        timeout=BUILD_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    name = result.stdout.strip().splitlines()[-1]
    figures.record(base_image=name, base_image_seconds=round(time.monotonic() - started, 1))
    return name


def _wheelhouse_key() -> str:
    """What the wheelhouse depends on: the interpreter, the pyprojects, the audit-log sources."""
    digest = hashlib.sha256(sys.version.encode())
    files = [REPO_ROOT / "pyproject.toml", *sorted(REPO_ROOT.glob("plugins/*/pyproject.toml"))]
    files += sorted(p for p in (REPO_ROOT / "plugins" / "audit-log" / "src").rglob("*.py"))
    for path in files:
        digest.update(path.relative_to(REPO_ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


@pytest.fixture(scope="module")
def wheelhouse(buildah: Buildah, figures: Figures) -> Path:
    """Wheels of every dependency and build backend, and of the audit-log plugin, made on the
    host with the interpreter the base image copies (so their tags fit the image). The core and
    the built-in plugins are left out: the Dockerfile builds those from the repository."""
    cache = WHEELHOUSES
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"wheelhouse-{_wheelhouse_key()}"
    if target.is_dir():
        target.touch()
        return target
    started = time.monotonic()
    scratch = cache / f"wheelhouse-{uuid.uuid4().hex}.tmp"
    pyprojects = [REPO_ROOT / "pyproject.toml", *REPO_ROOT.glob("plugins/*/pyproject.toml")]
    backends = {
        requirement
        for path in pyprojects
        for requirement in tomllib.loads(path.read_text())["build-system"]["requires"]
    }
    sources = [".", *(f"plugins/{name}" for name in (*BUILT_IN_PLUGINS, "audit-log"))]
    result = run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--disable-pip-version-check",
        "--wheel-dir",
        scratch,
        *sources,
        *sorted(backends),
        timeout=BUILD_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for wheel in scratch.glob("*.whl"):
        if wheel.name.split("-")[0].lower() in {_normalised(n) for n in BUILT_HERE}:
            wheel.unlink()
    for stale in cache.glob("wheelhouse-*"):
        if stale != scratch and time.time() - stale.stat().st_mtime > STALE_SECONDS:
            shutil.rmtree(stale, ignore_errors=True)
    try:
        scratch.rename(target)
    except OSError:  # another clone made the same wheelhouse meanwhile
        shutil.rmtree(scratch)
    figures.record(wheelhouse_seconds=round(time.monotonic() - started, 1))
    return target


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Path:
    """A copy of the checkout as the build context, with the wheelhouse at its top."""
    directory = tmp_path_factory.mktemp("image") / "context"
    shutil.copytree(REPO_ROOT, directory, ignore=shutil.ignore_patterns(*NOT_CONTEXT))
    shutil.copytree(wheelhouse, directory / WHEELHOUSE)
    assert (directory / "Dockerfile").read_bytes() == (REPO_ROOT / "Dockerfile").read_bytes()
    return directory


def build(buildah: Buildah, context: Path, base: str, **build_args: str) -> Image:
    """`buildah bud` of the context's Dockerfile in offline mode, on the local base image."""
    name = f"localhost/clerk-sync-test:{uuid.uuid4().hex[:12]}"
    arguments = {"PYTHON_IMAGE": base, "WHEELHOUSE": WHEELHOUSE, **build_args}
    started = time.monotonic()
    buildah(
        "bud",
        "--isolation",
        "chroot",
        "--pull-never",
        "--format",
        "docker",
        *(f"--build-arg={key}={value}" for key, value in arguments.items()),
        "--file",
        context / "Dockerfile",
        "--tag",
        name,
        context,
        timeout=BUILD_TIMEOUT,
    )
    seconds = time.monotonic() - started
    inspected = json.loads(buildah("inspect", "--type", "image", name))
    manifest = json.loads(inspected["Manifest"])
    size = sum(layer["size"] for layer in manifest["layers"])
    return Image(name, seconds, inspected["Docker"]["config"], size)


@pytest.fixture(scope="module")
def image(buildah: Buildah, context: Path, base_image: str, figures: Figures) -> Iterator[Image]:
    """The image as the Dockerfile makes it by default (no EXTRA_REQUIREMENTS), offline."""
    built = build(buildah, context, base_image)
    figures.record(build_seconds=round(built.seconds, 1), image_bytes=built.size)
    try:
        yield built
    finally:
        buildah.attempt("rmi", built.name)


@pytest.fixture(scope="module")
def audit_log_image(
    buildah: Buildah, context: Path, base_image: str, figures: Figures
) -> Iterator[Image]:
    """The image with EXTRA_REQUIREMENTS naming the audit-log plugin (its wheel is in the
    wheelhouse)."""
    built = build(buildah, context, base_image, EXTRA_REQUIREMENTS=AUDIT_LOG)
    figures.record(extra_build_seconds=round(built.seconds, 1), extra_image_bytes=built.size)
    try:
        yield built
    finally:
        buildah.attempt("rmi", built.name)


class Container:
    """A working container of an image; commands run through buildah as the image's user."""

    def __init__(self, buildah: Buildah, image: Image) -> None:
        self.buildah = buildah
        self.image = image
        self.id = buildah("from", "--pull-never", image.name).strip().splitlines()[-1]

    @property
    def user(self) -> str:
        user: str = self.image.config["User"]
        return user

    def command(self, *argv: str, env: dict[str, str] | None = None) -> list[str]:
        options = [f"--env={key}={value}" for key, value in (env or {}).items()]
        return self.buildah.command(
            "run", "--isolation", "chroot", "--user", self.user, *options, self.id, "--", *argv
        )

    def run(
        self, *argv: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return run(*self.command(*argv, env=env), timeout=timeout)

    def entrypoint(self, *args: str) -> list[str]:
        """The image's ENTRYPOINT with these arguments in place of its CMD."""
        return [*self.image.config["Entrypoint"], *args]

    def remove(self) -> None:
        self.buildah.attempt("rm", self.id)


@pytest.fixture
def container(buildah: Buildah, image: Image) -> Iterator[Container]:
    made = Container(buildah, image)
    try:
        yield made
    finally:
        made.remove()


class Served:
    """`clerk-sync serve` started with the image's entry point inside a container."""

    def __init__(self, container: Container, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = container.entrypoint("serve", "--host", "127.0.0.1", "--port", str(self.port))
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            container.command(*argv, env={"LOG_FORMAT": "json", **env}),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def _collect(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_ready(self, timeout: float = 120) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                response = httpx.get(self.url + "/readyz", timeout=2)
                if response.status_code == 200:
                    return response
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError("serve from the image never became ready:\n" + self.output())

    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def settings_env(mongodb_url: str, mongodb_db: str) -> dict[str, str]:
    return {
        "MONGODB_URL": mongodb_url,
        "MONGODB_DB": mongodb_db,
        "CLERK_WEBHOOK_SIGNING_SECRET": TEST_SECRET,
    }


# ---- the tests -------------------------------------------------------------------------------


def test_image_runs_its_entry_point_as_uid_10001(container: Container) -> None:
    """The image's user is the numeric 10001 the chart runs as, and its entry point is the
    installed `clerk-sync` command, whose version is the repository's."""
    assert container.image.config["User"] == "10001:10001"
    identity = container.run("id", "-u")
    assert identity.returncode == 0, identity.stderr
    assert identity.stdout.strip() == "10001"
    result = container.run(*container.entrypoint("--version"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"clerk-sync, version {version('clerk-sync')}"


def test_check_from_the_image_reaches_mongodb_on_the_host(
    container: Container, mongodb_url: str, mongodb_db: str
) -> None:
    result = container.run(
        *container.entrypoint("check", "--json"), env=settings_env(mongodb_url, mongodb_db)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True, report
    assert report["mongodb"] == "up"
    loaded = {p["name"]: p["status"] for p in report["plugins"]}
    assert loaded == dict.fromkeys(BUILT_IN_PLUGINS, "loaded")


def test_serve_from_the_image_processes_and_stores_a_signed_delivery(
    container: Container, mongodb_url: str, mongodb_db: str
) -> None:
    served = Served(container, settings_env(mongodb_url, mongodb_db))
    try:
        assert served.wait_ready().json()["status"] == "ready"
        assert httpx.get(served.url + "/livez", timeout=5).status_code == 200
        body = sample("user.created")
        headers = signed_headers(body)
        response = httpx.post(served.url + "/webhooks/clerk", content=body, headers=headers)
        assert response.status_code == 200, response.text + "\n" + served.output()
        assert response.json()["status"] == "processed"
        client: MongoClient[dict[str, Any]] = MongoClient(mongodb_url)
        try:
            db = client[mongodb_db]
            deadline = time.monotonic() + 10
            event = db.webhook_events.find_one({"_id": headers["svix-id"]})
            while (event is None or event["status"] != "processed") and time.monotonic() < deadline:
                time.sleep(0.2)
                event = db.webhook_events.find_one({"_id": headers["svix-id"]})
            assert event is not None
            assert event["status"] == "processed"
            assert event["type"] == "user.created"
            handlers = event["handlers"]
            assert handlers, event
            assert {name.split(":")[0] for name in handlers} == {"users"}
            assert {h["status"] for h in handlers.values()} == {"ok"}
            user = db.users.find_one({"clerk_id": json.loads(body)["data"]["id"]})
            assert user is not None
        finally:
            client.close()
    finally:
        served.stop()


def test_extra_requirements_add_the_audit_log_plugin_to_the_image(
    buildah: Buildah, audit_log_image: Image, mongodb_url: str, mongodb_db: str
) -> None:
    """EXTRA_REQUIREMENTS=clerk-sync-audit-log==…, installed from the wheelhouse: the server in
    that image lists the plugin, loaded, next to the built-in ones."""
    container = Container(buildah, audit_log_image)
    served = Served(container, settings_env(mongodb_url, mongodb_db))
    try:
        served.wait_ready()
        response = httpx.get(served.url + "/plugins", timeout=5)
        assert response.status_code == 200
        listed = response.json()
        plugins = listed["plugins"] if isinstance(listed, dict) else listed
        statuses = {p["name"]: p["status"] for p in plugins}
        assert statuses == dict.fromkeys((*BUILT_IN_PLUGINS, "audit-log"), "loaded")
        (audit,) = [p for p in plugins if p["name"] == "audit-log"]
        assert audit["version"] == AUDIT_LOG.split("==")[1]
    finally:
        served.stop()
        container.remove()


def _tree(root: Path) -> dict[str, int]:
    """Every file and directory below a mounted root file system: path -> size in bytes."""
    found: dict[str, int] = {}
    for directory, subdirectories, files in os.walk(root):
        for name in (*subdirectories, *files):
            path = Path(directory) / name
            found["/" + path.relative_to(root).as_posix()] = path.lstat().st_size
    return found


@contextmanager
def mounted(buildah: Buildah, image: str) -> Iterator[Path]:
    """The root file system of a working container of `image`, mounted on the host."""
    container = buildah("from", "--pull-never", image).strip().splitlines()[-1]
    try:
        yield Path(buildah("mount", container).strip())
    finally:
        buildah.attempt("umount", container)
        buildah.attempt("rm", container)


SITE_PACKAGES = "/usr/local/lib/python3.13/site-packages/"
#: Compiler drivers and compilers proper, as installed by gcc, g++, clang or tcc.
COMPILER = re.compile(r"(?:x86_64-linux-gnu-)?(?:gcc|g\+\+|cc|c\+\+|cpp|clang|tcc)(?:-[\d.]+)?")
#: Debian packages of a tool chain (gcc-12-base, libgcc-s1's dependency, holds no compiler).
BUILD_PACKAGES = re.compile(
    r"(?:(?:gcc|g\+\+|cpp|clang|libgcc|libstdc\+\+)(?:-[\d.]+)?(?:-dev)?|tcc|build-essential"
    r"|binutils(?:-.*)?|libc6?-dev|make|dpkg-dev)"
)


def _group(path: str) -> str:
    """Where an added file belongs: its distribution's directory, or its top directories."""
    if path.startswith(SITE_PACKAGES):
        return SITE_PACKAGES + path.removeprefix(SITE_PACKAGES).split("/")[0]
    return "/".join(path.split("/")[:3])


def test_final_image_holds_no_compiler_no_pip_cache_and_no_wheels(
    buildah: Buildah, image: Image, base_image: str, figures: Figures
) -> None:
    """What the build leaves in the runtime image: no compiler (file or Debian package), no pip
    cache, no wheel beyond the base image's own ensurepip bundle, nothing of the builder stage."""
    with mounted(buildah, image.name) as root, mounted(buildah, base_image) as base:
        files = _tree(root)
        base_files = _tree(base)
        status = (root / "var/lib/dpkg/status").read_text()
    compilers = [
        path
        for path in files
        if ("/bin/" in path and COMPILER.fullmatch(path.rsplit("/", 1)[1]))
        or "/lib/gcc/" in path
        or "/libexec/gcc/" in path
    ]
    assert compilers == []
    packages = re.findall(r"^Package: (\S+)$", status, re.MULTILINE)
    assert "python3.13" not in packages  # the base's CPython is under /usr/local, not a package
    assert [p for p in packages if BUILD_PACKAGES.fullmatch(p)] == []
    assert [path for path in files if "/.cache" in path or "/pip-" in path.rsplit("/", 1)[1]] == [
        path for path in base_files if "/.cache" in path or "/pip-" in path.rsplit("/", 1)[1]
    ]
    wheels = sorted(path for path in files if path.endswith(".whl"))
    assert wheels == sorted(path for path in base_files if path.endswith(".whl"))
    assert all("/ensurepip/_bundled/" in path for path in wheels), wheels
    for leftover in ("/wheels", "/context", "/src", "/tmp/extra-requirements.txt"):
        assert leftover not in files
    assert [path for path in files if path.startswith("/tmp/")] == []
    assert f"{SITE_PACKAGES}clerk_sync/__init__.py" in files
    added = {path: size for path, size in files.items() if path not in base_files}
    groups: dict[str, int] = {}
    for path, size in added.items():
        groups[_group(path)] = groups.get(_group(path), 0) + size
    largest = sorted(groups.items(), key=lambda item: -item[1])[:12]
    figures.record(added_bytes=sum(added.values()), added_files=len(added), largest_added=largest)
