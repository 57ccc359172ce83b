"""Build the clerk-sync Grafana dashboard for SREs.

`python ops/dashboard.py` writes charts/clerk-sync/files/dashboard.json; `python ops/dashboard.py
--check` exits 1 when that file differs from what this module builds. Panels query the metrics of
DESIGN.md "Observability"; the data source and the scrape job are dashboard variables.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common, dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models import prometheus as prometheus_models

OUTPUT = Path(__file__).resolve().parents[1] / "charts" / "clerk-sync" / "files" / "dashboard.json"
UID = "clerk-sync"
DEFAULT_JOB = "clerk-sync"
RUNBOOKS_URL = "https://github.com/clerk-sync/clerk-sync/blob/main/docs/runbooks.md"

JOB_MATCHER = 'job="$job"'
RATE_WINDOW = "$__rate_interval"

# A target is a PromQL expression (with Grafana variables) and its legend.
Target = tuple[str, str]


def _datasource() -> models.DataSourceRef:
    return models.DataSourceRef(type_val="prometheus", uid="${datasource}")


# --- PromQL -------------------------------------------------------------------------------------


def _selector(metric: str, *matchers: str) -> str:
    return f"{metric}{{{', '.join((JOB_MATCHER, *matchers))}}}"


def _rate(metric: str, *matchers: str) -> str:
    return f"rate({_selector(metric, *matchers)}[{RATE_WINDOW}])"


def _ratio(numerator: str, denominator: str) -> str:
    """Divide two sums; a zero denominator (no traffic) gives no value instead of NaN."""
    return f"sum({numerator}) / (sum({denominator}) > 0)"


def _quantile(quantile: float, histogram: str, *by: str) -> str:
    labels = ", ".join((*by, "le"))
    return f"histogram_quantile({quantile}, sum by ({labels}) ({_rate(f'{histogram}_bucket')}))"


def _outcome_ratio(outcome_matcher: str) -> str:
    """Share of all webhook requests whose outcome matches."""
    everything = _rate("clerk_sync_webhooks_total")
    return _ratio(_rate("clerk_sync_webhooks_total", outcome_matcher), everything)


# --- panels -------------------------------------------------------------------------------------


def _query(ref_id: str, target: Target, *, instant: bool = False) -> prometheus.Dataquery:
    expr, legend = target
    query = prometheus.Dataquery().ref_id(ref_id).expr(expr).legend_format(legend)
    query = query.datasource(_datasource())
    return query.instant() if instant else query.range()


def _timeseries(
    title: str, description: str, unit: str, targets: Sequence[Target]
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(_datasource())
        .unit(unit)
        .min(0)
        .height(8)
        .span(12)
        .legend(
            common.VizLegendOptions()
            .show_legend(True)
            .display_mode(common_models.LegendDisplayMode.LIST)
            .placement(common_models.LegendPlacement.BOTTOM)
        )
        .tooltip(
            common.VizTooltipOptions()
            .mode(common_models.TooltipDisplayMode.MULTI)
            .sort(common_models.SortOrder.DESCENDING)
        )
    )
    for index, target in enumerate(targets):
        panel.with_target(_query(chr(ord("A") + index), target))
    return panel


def _stat(title: str, description: str, target: Target) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(_datasource())
        .height(6)
        .span(6)
        .with_target(_query("A", target, instant=True))
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .graph_mode(common_models.BigValueGraphMode.NONE)
        .color_mode(common_models.BigValueColorMode.BACKGROUND)
        .text_mode(common_models.BigValueTextMode.VALUE_AND_NAME)
    )


def _red_below(value: float) -> dashboard.ThresholdsConfig:
    below = models.Threshold(value=None, color="red")
    steps = [below, models.Threshold(value=value, color="green")]
    return dashboard.ThresholdsConfig().mode(models.ThresholdsMode.ABSOLUTE).steps(steps)


def _value_map(
    colors: dict[str, str], texts: dict[str, str] | None = None
) -> list[models.ValueMapping]:
    """Show each value (or its replacement text) in its own color."""
    texts = texts or {}
    options = {
        value: models.ValueMappingResult(text=texts.get(value, value), color=color, index=index)
        for index, (value, color) in enumerate(colors.items())
    }
    return [models.ValueMap(options=options)]


def _instances_up() -> stat.Panel:
    description = "Scrape targets of the job that are up. 0 fires ClerkSyncAbsent after 5m."
    target = (f"sum(up{{{JOB_MATCHER}}})", "instances")
    return _stat("Instances up", description, target).thresholds(_red_below(1)).no_value("0")


def _mongodb_up() -> stat.Panel:
    description = (
        "clerk_sync_mongodb_up per instance. A down instance answers webhooks with 503 and is not"
        " ready (ClerkSyncMongoDBDown)."
    )
    target = (f"min by (instance) ({_selector('clerk_sync_mongodb_up')})", "{{instance}}")
    mappings = _value_map({"0": "red", "1": "green"}, texts={"0": "down", "1": "up"})
    return _stat("MongoDB", description, target).thresholds(_red_below(1)).mappings(mappings)


def _plugin_status() -> table.Panel:
    description = (
        "clerk_sync_plugin_info: each plugin version and status, with the number of instances"
        " reporting it. `failed` plugins are skipped; `clerk-sync plugins` shows the error."
    )
    expr = f"count by (plugin, version, status) ({_selector('clerk_sync_plugin_info')})"
    query = _query("A", (expr, ""), instant=True).format(prometheus_models.PromQueryFormat.TABLE)
    organize = models.DataTransformerConfig(
        id_val="organize",
        options={
            "excludeByName": {"Time": True},
            "indexByName": {"plugin": 0, "version": 1, "status": 2, "Value": 3},
            "renameByName": {"Value": "instances"},
        },
    )
    status = [
        models.DynamicConfigValue(
            id_val="mappings",
            value=_value_map({"loaded": "green", "failed": "red", "disabled": "text"}),
        ),
        models.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
    ]
    return (
        table.Panel()
        .title("Plugins")
        .description(description)
        .datasource(_datasource())
        .height(6)
        .span(12)
        .with_target(query)
        .with_transformation(organize)
        .override_by_name("status", status)
    )


def _deliveries() -> timeseries.Panel:
    description = "Webhook requests per second by Clerk event type and outcome."
    expr = f"sum by (event_type, outcome) ({_rate('clerk_sync_webhooks_total')})"
    return _timeseries(
        "Deliveries per second", description, "reqps", [(expr, "{{event_type}} {{outcome}}")]
    )


def _error_ratio() -> timeseries.Panel:
    description = (
        "Share of webhook requests answered 5xx (outcome failed or unavailable; alert"
        " ClerkSyncHigh5xxRatio above 5%) and 401 (invalid_signature; alert"
        " ClerkSyncInvalidSignatureSpike above 10%). Empty while there is no traffic."
    )
    targets = [
        (_outcome_ratio('outcome=~"failed|unavailable"'), "5xx (failed, unavailable)"),
        (_outcome_ratio('outcome="invalid_signature"'), "401 (invalid_signature)"),
    ]
    return _timeseries("Error ratio", description, "percentunit", targets)


def _webhook_latency() -> timeseries.Panel:
    description = (
        "Time to answer a webhook, all event types. Svix treats answers slower than about 15 s as"
        " failed; ClerkSyncHighP99Latency fires when p99 stays above 5 s."
    )
    targets = [
        (_quantile(q, "clerk_sync_webhook_duration_seconds"), f"p{round(q * 100)}")
        for q in (0.5, 0.95, 0.99)
    ]
    return _timeseries("Webhook latency", description, "s", targets)


def _delivery_lag() -> timeseries.Panel:
    description = (
        "Arrival time minus the event's envelope timestamp. Grows when deliveries arrive on Svix"
        " retries; ClerkSyncDeliveryLag fires when p95 stays above 10 minutes."
    )
    targets = [
        (_quantile(q, "clerk_sync_delivery_lag_seconds"), f"p{round(q * 100)}") for q in (0.5, 0.95)
    ]
    return _timeseries("Delivery lag", description, "s", targets)


def _handler_failures() -> timeseries.Panel:
    description = (
        "Failed or timed-out handler runs per second by plugin. Deliveries with a failed handler"
        " end as `failed` (500) and Svix retries them (ClerkSyncHandlerFailureRatio)."
    )
    expr = f"sum by (plugin) ({_rate('clerk_sync_handler_failures_total')})"
    return _timeseries("Handler failures per second", description, "ops", [(expr, "{{plugin}}")])


def _handler_duration() -> timeseries.Panel:
    description = (
        "95th percentile of handler run time by plugin (limit: CLERK_SYNC_HANDLER_TIMEOUT)."
    )
    expr = _quantile(0.95, "clerk_sync_handler_duration_seconds", "plugin")
    return _timeseries("Handler duration p95", description, "s", [(expr, "{{plugin}}")])


def _layout() -> list[tuple[str, list[Builder[models.Panel]]]]:
    return [
        ("Health", [_instances_up(), _mongodb_up(), _plugin_status()]),
        ("Deliveries", [_deliveries(), _error_ratio(), _webhook_latency(), _delivery_lag()]),
        ("Handlers", [_handler_failures(), _handler_duration()]),
    ]


# --- dashboard ----------------------------------------------------------------------------------


def _variables() -> list[Builder[models.VariableModel]]:
    datasource = dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
    job = (
        dashboard.QueryVariable("job")
        .label("Job")
        .description("Prometheus scrape job of the clerk-sync instances")
        .datasource(_datasource())
        .query("label_values(clerk_sync_mongodb_up, job)")
        .current(models.VariableOption(text=DEFAULT_JOB, value=DEFAULT_JOB))
        .refresh(models.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
    )
    return [datasource, job]


def build() -> models.Dashboard:
    """The dashboard model, with panel ids numbered in layout order."""
    builder = (
        dashboard.Dashboard("clerk-sync")
        .uid(UID)
        .description("Clerk webhook deliveries, handler plugins and MongoDB health of clerk-sync.")
        .tags(["clerk-sync", "webhooks"])
        .time("now-6h", "now")
        .refresh("1m")
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .variables(_variables())
        .link(
            dashboard.DashboardLink("Runbooks")
            .type(models.DashboardLinkType.LINK)
            .url(RUNBOOKS_URL)
            .target_blank(True)
        )
    )
    for title, panels in _layout():
        builder.with_row(dashboard.Row(title))
        for panel in panels:
            builder.with_panel(panel)
    model = builder.build()
    for panel_id, built in enumerate(model.panels or [], start=1):
        built.id_val = panel_id
    return model


def render() -> str:
    """The dashboard as the JSON text committed to the chart (stable key order, final newline)."""
    return json.dumps(build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def iter_panels(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of a dashboard JSON document that is not a row, rows' nested panels included."""
    for panel in document.get("panels", []):
        if panel.get("type") == "row":
            yield from iter_panels(panel)
        else:
            yield panel


def panel_queries(document: dict[str, Any] | None = None) -> list[str]:
    """Every PromQL expression of the dashboard's panels, Grafana variables left in place."""
    if document is None:
        document = json.loads(render())
    return [target["expr"] for panel in iter_panels(document) for target in panel["targets"]]


def expand_variables(expr: str, *, job: str = DEFAULT_JOB, rate_interval: str = "5m") -> str:
    """Replace the dashboard's Grafana variables so that the expression is plain PromQL."""
    return expr.replace(RATE_WINDOW, rate_interval).replace("$job", job)


# --- command line -------------------------------------------------------------------------------


def _check(path: Path, expected: str) -> int:
    actual = path.read_text(encoding="utf-8") if path.exists() else None
    if actual == expected:
        return 0
    print(f"{path} is out of date: run `python ops/dashboard.py`", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the clerk-sync Grafana dashboard JSON.")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the file differs instead of writing it"
    )
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"default: {OUTPUT}")
    args = parser.parse_args(argv)
    output: Path = args.output
    expected = render()
    if args.check:
        return _check(output, expected)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(expected, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
