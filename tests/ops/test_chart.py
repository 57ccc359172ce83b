"""Offline checks of the Helm chart (charts/clerk-sync): no cluster, no Docker, no helm binary.

The chart is rendered with each `ci/*-values.yaml` by the Helm Go SDK (helm-python-sdk), then the
output is checked by kubernetes-validate, the prometheus-operator CRD schemas (node), promtool,
yamllint and checkov, and its content is asserted on. A missing tool fails, never skips.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from clerk_sync.cli.server import GRACEFUL_TIMEOUT
from tests.tools import INSTALL, run, tool

pytestmark = pytest.mark.ops

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "clerk-sync"
CASES = sorted(p.name.removesuffix("-values.yaml") for p in CHART.glob("ci/*-values.yaml"))
RELEASE = "clerk-sync"
NAMESPACE = "clerk-sync"
KUBE_VERSION = "1.30.0"
# the image's CMD; in a pod the server must listen on every interface
SERVE = ["serve", "--host", "0.0.0.0", "--port", "8000"]  # noqa: S104
REQUIRED = {
    "secrets": {
        "mongodbUrl": "mongodb://mongodb:27017",
        "webhookSigningSecret": "whsec_dGVzdC1zZWNyZXQ=",
    }
}


# ---- helpers ---------------------------------------------------------------------------------


def ci_values(case: str) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "ci" / f"{case}-values.yaml").read_text())
    return values


def render(values: dict[str, Any]) -> dict[str, str]:
    """`{template path: output}` of an install of the chart with `values`."""
    with helm_python.Chart.load(CHART) as chart:
        return chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def split_documents(output: str) -> list[str]:
    """The YAML documents of one template's output, trimmed, empty ones left out (as Helm does)."""
    parts = (part.strip() for part in re.split(r"(?m)^---[ \t]*$", output))
    return [part for part in parts if part and yaml.safe_load(part) is not None]


@dataclass(frozen=True)
class Rendered:
    """One rendering of the chart: parsed manifests and the files they were written to."""

    docs: list[dict[str, Any]]
    directory: Path
    notes: str

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]


def write_rendered(values: dict[str, Any], directory: Path) -> Rendered:
    """Render the chart and write each template's manifests like `helm template` prints them."""
    directory.mkdir(parents=True)
    docs: list[dict[str, Any]] = []
    notes = ""
    for template, output in sorted(render(values).items()):
        if template.endswith("NOTES.txt"):
            notes = output
            continue
        documents = split_documents(output)
        if not documents:
            continue
        target = directory / template.removeprefix("clerk-sync/templates/").replace("/", "_")
        target.write_text("".join(f"---\n# Source: {template}\n{d}\n" for d in documents))
        docs.extend(yaml.safe_load(d) for d in documents)
    return Rendered(docs=docs, directory=directory, notes=notes)


def pod_specs(rendered: Rendered) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod spec the chart creates: the server, the check Job and the test pod."""
    for doc in rendered.docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in {"Deployment", "Job"}:
            yield name, doc["spec"]["template"]["spec"]
        elif doc["kind"] == "CronJob":
            yield name, doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif doc["kind"] == "Pod":
            yield name, doc["spec"]


def server(rendered: Rendered) -> dict[str, Any]:
    """The server container of the Deployment."""
    containers = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["clerk-sync"]
    container: dict[str, Any] = containers[0]
    return container


def render_docs(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifests of a rendering, NOTES.txt left out."""
    return [
        yaml.safe_load(document)
        for template, output in render(values).items()
        if not template.endswith("NOTES.txt")
        for document in split_documents(output)
    ]


def render_error(values: dict[str, Any]) -> str:
    """The message rendering fails with."""
    with pytest.raises(helm_python.HelmError) as failure:
        render(values)
    return str(failure.value)


# ---- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    """The chart rendered with each ci/*-values.yaml, under one directory per values file."""
    root = tmp_path_factory.mktemp("rendered")
    return {case: write_rendered(ci_values(case), root / case) for case in CASES}


@pytest.fixture(scope="module")
def rendered_root(rendered: dict[str, Rendered]) -> Path:
    return next(iter(rendered.values())).directory.parent


def test_ci_values_cover_defaults_full_existing_secret_and_ingress_tls() -> None:
    """The four value sets the checks rely on are present."""
    assert {"defaults", "full", "existing-secret", "ingress-tls"} <= set(CASES)


# ---- render, lint and validate ---------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_chart_lints_strictly_with_each_ci_values_file(case: str) -> None:
    """`helm lint --strict --kube-version v1.30.0` reports nothing above info."""
    report = helm_python.lint(CHART, ci_values(case), strict=True, kube_version=f"v{KUBE_VERSION}")
    findings = [m for m in report["messages"] if m["severity"] > 1]
    assert not findings, findings
    assert not report["errors"], report["errors"]


