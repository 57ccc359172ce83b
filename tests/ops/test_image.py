"""Offline checks of the image recipe (Dockerfile, .dockerignore) and of skaffold.yaml.

These tests lint the recipe, check its structure against what the chart and the docs rely on,
and run its pip scripts (the builder's wheels, EXTRA_REQUIREMENTS, with and without a wheelhouse)
with a stand-in `pip`. The image itself is built and run by test_image_build.py.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from tests.tools import run, tool

pytestmark = pytest.mark.ops

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
SKAFFOLD = REPO_ROOT / "skaffold.yaml"
SKAFFOLD_SCHEMA = REPO_ROOT / "tests" / "ops" / "schemas" / "skaffold-v4beta13.json"
BUILT_IN_PLUGINS = ("users", "sessions", "organizations", "billing")


# ---- Dockerfile ------------------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: continuation lines joined into one line (as Docker does),
    comments and blank lines dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        found.append((keyword.upper(), arguments.strip()))
        pending = ""
    return found


def global_arguments() -> list[str]:
    """The ARGs before the first FROM (the only instruction Docker allows there)."""
    found = []
    for keyword, args in instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            return found
        assert keyword == "ARG", f"{keyword} before the first FROM"
        found.append(args)
    raise AssertionError("the Dockerfile has no FROM")


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's build stages, each starting with its FROM."""
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions(DOCKERFILE.read_text())[len(global_arguments()) :]:
        if instruction[0] == "FROM":
            result.append([])
        result[-1].append(instruction)
    return result


def arguments(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for key, args in stage if key == keyword]


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1]