def test_rendered_manifests_pass_kubernetes_schemas(
    rendered: dict[str, Rendered], rendered_root: Path
) -> None:
    """Every rendered manifest is valid, with no unknown field, for Kubernetes 1.30."""
    files = sorted(rendered_root.glob("*/*.yaml"))
    assert len(files) > 4 * len(rendered)
    validator = tool("kubernetes-validate")
    result = run(validator, "-k", KUBE_VERSION, "--strict", "--quiet", "--no-warn", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_validate_rejects_an_unknown_field(tmp_path: Path) -> None:
    """The schema check above is strict: a misspelt field fails it."""
    bad = tmp_path / "service.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  portz: []\n")
    validator = tool("kubernetes-validate")
    result = run(validator, "-k", KUBE_VERSION, "--strict", "--quiet", "--no-warn", bad)
    assert result.returncode != 0
    assert "portz" in result.stdout + result.stderr


def validate_crds(docs: list[dict[str, Any]], directory: Path) -> subprocess.CompletedProcess[str]:
    """Run tests/ops/validate_crds.mjs over `docs`, converted to JSON files."""
    modules = REPO_ROOT / ".tools" / "node_modules" / "@kubernetes-models" / "prometheus-operator"
    if not modules.is_dir():
        pytest.fail(f"@kubernetes-models/prometheus-operator is not installed: {INSTALL}")
    files = []
    for index, doc in enumerate(docs):
        path = directory / f"{index}-{doc['kind']}.json"
        path.write_text(json.dumps(doc))
        files.append(path)
    return run(tool("node"), REPO_ROOT / "tests" / "ops" / "validate_crds.mjs", *files)


def test_service_monitor_and_prometheus_rule_pass_their_crd_schemas(
    rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    """The prometheus-operator resources match the CRD schemas of kubernetes-models."""
    full = rendered["full"]
    docs = [full.one("ServiceMonitor"), full.one("PrometheusRule")]
    result = validate_crds(docs, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": valid") == 2, result.stdout


def test_crd_validator_rejects_a_malformed_service_monitor(
    rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    """The CRD check is live: a scrape interval given as a number fails it."""
    broken = json.loads(json.dumps(rendered["full"].one("ServiceMonitor")))
    broken["spec"]["endpoints"][0]["interval"] = 30
    result = validate_crds([broken], tmp_path)
    assert result.returncode == 1
    assert "interval" in result.stdout


def test_yamllint_is_clean_on_chart_files_and_rendered_output(rendered_root: Path) -> None:
    """yamllint (repository .yamllint.yaml) passes on the values, Chart.yaml and every rendering.

    Rendered output is checked without the line-length rule: it carries generated data
    (base64 secrets, image digests, the embedded dashboard JSON) that has no sensible wrap.
    """
    yamllint = tool("yamllint")
    config = REPO_ROOT / ".yamllint.yaml"
    sources = [
        CHART / "Chart.yaml",
        CHART / "values.yaml",
        CHART / "values-dev.yaml",
        *sorted(CHART.glob("ci/*.yaml")),
    ]
    result = run(yamllint, "--strict", "-c", config, *sources)
    assert result.returncode == 0, result.stdout + result.stderr
    rendered_config = f"{{extends: {config}, rules: {{line-length: disable}}}}"
    result = run(yamllint, "--strict", "-d", rendered_config, rendered_root)
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_passes_on_rendered_manifests(rendered_root: Path) -> None:
    """checkov finds no failed check in any rendering (skips are justified in .checkov.yaml)."""
    checkov = REPO_ROOT / ".tools" / "checkov-venv" / "bin" / "checkov"
    if not checkov.is_file():
        pytest.fail(f"checkov is not installed in .tools/checkov-venv: {INSTALL}", pytrace=False)
    result = run(
        checkov,
        *("-d", rendered_root, "--framework", "kubernetes", "--skip-download"),
        *("--config-file", REPO_ROOT / ".checkov.yaml", "--output", "json"),
    )
    assert result.stdout.lstrip().startswith(("{", "[")), result.stdout + result.stderr
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']})"
        for c in report["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    assert report["summary"]["passed"] > 0
    assert report["summary"]["parsing_errors"] == 0


def test_every_checkov_skip_is_justified() -> None:
    """Each skip in .checkov.yaml follows a comment; each skip annotation gives a reason."""
    lines = (REPO_ROOT / ".checkov.yaml").read_text().splitlines()
    skips = [i for i, line in enumerate(lines) if re.match(r"\s*-\s*CKV", line)]
    assert skips
    for index in skips:
        assert lines[index - 1].strip().startswith("#"), f"no reason above {lines[index]!r}"
    for template in (CHART / "templates").rglob("*.yaml"):
        for skip in re.findall(r"checkov\.io/skip\d+:\s*(.*)", template.read_text()):
            check, _, reason = skip.partition("=")
            assert check.startswith("CKV"), (template, skip)
            assert len(reason.strip()) > 10, (template, skip)


# ---- the server pods --------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_probes_use_livez_and_readyz_on_the_http_port(
    rendered: dict[str, Rendered], case: str
) -> None:
    """Liveness and startup probe /livez, readiness probes /readyz, all on port `http` (8000)."""
    container = server(rendered[case])
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    probes = {
        kind: (container[kind]["httpGet"]["path"], container[kind]["httpGet"]["port"])
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes == {
        "startupProbe": ("/livez", "http"),
        "livenessProbe": ("/livez", "http"),
        "readinessProbe": ("/readyz", "http"),
    }
    service = rendered[case].one("Service")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    ]


@pytest.mark.parametrize("case", CASES)
def test_every_pod_runs_as_uid_10001_with_a_read_only_root(
    rendered: dict[str, Rendered], case: str
) -> None:
    """Server, check Job and test pod: non-root 10001, no privilege escalation, no capabilities,
    RuntimeDefault seccomp, read-only root with an emptyDir at /tmp, no API token."""
    specs = dict(pod_specs(rendered[case]))
    expected = {"Deployment", "Job", "Pod"} | ({"CronJob"} if case == "full" else set())
    assert {name.split("/")[0] for name in specs} == expected
    for name, spec in specs.items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] == 10001, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True, name
            assert security["runAsUser"] == 10001, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}, name
    for name, spec in specs.items():
        if name.startswith("Pod/"):
            continue  # the test pod only makes one request and writes nothing
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes["tmp"], name
        mounts = spec["containers"][0]["volumeMounts"]
        assert {"name": "tmp", "mountPath": "/tmp"} in mounts, name