def test_hadolint_passes_on_the_dockerfile() -> None:
    """hadolint, with its default rules and no ignores, finds nothing."""
    result = run(tool("hadolint"), "--no-color", DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_derived_image_example_of_the_deploy_guide_passes_hadolint(tmp_path: Path) -> None:
    """The `FROM clerk-sync` + `pip install` recipe of docs/deploy.md lints clean too."""
    guide = (REPO_ROOT / "docs" / "deploy.md").read_text()
    (example,) = re.findall(r"(?ms)^```dockerfile\n(.*?)^```", guide)
    assert "pip install --no-cache-dir" in example
    assert example.strip().splitlines()[-1] == "USER 10001:10001"
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(example)
    result = run(tool("hadolint"), "--no-color", dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr


def test_builder_and_runtime_stages_both_use_python_3_13_slim_unless_told_otherwise() -> None:
    """Both stages take their base from one build argument (a mirror or a local stand-in, see
    docs/deploy.md) whose default is the official image."""
    assert global_arguments() == ["PYTHON_IMAGE=python:3.13-slim"]
    froms = [stage[0][1] for stage in stages()]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE}"]


#: Plugins kept in the repository but not installed by default (docs/plugins.md shows how).
OPTIONAL_PLUGINS = frozenset({"audit-log"})


def test_builder_makes_wheels_of_the_core_and_every_built_in_plugin() -> None:
    """One `pip wheel` resolves the core (repo root) and each plugins/<name> distribution, so the
    plugins' `clerk-sync` requirement is met by the local core."""
    (builder, _) = stages()
    (wheel,) = [run for run in arguments(builder, "RUN") if "pip wheel" in run]
    words = shlex.split(wheel[wheel.index("pip wheel") :])
    assert "--no-cache-dir" in words
    assert words[words.index("--wheel-dir") + 1] == "/wheels"
    targets = [w for w in words[words.index("/wheels") + 1 :] if not w.startswith("-")]
    on_disk = sorted(
        p.parent.relative_to(REPO_ROOT).as_posix()
        for p in REPO_ROOT.glob("plugins/*/pyproject.toml")
        if p.parent.name not in OPTIONAL_PLUGINS
    )
    assert targets[0] == "."
    assert sorted(targets[1:]) == sorted({*on_disk, *(f"plugins/{n}" for n in BUILT_IN_PLUGINS)})
    copied = " ".join(arguments(builder, "COPY"))
    for source in ("pyproject.toml", "README.md", "service/", "plugins/"):
        assert source in copied


def test_runtime_stage_has_no_compilers_no_caches_and_no_wheels_left() -> None:
    """Nothing is installed with apt; every pip call skips its cache; the wheels are
    bind-mounted from the builder rather than copied into a layer."""
    stage = final_stage()
    text = "\n".join(args for _, args in stage)
    for banned in ("apt-get", "apk ", "build-essential", "gcc"):
        assert banned not in text
    assert not arguments(stage, "COPY")
    runs = arguments(stage, "RUN")
    installs = [line for run in runs for line in re.findall(r"pip install[^\n&;]*", run)]
    assert len(installs) == 2
    assert all("--no-cache-dir" in line for line in installs), installs
    (core,) = [run for run in runs if "/wheels/*.whl" in run]
    assert core.startswith("--mount=type=bind,from=builder,source=/wheels,target=/wheels")
    assert "--no-index" in core
    assert "PIP_NO_CACHE_DIR=1" in " ".join(arguments(stage, "ENV"))


def test_runtime_stage_runs_as_the_fixed_non_root_uid_10001() -> None:
    """The user is numeric (so the kubelet can check runAsNonRoot) and matches the chart."""
    stage = final_stage()
    assert arguments(stage, "USER") == ["10001:10001"]
    keywords = [keyword for keyword, _ in stage]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    created = " ".join(arguments(stage, "RUN"))
    assert "useradd --system --uid 10001 --gid 10001" in " ".join(created.split())
    values = yaml.safe_load((REPO_ROOT / "charts/clerk-sync/values.yaml").read_text())
    assert values["securityContext"]["runAsUser"] == values["podSecurityContext"]["runAsUser"]
    assert values["securityContext"]["runAsUser"] == 10001


def test_entrypoint_and_cmd_serve_on_port_8000() -> None:
    stage = final_stage()
    assert [json.loads(a) for a in arguments(stage, "ENTRYPOINT")] == [["clerk-sync"]]
    assert [json.loads(a) for a in arguments(stage, "CMD")] == [
        ["serve", "--host", "0.0.0.0", "--port", "8000"]  # noqa: S104 - listens in a container
    ]
    assert arguments(stage, "EXPOSE") == ["8000"]
    assert not arguments(stage, "HEALTHCHECK"), "Kubernetes probes /livez and /readyz instead"


def test_python_writes_no_bytecode_and_does_not_buffer_output() -> None:
    env = " ".join(arguments(final_stage(), "ENV")).split()
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env


def stage_shell(stage: list[tuple[str, str]]) -> list[str]:
    """The stage's SHELL, or Docker's default."""
    shells = [json.loads(a) for a in arguments(stage, "SHELL")]
    shell: list[str] = shells[-1] if shells else ["/bin/sh", "-c"]
    return shell


def test_run_scripts_are_valid_shell() -> None:
    """Every RUN of both stages parses in its stage's SHELL."""
    for stage in stages():
        shell = stage_shell(stage)
        for script in arguments(stage, "RUN"):
            result = run(*shell[:-1], "-n", "-c", strip_mounts(script)[0])
            assert result.returncode == 0, result.stderr


def strip_mounts(run_arguments: str) -> tuple[str, list[str]]:
    """A RUN's script without its leading --mount flags, and the mount targets."""
    targets = []
    script = run_arguments
    while match := re.match(r"--mount=(\S+)\s+", script):
        options = dict(part.split("=", 1) for part in match.group(1).split(","))
        targets.append(options["target"])
        script = script[match.end() :]
    return script, targets


class StageScript:
    """A RUN script of the Dockerfile (the one of `stage` mentioning `marker`), run here with a
    stand-in `pip` that logs its calls (and the requirements file it was given); a temp directory
    plays the build context."""

    def __init__(self, tmp_path: Path, stage: list[tuple[str, str]], marker: str) -> None:
        self.shell = stage_shell(stage)
        (script,) = [run for run in arguments(stage, "RUN") if marker in run]
        script, (context_target,) = strip_mounts(script)
        self.context = tmp_path / "context"
        self.scratch = tmp_path / "scratch"
        self.bin = tmp_path / "bin"
        for directory in (self.context, self.scratch, self.bin):
            directory.mkdir()
        # /tmp first: the temporary directories given to the script are themselves under /tmp
        script = script.replace("/tmp/", f"{self.scratch}/")
        self.script = script.replace(context_target, str(self.context))
        self.log = tmp_path / "pip.log"
        stub = self.bin / "pip"
        stub.write_text(
            "#!/usr/bin/env bash\n"
            'echo "pip $*" >> "$PIP_LOG"\n'
            "while [ $# -gt 0 ]; do\n"
            '  [ "$1" = -r ] && sed "s/^/| /" "$2" >> "$PIP_LOG"\n'
            "  shift\n"
            "done\n"
            "exit 0\n"
        )
        stub.chmod(0o755)

    def attempt(self, **build_args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
        """Run the script with these build arguments (as environment variables, the way Docker
        passes a stage's ARGs): its result and the pip calls it made."""
        env = {
            **os.environ,
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "PIP_LOG": str(self.log),
            **build_args,
        }
        self.log.write_text("")
        result = run(*self.shell, self.script, env=env)
        text = self.log.read_text().replace(str(self.scratch), "/tmp")
        return result, text.replace(str(self.context), "CTX").splitlines()

    def __call__(self, **build_args: str) -> list[str]:
        """The pip calls (and requirement lines) of a successful run."""
        result, calls = self.attempt(**build_args)
        assert result.returncode == 0, result.stderr
        assert list(self.scratch.iterdir()) == [], "the generated requirements file must go"
        return calls


class ExtraRequirementsScript(StageScript):
    """The runtime stage's EXTRA_REQUIREMENTS script; called with EXTRA_REQUIREMENTS's value."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path, final_stage(), "EXTRA_REQUIREMENTS")

    def __call__(self, extra: str = "", **build_args: str) -> list[str]:  # type: ignore[override]
        return super().__call__(EXTRA_REQUIREMENTS=extra, **build_args)


@pytest.fixture
def extra_requirements(tmp_path: Path) -> ExtraRequirementsScript:
    return ExtraRequirementsScript(tmp_path)


@pytest.fixture
def builder_wheels(tmp_path: Path) -> StageScript:
    """The builder stage's `pip wheel` script."""
    return StageScript(tmp_path, stages()[0], "pip wheel")


def test_extra_requirements_and_wheelhouse_are_declared_in_the_runtime_stage() -> None:
    assert arguments(final_stage(), "ARG") == ['EXTRA_REQUIREMENTS=""', 'WHEELHOUSE=""']
    assert arguments(stages()[0], "ARG") == ['WHEELHOUSE=""']


BUILDER_TARGETS = [". plugins/users plugins/sessions plugins/organizations plugins/billing"]


def test_builder_without_wheelhouse_resolves_from_the_index(builder_wheels: StageScript) -> None:
    calls = builder_wheels(WHEELHOUSE="")
    assert [" ".join(c.split()) for c in calls] == [
        f"pip wheel --no-cache-dir --wheel-dir /wheels {BUILDER_TARGETS[0]}"
    ]


def test_builder_with_a_wheelhouse_installs_only_from_it(builder_wheels: StageScript) -> None:
    """Offline mode: no index at all, every distribution found in the wheelhouse directory."""
    (builder_wheels.context / "wheelhouse").mkdir()
    calls = builder_wheels(WHEELHOUSE="wheelhouse")
    assert [" ".join(c.split()) for c in calls] == [
        "pip wheel --no-cache-dir --no-index --find-links CTX/wheelhouse --wheel-dir /wheels "
        + BUILDER_TARGETS[0]
    ]


def test_builder_with_a_missing_wheelhouse_stops_naming_it(builder_wheels: StageScript) -> None:
    result, calls = builder_wheels.attempt(WHEELHOUSE="vendor/wheels")
    assert result.returncode == 1
    assert "WHEELHOUSE=vendor/wheels is not a directory of the build context" in result.stderr
    assert calls == []


def test_extra_requirements_with_a_wheelhouse_install_only_from_it(
    extra_requirements: ExtraRequirementsScript,
) -> None:
    calls = extra_requirements("clerk-sync-audit-log==0.1.0", WHEELHOUSE="wheelhouse")
    assert calls == [
        "pip install --no-cache-dir --no-index --find-links CTX/wheelhouse"
        " -r /tmp/extra-requirements.txt",
        "| clerk-sync-audit-log==0.1.0",
        "pip check",
    ]


def test_without_extra_requirements_pip_is_not_called(
    extra_requirements: ExtraRequirementsScript,
) -> None:
    assert extra_requirements("") == []


def test_extra_requirements_given_as_specifiers_are_installed(
    extra_requirements: ExtraRequirementsScript,
) -> None:
    """Specifiers separated by spaces or tabs become one requirement per line, then `pip check`."""
    calls = extra_requirements("clerk-sync-audit==1.2.0  other>=2,<3\tthird")
    assert calls == [
        "pip install --no-cache-dir -r /tmp/extra-requirements.txt",
        "| clerk-sync-audit==1.2.0",
        "| other>=2,<3",
        "| third",
        "pip check",
    ]


def test_extra_requirements_given_as_a_file_of_the_build_context_are_installed(
    extra_requirements: ExtraRequirementsScript,
) -> None:
    """A path inside the build context is used as a requirements file, where it is."""
    (extra_requirements.context / "requirements-plugins.txt").write_text("audit==1\n")
    calls = extra_requirements("requirements-plugins.txt")
    assert calls == [
        "pip install --no-cache-dir -r CTX/requirements-plugins.txt",
        "| audit==1",
        "pip check",
    ]


def test_air_gapped_guide_puts_every_distribution_and_build_backend_in_the_wheelhouse() -> None:
    """docs/deploy.md's wheelhouse recipe names every plugin of the repository and every build
    backend of their pyproject files, and builds with it as the test of the image does."""
    guide = (REPO_ROOT / "docs" / "deploy.md").read_text()
    blocks = re.findall(r"(?ms)^```sh\n(.*?)^```", guide)
    (block,) = [b for b in blocks if "pip wheel" in b and "WHEELHOUSE=wheelhouse" in b]
    commands = [shlex.split(c) for c in block.replace("\\\n", " ").splitlines()]
    (wheel,) = [c for c in commands if c[1:4] == ["-m", "pip", "wheel"]]
    assert wheel[4:6] == ["--wheel-dir", "wheelhouse"]
    targets = set(wheel[6:])
    plugin_pyprojects = sorted(REPO_ROOT.glob("plugins/*/pyproject.toml"))
    plugins = {path.parent.relative_to(REPO_ROOT).as_posix() for path in plugin_pyprojects}
    assert {".", *plugins} <= targets
    backends = {
        requirement
        for path in (REPO_ROOT / "pyproject.toml", *plugin_pyprojects)
        for requirement in tomllib.loads(path.read_text())["build-system"]["requires"]
    }
    assert backends <= targets
    builds = [c for c in commands if c[:2] == ["docker", "build"]]
    assert len(builds) == 2
    assert all("WHEELHOUSE=wheelhouse" in c for c in builds)
    audit = tomllib.loads((REPO_ROOT / "plugins/audit-log/pyproject.toml").read_text())["project"]
    assert f"EXTRA_REQUIREMENTS={audit['name']}=={audit['version']}" in [
        w for c in builds for w in c
    ]


def dockerignore_patterns() -> list[str]:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_dockerignore_keeps_local_state_out_and_the_build_inputs_in() -> None:
    patterns = dockerignore_patterns()
    for excluded in (".venv", ".git", ".tools", ".clerk-sync", "**/.pytest_cache", "tests"):
        assert excluded in patterns
    for caches in ("**/.mypy_cache", "**/.ruff_cache", "**/.hypothesis", "**/__pycache__"):
        assert caches in patterns
    for needed in ("pyproject.toml", "README.md", "service", "plugins"):
        assert not any(p.lstrip("!").rstrip("/") == needed for p in patterns), needed


# ---- skaffold ----------------------------------------------------------------------------------


def skaffold() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(SKAFFOLD.read_text())
    return config


def test_skaffold_yaml_matches_the_v4beta13_schema() -> None:
    """check-jsonschema against the schema the skaffold project publishes (copied into the repo,
    since CI's clone may not have ../shared at the same place)."""
    result = run(tool("check-jsonschema"), "--schemafile", SKAFFOLD_SCHEMA, SKAFFOLD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert skaffold()["apiVersion"] == "skaffold/v4beta13"


def test_schema_copy_is_the_shared_one_when_shared_is_beside_the_clone() -> None:
    shared = REPO_ROOT.parent / "shared" / "schemas" / SKAFFOLD_SCHEMA.name
    if shared.is_file():
        assert SKAFFOLD_SCHEMA.read_bytes() == shared.read_bytes()
    assert json.loads(SKAFFOLD_SCHEMA.read_text())["anyOf"]


def test_yamllint_is_clean_on_skaffold_and_the_development_manifests() -> None:
    files = (SKAFFOLD, REPO_ROOT / "deploy" / "dev" / "mongodb.yaml")
    result = run(tool("yamllint"), "--strict", "-c", REPO_ROOT / ".yamllint.yaml", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def template_variable(image: str, kind: str) -> str:
    """skaffold's name for an artifact's template variable: `/` and `-` become `_`."""
    return f"IMAGE_{kind}_{re.sub(r'[/-]', '_', image)}"


def evaluate(template: str, variables: dict[str, str]) -> str:
    """The few skaffold template forms used here: {{.NAME}} and {{default "x" .NAME}}."""

    def substitute(match: re.Match[str]) -> str:
        default, name = match.group(1), match.group(2)
        value = variables.get(name, "")
        return value or (json.loads(default) if default else "")

    return re.sub(r'\{\{\s*(?:default\s+("[^"]*")\s+)?\.(\w+)\s*\}\}', substitute, template)


def helm_values(release: dict[str, Any], variables: dict[str, str]) -> dict[str, Any]:
    """What skaffold hands to Helm: the values files, then setValueTemplates as --set."""
    values: dict[str, Any] = {}
    for path in release["valuesFiles"]:
        values.update(yaml.safe_load((REPO_ROOT / path).read_text()))
    for dotted, template in release["setValueTemplates"].items():
        *parents, leaf = dotted.split(".")
        node = values
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = evaluate(template, variables)
    return values


def artifact_variables(image: str) -> dict[str, str]:
    digest = "sha256:" + "ab" * 32
    return {
        template_variable(image, "REPO"): image,
        template_variable(image, "TAG"): "dev1",
        template_variable(image, "DIGEST"): digest,
    }


def render_dev(values: dict[str, Any], release: dict[str, Any]) -> list[dict[str, Any]]:
    with helm_python.Chart.load(REPO_ROOT / release["chartPath"]) as chart:
        output = chart.render(values=values, name=release["name"], is_install=True)
    return [
        doc
        for template, text in output.items()
        if not template.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def test_skaffold_builds_the_image_and_deploys_the_chart_with_development_values() -> None:
    """The built artifact feeds the chart's image values; the development values render; the
    forwarded Service and port exist in that rendering."""
    config = skaffold()
    (artifact,) = config["build"]["artifacts"]
    assert artifact["docker"]["dockerfile"] == "Dockerfile"
    # the Dockerfile's RUN --mount needs BuildKit
    assert "--mount=" in DOCKERFILE.read_text()
    assert config["build"]["local"]["useBuildkit"] is True
    (release,) = config["deploy"]["helm"]["releases"]
    assert release["chartPath"] == "charts/clerk-sync"
    assert release["valuesFiles"] == ["charts/clerk-sync/values-dev.yaml"]
    image = artifact["image"]
    repository = "{{." + template_variable(image, "REPO") + "}}"
    assert release["setValueTemplates"]["image.repository"] == repository
    variables = {**artifact_variables(image), "MONGODB_URL": "mongodb://db:27017"}
    docs = render_dev(helm_values(release, variables), release)
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"{image}:dev1@sha256:{'ab' * 32}"
    (forward,) = config["portForward"]
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    assert forward["resourceType"] == "service"
    assert forward["resourceName"] in services
    assert forward["port"] == services[forward["resourceName"]]["spec"]["ports"][0]["port"] == 8000
    assert forward["localPort"] == 8000


def test_skaffold_without_mongodb_url_fails_naming_the_setting() -> None:
    """Outside the `local` profile MONGODB_URL comes from the environment; unset, the chart's
    schema stops the deploy with the setting's name."""
    config = skaffold()
    (release,) = config["deploy"]["helm"]["releases"]
    values = helm_values(release, artifact_variables(config["build"]["artifacts"][0]["image"]))
    assert values["secrets"]["mongodbUrl"] == ""
    with pytest.raises(helm_python.HelmError, match="mongodbUrl"):
        render_dev(values, release)


def pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def apply_patches(config: dict[str, Any], patches: list[dict[str, Any]]) -> dict[str, Any]:
    """JSON-patch `add` and `replace`, as skaffold applies a profile's patches."""
    patched = copy.deepcopy(config)
    for patch in patches:
        *parents, leaf = pointer(patch["path"])
        node = patched
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if patch["op"] == "replace":
            assert leaf in node, f"replace of a missing path {patch['path']}"
        else:
            assert patch["op"] == "add", patch
        node[leaf] = patch["value"]
    return patched


def test_local_profile_also_deploys_a_development_mongodb_and_points_the_release_at_it() -> None:
    """Profile `local`: the raw MongoDB manifests go through a kubectl deployer and the
    release's MONGODB_URL names their Service."""
    config = skaffold()
    (profile,) = [p for p in config["profiles"] if p["name"] == "local"]
    manifests = [REPO_ROOT / path for path in profile["manifests"]["rawYaml"]]
    assert manifests == [REPO_ROOT / "deploy" / "dev" / "mongodb.yaml"]
    result = run(tool("kubernetes-validate"), "-k", "1.30.0", "--strict", "--quiet", *manifests)
    assert result.returncode == 0, result.stdout + result.stderr
    patched = apply_patches(config, profile["patches"])
    assert patched["deploy"]["kubectl"] == {}
    (release,) = patched["deploy"]["helm"]["releases"]
    image = config["build"]["artifacts"][0]["image"]
    values = helm_values(release, artifact_variables(image))
    url = values["secrets"]["mongodbUrl"]
    (service,) = [d for d in yaml.safe_load_all(manifests[0].read_text()) if d["kind"] == "Service"]
    port = service["spec"]["ports"][0]["port"]
    assert url.startswith(f"mongodb://{service['metadata']['name']}:{port}/")
    assert render_dev(values, release)