@pytest.mark.parametrize("case", CASES)
def test_every_container_has_resource_requests_and_limits(
    rendered: dict[str, Rendered], case: str
) -> None:
    """Each container requests and is limited in CPU and memory."""
    for name, spec in pod_specs(rendered[case]):
        for container in spec["containers"]:
            resources = container["resources"]
            assert set(resources["requests"]) == {"cpu", "memory"}, name
            assert set(resources["limits"]) == {"cpu", "memory"}, name


def test_server_runs_the_image_entrypoint_with_serve_and_the_workers_value(
    rendered: dict[str, Rendered],
) -> None:
    """No command override: args are `serve --host 0.0.0.0 --port 8000 --workers N`."""
    for case, workers in (("defaults", "1"), ("full", "2")):
        container = server(rendered[case])
        assert "command" not in container
        assert container["args"] == [*SERVE, "--workers", workers]


def test_topology_spread_constraints_select_the_server_pods(
    rendered: dict[str, Rendered],
) -> None:
    """Pods spread over zones and nodes, counting only this release's server pods."""
    deployment = rendered["defaults"].one("Deployment")
    constraints = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in constraints] == [
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    ]
    selector = deployment["spec"]["selector"]["matchLabels"]
    for constraint in constraints:
        assert constraint["labelSelector"] == {"matchLabels": selector}


# ---- settings: Secret, existingSecret, ConfigMap ------------------------------------------------


def decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_inline_secret_holds_the_required_settings_and_every_pod_reads_it(
    rendered: dict[str, Rendered],
) -> None:
    """With secrets.* set, the chart's Secret holds them; the server reads it and the ConfigMap,
    and the pre-install check reads a hook copy (the release's Secret does not exist yet)."""
    values = ci_values("defaults")["secrets"]
    defaults = rendered["defaults"]
    secret = defaults.one("Secret", RELEASE)
    assert decoded(secret) == {
        "MONGODB_URL": values["mongodbUrl"],
        "CLERK_WEBHOOK_SIGNING_SECRET": values["webhookSigningSecret"],
    }
    assert server(defaults)["envFrom"] == [
        {"configMapRef": {"name": RELEASE}},
        {"secretRef": {"name": RELEASE}},
    ]
    hook_secret = defaults.one("Secret", f"{RELEASE}-check")
    assert decoded(hook_secret) == decoded(secret)
    assert hook_secret["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    job = defaults.one("Job")["spec"]["template"]["spec"]["containers"][0]
    assert job["envFrom"] == [{"secretRef": {"name": f"{RELEASE}-check"}}]


def test_optional_secrets_and_extra_secret_keys_are_added(rendered: dict[str, Rendered]) -> None:
    """CLERK_JWT_KEY and secrets.extra land in the Secret; rotation secrets stay one value."""
    data = decoded(rendered["full"].one("Secret", RELEASE))
    assert data["CLERK_JWT_KEY"].startswith("-----BEGIN PUBLIC KEY-----")
    assert data["CLERK_SECRET_KEY"] == "sk_test_example"
    assert data["PLUGIN_API_TOKEN"] == "plugin-token-example"
    assert data["CLERK_WEBHOOK_SIGNING_SECRET"].split() == [
        "whsec_bmV3LXNpZ25pbmctc2VjcmV0LWZvci1jaQ==",
        "whsec_b2xkLXNpZ25pbmctc2VjcmV0LWZvci1jaQ==",
    ]


def test_existing_secret_is_referenced_and_the_chart_creates_no_secret(
    rendered: dict[str, Rendered],
) -> None:
    """With existingSecret, no Secret is rendered and every pod that needs settings reads it."""
    case = rendered["existing-secret"]
    name = ci_values("existing-secret")["existingSecret"]
    assert case.all("Secret") == []
    assert {"secretRef": {"name": name}} in server(case)["envFrom"]
    job = case.one("Job")["spec"]["template"]["spec"]["containers"][0]
    assert job["envFrom"] == [{"secretRef": {"name": name}}]
    annotations = case.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/config" in annotations
    assert "checksum/secret" not in annotations


def test_configmap_carries_the_other_settings_and_leaves_empty_ones_out(
    rendered: dict[str, Rendered],
) -> None:
    """Plain settings are strings in the ConfigMap; unset optional ones are absent so the
    service's defaults apply; extraEnv is added; LOG_FORMAT is json by default."""
    assert rendered["defaults"].one("ConfigMap")["data"] == {
        "MONGODB_DB": "clerk_sync",
        "CLERK_SYNC_WEBHOOK_PATH": "/webhooks/clerk",
        "CLERK_SYNC_MAX_BODY_BYTES": "1048576",
        "CLERK_SYNC_HANDLER_TIMEOUT": "10",
        "CLERK_SYNC_SHUTDOWN_DELAY": "5",
        "CLERK_SYNC_EVENT_RETENTION_DAYS": "30",
        "LOG_LEVEL": "info",
        "LOG_FORMAT": "json",
    }
    assert rendered["full"].one("ConfigMap", RELEASE)["data"] == {
        "MONGODB_DB": "clerk",
        "CLERK_SYNC_PLUGINS": "users,sessions,organizations,audit-log",
        "CLERK_SYNC_DISABLED_PLUGINS": "sessions",
        "CLERK_SYNC_REQUIRED_PLUGINS": "users,organizations",
        "CLERK_SYNC_WEBHOOK_PATH": "/hooks/clerk",
        "CLERK_SYNC_MAX_BODY_BYTES": "2097152",
        "CLERK_SYNC_HANDLER_TIMEOUT": "7.5",
        "CLERK_SYNC_SHUTDOWN_DELAY": "10",
        "CLERK_SYNC_EVENT_RETENTION_DAYS": "90",
        "CLERK_ISSUER": "https://clerk.example.com",
        "CLERK_AUTHORIZED_PARTIES": "https://app.example.com,https://admin.example.com",
        "LOG_LEVEL": "debug",
        "LOG_FORMAT": "json",
        "CLERK_SYNC_PLUGIN_AUDIT_LOG_COLLECTION": "audit_log",
    }


def test_check_job_gets_the_same_plain_settings_as_the_configmap(
    rendered: dict[str, Rendered],
) -> None:
    """The hook runs before the ConfigMap exists, so it carries the same settings inline."""
    for case in rendered.values():
        container = case.one("Job")["spec"]["template"]["spec"]["containers"][0]
        inline = {e["name"]: e["value"] for e in container["env"]}
        assert inline == case.one("ConfigMap", RELEASE)["data"]


def test_no_multiprocess_directory_is_set_by_the_chart(rendered: dict[str, Rendered]) -> None:
    """PROMETHEUS_MULTIPROC_DIR is the service's business, not the chart's."""
    for case in rendered.values():
        assert "PROMETHEUS_MULTIPROC_DIR" not in json.dumps(case.docs)


def pod_annotations(values: dict[str, Any]) -> dict[str, str]:
    (deployment,) = [doc for doc in render_docs(values) if doc["kind"] == "Deployment"]
    annotations: dict[str, str] = deployment["spec"]["template"]["metadata"]["annotations"]
    return annotations


def test_a_config_or_secret_change_rolls_the_pods() -> None:
    """checksum/config and checksum/secret change with the settings, and only with them."""
    base = pod_annotations(REQUIRED)
    assert pod_annotations(REQUIRED) == base
    config_changed = pod_annotations({**REQUIRED, "config": {"logLevel": "debug"}})
    assert config_changed["checksum/config"] != base["checksum/config"]
    assert config_changed["checksum/secret"] == base["checksum/secret"]
    rotated = {"secrets": {**REQUIRED["secrets"], "webhookSigningSecret": "whsec_bmV3"}}
    secret_changed = pod_annotations(rotated)
    assert secret_changed["checksum/secret"] != base["checksum/secret"]
    assert secret_changed["checksum/config"] == base["checksum/config"]


# ---- ingress, scaling, disruption, network -----------------------------------------------------


def test_ingress_is_off_by_default(rendered: dict[str, Rendered]) -> None:
    assert rendered["defaults"].all("Ingress") == []


@pytest.mark.parametrize(
    ("case", "path"), [("ingress-tls", "/webhooks/clerk"), ("full", "/hooks/clerk")]
)
def test_ingress_exposes_only_the_webhook_path(
    rendered: dict[str, Rendered], case: str, path: str
) -> None:
    """Every host routes exactly one path, config.webhookPath (the server's
    CLERK_SYNC_WEBHOOK_PATH), to the Service's http port, over TLS."""
    values = ci_values(case)["ingress"]
    ingress = rendered[case].one("Ingress")
    spec = ingress["spec"]
    assert spec["ingressClassName"] == values["className"]
    assert [rule["host"] for rule in spec["rules"]] == values["hosts"]
    for rule in spec["rules"]:
        assert rule["http"]["paths"] == [
            {
                "path": path,
                "pathType": "Exact",
                "backend": {"service": {"name": RELEASE, "port": {"name": "http"}}},
            }
        ]
    assert spec["tls"] == values["tls"]
    assert ingress["metadata"]["annotations"] == values["annotations"]


def test_notes_give_the_webhook_url_for_clerk(rendered: dict[str, Rendered]) -> None:
    assert "https://clerk-sync.example.com/webhooks/clerk" in rendered["ingress-tls"].notes
    host = ci_values("full")["ingress"]["hosts"][0]
    assert f"https://{host}/hooks/clerk" in rendered["full"].notes


def test_notes_warn_while_the_session_token_issuer_or_parties_are_unset(
    rendered: dict[str, Rendered],
) -> None:
    """With config.issuer and config.authorizedParties unset NOTES names both settings; with
    one set only the other; with both set (here or in extraEnv) there is no warning."""
    notes = rendered["defaults"].notes
    assert "WARNING: session tokens" in notes
    assert "config.issuer (CLERK_ISSUER) is not set" in notes
    assert "config.authorizedParties (CLERK_AUTHORIZED_PARTIES) is not set" in notes
    assert "WARNING: session tokens" not in rendered["full"].notes
    issuer_only = {**REQUIRED, "config": {"issuer": "https://clerk.example.com"}}
    [only] = [v for k, v in render(issuer_only).items() if k.endswith("NOTES.txt")]
    assert "CLERK_ISSUER) is not set" not in only
    assert "CLERK_AUTHORIZED_PARTIES) is not set" in only
    from_env = {
        **REQUIRED,
        "extraEnv": {"CLERK_ISSUER": "https://c.example", "CLERK_AUTHORIZED_PARTIES": "https://a"},
    }
    [quiet] = [v for k, v in render(from_env).items() if k.endswith("NOTES.txt")]
    assert "WARNING: session tokens" not in quiet


def test_autoscaling_replaces_the_fixed_replica_count(rendered: dict[str, Rendered]) -> None:
    """With autoscaling on, an autoscaling/v2 HPA targets the Deployment, which sets no replicas."""
    full = rendered["full"]
    hpa = full.one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": RELEASE,
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu", "memory"]
    assert "replicas" not in full.one("Deployment")["spec"]
    assert rendered["defaults"].one("Deployment")["spec"]["replicas"] == 2
    assert rendered["defaults"].all("HorizontalPodAutoscaler") == []


def test_pod_disruption_budget_only_when_more_than_one_pod_runs(
    rendered: dict[str, Rendered],
) -> None:
    """A PDB over a single pod would block node drains, so one replica gets none."""
    pdb = rendered["defaults"].one("PodDisruptionBudget")
    assert pdb["spec"]["selector"] == rendered["defaults"].one("Deployment")["spec"]["selector"]
    single = render_docs({**REQUIRED, "replicaCount": 1})
    assert "PodDisruptionBudget" not in {doc["kind"] for doc in single}


def test_network_policy_admits_port_8000_and_leaves_egress_open_by_default(
    rendered: dict[str, Rendered],
) -> None:
    """Ingress only to TCP 8000; egress is restricted only when asked, keeping DNS. Narrowed
    either way, the release's own test pod still reaches the server."""
    policy = rendered["defaults"].one("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["ingress"] == [{"ports": [{"port": 8000, "protocol": "TCP"}]}]
    assert "egress" not in policy
    full = rendered["full"]
    restricted = full.one("NetworkPolicy")["spec"]
    values = ci_values("full")["networkPolicy"]
    assert restricted["policyTypes"] == ["Ingress", "Egress"]
    (admitted,) = restricted["ingress"]
    own_pods = {"podSelector": {"matchLabels": restricted["podSelector"]["matchLabels"]}}
    assert admitted["from"] == [*values["ingressFrom"], own_pods]
    dns, to_server, *rules = restricted["egress"]
    assert {"port": 53, "protocol": "UDP"} in dns["ports"]
    server_selector = full.one("Deployment")["spec"]["selector"]
    assert to_server["to"] == [{"podSelector": server_selector}]
    assert to_server["ports"] == [{"port": 8000, "protocol": "TCP"}]
    assert rules == values["egress"]["rules"]


# ---- hooks: the pre-install check and helm test --------------------------------------------------


def test_pre_install_and_upgrade_hook_runs_clerk_sync_check(rendered: dict[str, Rendered]) -> None:
    """A hook Job runs `clerk-sync check` with the server's image before install and upgrade."""
    for case in rendered.values():
        job = case.one("Job")
        annotations = job["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
        spec = job["spec"]["template"]["spec"]
        assert spec["restartPolicy"] == "Never"
        (container,) = spec["containers"]
        assert container["args"] == ["check"]
        assert "command" not in container
        assert container["image"] == server(case)["image"]


def test_helm_test_pod_gets_readyz_through_the_service_with_the_app_image(
    rendered: dict[str, Rendered],
) -> None:
    """The `helm test` pod runs python's urllib from the app image against the Service's /readyz."""
    case = rendered["defaults"]
    pod = case.one("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == server(case)["image"] == "clerk-sync:0.1.0"
    assert container["command"][:2] == ["python", "-c"]
    assert "urllib.request.urlopen" in container["command"][2]
    assert container["command"][3] == f"http://{RELEASE}.{NAMESPACE}.svc:8000/readyz"


def test_image_digest_pins_the_image(rendered: dict[str, Rendered]) -> None:
    values = ci_values("full")["image"]
    assert server(rendered["full"])["image"] == f"{values['repository']}@{values['digest']}"


# ---- monitoring: ServiceMonitor, PrometheusRule, dashboard ---------------------------------------


def test_monitoring_resources_are_off_by_default_and_switched_by_values_flags(
    rendered: dict[str, Rendered],
) -> None:
    """Off by default; on with the flags alone: no `.Capabilities` check, which offline (and in
    `helm template`) never sees the monitoring.coreos.com API."""
    defaults = rendered["defaults"]
    assert defaults.all("ServiceMonitor") == defaults.all("PrometheusRule") == []
    assert not [
        c for c in defaults.all("ConfigMap") if "grafana_dashboard" in c["metadata"]["labels"]
    ]
    for template in (CHART / "templates").rglob("*"):
        if template.is_file():
            assert ".Capabilities" not in template.read_text(), template
    full = rendered["full"]
    assert len(full.all("ServiceMonitor")) == len(full.all("PrometheusRule")) == 1


def test_service_monitor_and_prometheus_rule_carry_the_release_label(
    rendered: dict[str, Rendered],
) -> None:
    """kube-prometheus-stack selects on `release`; the label comes from values."""
    values = ci_values("full")["metrics"]
    full = rendered["full"]
    for kind, key in (("ServiceMonitor", "serviceMonitor"), ("PrometheusRule", "prometheusRule")):
        labels = full.one(kind)["metadata"]["labels"]
        assert labels["release"] == values[key]["release"] == "prometheus", kind
        assert labels["team"] == "platform", kind
    switched = {"serviceMonitor": {"enabled": True, "release": "kps"}}
    (monitor,) = [
        d for d in render_docs({**REQUIRED, "metrics": switched}) if d["kind"] == "ServiceMonitor"
    ]
    assert monitor["metadata"]["labels"]["release"] == "kps"


def test_service_monitor_scrapes_metrics_as_job_clerk_sync(rendered: dict[str, Rendered]) -> None:
    """The alert rules and the dashboard select job="clerk-sync": the ServiceMonitor takes the job
    from a Service label whose value is `clerk-sync`, whatever the release is called."""
    full = rendered["full"]
    monitor = full.one("ServiceMonitor")["spec"]
    assert monitor["endpoints"] == [
        {
            "port": "http",
            "path": "/metrics",
            "scheme": "http",
            "interval": "15s",
            "scrapeTimeout": "5s",
        }
    ]
    service = full.one("Service")
    assert monitor["selector"]["matchLabels"] == service["spec"]["selector"]
    assert service["metadata"]["labels"][monitor["jobLabel"]] == "clerk-sync"
    assert monitor["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    alerts = (CHART / "files" / "alerts.yaml").read_text()
    assert 'job="clerk-sync"' in alerts


def test_prometheus_rule_holds_files_alerts_yaml(rendered: dict[str, Rendered]) -> None:
    """spec is the plain rule file, unchanged after YAML parsing."""
    rule = rendered["full"].one("PrometheusRule")
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())


def test_prometheus_rule_passes_promtool_check_rules(
    rendered: dict[str, Rendered], promtool: str, tmp_path: Path
) -> None:
    """`promtool check rules --lint-fatal` accepts the rules as rendered into the PrometheusRule."""
    rules = tmp_path / "rendered-rules.yaml"
    rules.write_text(yaml.safe_dump(rendered["full"].one("PrometheusRule")["spec"]))
    result = run(promtool, "check", "rules", "--lint-fatal", rules)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_dashboard_configmap_is_files_dashboard_json(rendered: dict[str, Rendered]) -> None:
    """The dashboard ConfigMap is labelled for the Grafana sidecar, lives where values say, and
    its JSON equals charts/clerk-sync/files/dashboard.json."""
    values = ci_values("full")["metrics"]["dashboard"]
    dashboards = [
        c
        for c in rendered["full"].all("ConfigMap")
        if c["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    assert len(dashboards) == 1
    (dashboard,) = dashboards
    assert dashboard["metadata"]["namespace"] == values["namespace"]
    assert dashboard["metadata"]["annotations"] == values["annotations"]
    assert list(dashboard["data"]) == ["clerk-sync.json"]
    committed = json.loads((CHART / "files" / "dashboard.json").read_text())
    assert json.loads(dashboard["data"]["clerk-sync.json"]) == committed


# ---- values.schema.json -----------------------------------------------------------------------


def test_schema_requires_mongodb_url_unless_an_existing_secret_is_named() -> None:
    """Without secrets.mongodbUrl or existingSecret, rendering fails naming both ways out."""
    message = render_error({"secrets": {"webhookSigningSecret": "whsec_dGVzdA=="}})
    assert "/secrets/mongodbUrl" in message
    assert "/existingSecret" in message
    assert "webhookSigningSecret" not in message


@pytest.mark.parametrize(
    "url", ["   ", "mongodb://", "mongodb:// ", "mongodb://mongodb:27017\n", " mongodb://mongodb"]
)
def test_schema_refuses_a_blank_or_blank_padded_mongodb_url(url: str) -> None:
    """A MONGODB_URL of spaces, with nothing after the scheme, or with a blank in it (a value
    read from a file keeps its newline) stops rendering at /secrets/mongodbUrl: a pod given one
    would refuse to start, or reach no server."""
    message = render_error({"secrets": {**REQUIRED["secrets"], "mongodbUrl": url}})
    assert "values don't meet the specifications of the schema" in message
    assert "/secrets/mongodbUrl" in message


def test_schema_requires_the_webhook_signing_secret_unless_an_existing_secret_is_named() -> None:
    message = render_error({"secrets": {"mongodbUrl": "mongodb://mongodb:27017"}})
    assert "/secrets/webhookSigningSecret" in message
    assert "/existingSecret" in message


def test_schema_accepts_an_existing_secret_alone() -> None:
    assert render({"existingSecret": "clerk-sync-credentials"})


@pytest.mark.parametrize(
    ("values", "path"),
    [
        ({"replicaCount": "two"}, "/replicaCount"),
        ({"workers": 0}, "/workers"),
        ({"ingress": {"enabled": "yes"}}, "/ingress/enabled"),
        ({"config": {"logFormat": "text"}}, "/config/logFormat"),
        ({"config": {"maxBodyBytes": "1MB"}}, "/config/maxBodyBytes"),
        ({"metrics": {"serviceMonitor": {"enabled": True, "release": 1}}}, "/metrics"),
        ({"secrets": {**REQUIRED["secrets"], "webhookSigningSecret": "sk_live_1"}}, "/secrets"),
        ({"replicaCuont": 3}, "replicaCuont"),
    ],
)
def test_schema_rejects_wrong_types_and_unknown_keys(values: dict[str, Any], path: str) -> None:
    """A wrong type, a bad enum value, a non-whsec_ secret or a misspelt key stops rendering."""
    message = render_error({**REQUIRED, **values})
    assert "values don't meet the specifications of the schema" in message
    assert path in message


@pytest.mark.parametrize(
    ("values", "grace", "delay"),
    [
        ({"terminationGracePeriodSeconds": 20}, "20", "5"),
        ({"terminationGracePeriodSeconds": 8}, "8", "5"),
        ({"config": {"shutdownDelay": 20}}, "30", "20"),
        ({"terminationGracePeriodSeconds": 25, "config": {"shutdownDelay": 12.5}}, "25", "12.5"),
    ],
)
def test_a_grace_period_not_above_delay_plus_graceful_timeout_fails_naming_both(
    values: dict[str, Any], grace: str, delay: str
) -> None:
    """The kubelet would SIGKILL a pod still draining or finishing requests: rendering stops
    with a message naming the grace period, the shut-down delay and the graceful timeout."""
    message = render_error(merged(REQUIRED, values))
    assert f"terminationGracePeriodSeconds ({grace}) must exceed" in message
    assert f"config.shutdownDelay ({delay}, CLERK_SYNC_SHUTDOWN_DELAY)" in message
    # the chart's figure is the server's own graceful timeout
    assert f"graceful timeout ({GRACEFUL_TIMEOUT:g})" in message


def test_a_grace_period_above_delay_plus_graceful_timeout_renders(
    rendered: dict[str, Rendered],
) -> None:
    def grace(docs: list[dict[str, Any]]) -> int:
        (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
        value: int = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        return value

    assert grace(rendered["defaults"].docs) == 30  # 5 + 15 < 30
    assert grace(rendered["full"].docs) == 40  # 10 + 15 < 40
    assert grace(render_docs({**REQUIRED, "terminationGracePeriodSeconds": 21})) == 21
    no_delay = {**REQUIRED, "config": {"shutdownDelay": 0}, "terminationGracePeriodSeconds": 16}
    assert grace(render_docs(no_delay)) == 16


def test_ingress_needs_a_host_when_enabled() -> None:
    message = render_error({**REQUIRED, "ingress": {"enabled": True}})
    assert "/ingress" in message


# ---- docs ---------------------------------------------------------------------------------------

DEPLOY_DOC = REPO_ROOT / "docs" / "deploy.md"


def code_blocks(language: str) -> list[str]:
    """The fenced code blocks of docs/deploy.md in `language`, dedented."""
    text = DEPLOY_DOC.read_text()
    blocks = re.findall(rf"(?ms)^( *)```{language}\n(.*?)^\1```", text)
    return [re.sub(rf"(?m)^{indent}", "", body) for indent, body in blocks]


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def test_every_top_level_value_is_documented() -> None:
    """docs/deploy.md's values reference names every top-level key of values.yaml."""
    docs = DEPLOY_DOC.read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = [key for key in values if f"`{key}" not in docs]
    assert not missing, missing


def test_values_shown_in_the_deploy_guide_render() -> None:
    """Each YAML example of docs/deploy.md is valid chart values (over the required secrets)."""
    blocks = code_blocks("yaml")
    assert len(blocks) >= 5
    for block in blocks:
        example = yaml.safe_load(block)
        base = {} if "existingSecret" in example else REQUIRED
        assert render_docs(merged(base, example)), block


def test_schema_error_shown_in_the_deploy_guide_is_the_real_one() -> None:
    (shown,) = [block for block in code_blocks("text") if "anyOf" in block]
    message = render_error({"secrets": {"webhookSigningSecret": "whsec_dGVzdA=="}})
    assert shown.strip() in message


def test_grace_period_error_shown_in_the_deploy_guide_is_the_real_one() -> None:
    (shown,) = [b for b in code_blocks("text") if "terminationGracePeriodSeconds (" in b]
    assert shown.strip() in render_error({**REQUIRED, "terminationGracePeriodSeconds": 20})


def test_reconcile_cronjob_runs_reconcile_with_the_release_secret(
    rendered: dict[str, Rendered],
) -> None:
    """The optional CronJob runs `clerk-sync reconcile`, never overlapping, with the secret key."""
    cronjob = rendered["full"].one("CronJob")
    spec = cronjob["spec"]
    container = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert spec["schedule"] == "*/30 * * * *"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert container["args"][:1] == ["reconcile"]
    assert "http://pushgateway.monitoring.svc:9091" in container["args"]
    secret_env = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert secret_env["CLERK_SECRET_KEY"] == {"name": RELEASE, "key": "CLERK_SECRET_KEY"}
    assert container["resources"]["requests"]
    assert not any(d["kind"] == "CronJob" for d in rendered["defaults"].docs)


def test_reconcile_without_a_secret_key_fails_rendering_clearly() -> None:
    message = render_error({**REQUIRED, "reconcile": {"enabled": True}})
    assert "CLERK_SECRET_KEY" in message
