"""The shop's Grafana dashboards, as code (grafana-foundation-sdk).

Writes one JSON model per dashboard into the chart (helm/shop/dashboards/<uid>.json), which
ships them as ConfigMaps for Grafana's dashboard sidecar (monitoring.dashboards.enabled). The
committed files are this program's output: `--check` regenerates them in memory and fails when
any differs from the committed bytes (or when one is missing or left over), so a dashboard is
changed here and never by hand.

Every dashboard has a Prometheus data source variable (`datasource`), a Tempo one (`tempo`) and
a `namespace` filter; latency panels ask for exemplars and carry data links that open the
matching traces in Tempo (TraceQL on the span attributes the services record), and each
dashboard ends with a Tempo search panel of the traces it is about. Only the metric names of
docs/operations.md ("Metrics") are used; the journey test `metrics_of_dashboards_and_alerts`
checks each against what the binaries really serve.

Usage: python dashboards.py [--check] [OUT_DIR]   (OUT_DIR defaults to helm/shop/dashboards)
"""

import json
import os
import sys
import urllib.parse

from grafana_foundation_sdk.builders import common, dashboard, prometheus, stat, table, tempo, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models import tempo as tempo_models

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEFAULT_OUT = os.path.join(ROOT, "helm", "shop", "dashboards")

PROM = dashboard_models.DataSourceRef(type_val="prometheus", uid="${datasource}")
TEMPO = dashboard_models.DataSourceRef(type_val="tempo", uid="${tempo}")
# Every selector carries the namespace filter; "All" is `.*`, which also matches series without
# the label (a Prometheus whose scrape configuration adds none).
NS = 'namespace=~"$namespace"'
RATE = "$__rate_interval"
# gRPC codes that are the server's fault (docs/operations.md, Metrics): UNKNOWN, DEADLINE_EXCEEDED,
# UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
GRPC_SERVER_ERRORS = "2|4|12|13|14|15"


def explore_traces(traceql: str) -> str:
    """A Grafana Explore URL running `traceql` on the `tempo` variable's data source over the
    panel's time range. Grafana interpolates `${…}` in data links, so those stay literal."""
    pane = {
        "a": {
            "datasource": "${tempo}",
            "queries": [{"refId": "A", "datasource": {"type": "tempo", "uid": "${tempo}"},
                         "queryType": "traceql", "query": traceql, "limit": 20}],
            "range": {"from": "${__from}", "to": "${__to}"},
        }
    }
    text = json.dumps(pane, separators=(",", ":"), sort_keys=True)
    out, rest = [], text
    while "${" in rest:
        before, _, after = rest.partition("${")
        name, _, rest = after.partition("}")
        out.append(urllib.parse.quote(before, safe=""))
        out.append("${" + name + "}")
    out.append(urllib.parse.quote(rest, safe=""))
    return "/explore?schemaVersion=1&panes=" + "".join(out)


def trace_link(title: str, traceql: str) -> dashboard.DashboardLink:
    return dashboard.DashboardLink(title).type(dashboard_models.DashboardLinkType.LINK).url(
        explore_traces(traceql)).target_blank(True)


def q(expr: str, legend: str = "__auto", exemplar: bool = False, ref: str = "A", instant: bool = False) -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(PROM)
    if exemplar:
        query = query.exemplar(True)
    if instant:
        query = query.instant()
    return query


class Board:
    """One dashboard: panels laid out two (or three) to a line, ids in order."""

    def __init__(self, uid: str, title: str, description: str, tags: list[str]):
        self.next_id = 1
        self.builder = (
            dashboard.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags(["shop"] + tags)
            .editable()
            .timezone("browser")
            .time("now-3h", "now")
            .refresh("30s")
            .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
            .with_variable(
                dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
            .with_variable(dashboard.DatasourceVariable("tempo").label("Tempo").type("tempo"))
            .with_variable(
                dashboard.QueryVariable("namespace")
                .label("Namespace")
                .datasource(PROM)
                .query({"query": "label_values(target_info, namespace)", "refId": "namespace"})
                .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
                .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
                .multi(True)
                .include_all(True)
                .all_value(".*"))
            # The other shop dashboards, keeping the time range and the variables.
            .link(dashboard.DashboardLink("shop dashboards").type(dashboard_models.DashboardLinkType.DASHBOARDS)
                  .tags(["shop"]).as_dropdown(True).include_vars(True).keep_time(True))
        )

    def variable(self, name: str, label: str, query: str) -> "Board":
        self.builder = self.builder.with_variable(
            dashboard.QueryVariable(name)
            .label(label)
            .datasource(PROM)
            .query({"query": query, "refId": name})
            .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*"))
        return self


    def row(self, title: str) -> "Board":
        self.builder = self.builder.with_row(dashboard.Row(title).id(self._id()))
        return self

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def add(self, panel, width: int = 12, height: int = 8) -> "Board":
        self.builder = self.builder.with_panel(panel.id(self._id()).span(width).height(height))
        return self

    def with_traces(self, title: str, description: str, traceql: str) -> dashboard_models.Dashboard:
        """The dashboard, ending with a Tempo search panel of the traces it is about."""
        self.row("Traces")
        self.add(traces(title, description, traceql), width=24, height=9)
        return self.builder.build()


def series(title: str, description: str, unit: str, *queries: prometheus.Dataquery,
           links: list[dashboard.DashboardLink] | None = None, stack: bool = False,
           minimum: float | None = 0) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(PROM)
        .unit(unit)
        .line_width(1)
        .fill_opacity(10)
        .legend(common.VizLegendOptions().display_mode(common_models.LegendDisplayMode.TABLE)
                .placement(common_models.LegendPlacement.BOTTOM).show_legend(True)
                .calcs(["mean", "max", "lastNotNull"]))
        .tooltip(common.VizTooltipOptions().mode(common_models.TooltipDisplayMode.MULTI)
                 .sort(common_models.SortOrder.DESCENDING))
    )
    if minimum is not None:
        panel = panel.min(minimum)
    if stack:
        panel = panel.stacking(common.StackingConfig().mode(common_models.StackingMode.NORMAL)).fill_opacity(40)
    for query in queries:
        panel = panel.with_target(query)
    if links:
        panel = panel.data_links(links)
    return panel


def big(title: str, description: str, unit: str, query: prometheus.Dataquery,
        thresholds: list[tuple[float | None, str]] | None = None) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(PROM)
        .unit(unit)
        .with_target(query)
        .graph_mode(common_models.BigValueGraphMode.AREA)
        .color_mode(common_models.BigValueColorMode.VALUE)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    steps = thresholds or [(None, "green")]
    panel = panel.thresholds(
        dashboard.ThresholdsConfig().mode(dashboard_models.ThresholdsMode.ABSOLUTE).steps(
            [dashboard_models.Threshold(value=value, color=color) for value, color in steps]))
    return panel


def traces(title: str, description: str, traceql: str) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(TEMPO)
        .with_target(tempo.TempoQuery().ref_id("A").datasource(TEMPO).query_type("traceql")
                     .query(traceql).limit(20).table_type(tempo_models.SearchTableType.TRACES))
    )


def quantiles(metric: str, by: str, selector: str, legend: str) -> list[prometheus.Dataquery]:
    """p50 and p99 of histogram `metric`, per `by`."""
    out = []
    for ref, quantile in (("A", "0.5"), ("B", "0.99")):
        out.append(q(
            f"histogram_quantile({quantile}, sum by (le, {by}) (rate({metric}_bucket{{{selector}}}[{RATE}])))",
            f"p{int(float(quantile) * 100)} {legend}", exemplar=True, ref=ref))
    return out


def service_overview() -> dashboard_models.Dashboard:
    rpc = f'{NS}, rpc_service=~"$rpc_service"'
    route = f'{NS}, http_route=~"$route"'
    board = Board("shop-services", "shop / Service overview",
                  "RED per service and gRPC method (served and called) and per gateway route; "
                  "which services are serving; database pools.", ["red"])
    board.variable("rpc_service", "gRPC service",
                   f"label_values(rpc_server_duration_seconds_count{{{NS}}}, rpc_service)")
    board.variable("route", "Gateway route",
                   f"label_values(http_server_request_duration_seconds_count{{{NS}}}, http_route)")
    board.row("Serving")
    board.add(series(
        "Serving, per service", "shop_service_serving: 1 while the service answers SERVING (its "
        "database, broker and cache answer), 0 while it reports NOT_SERVING; summed over pods.", "none",
        q(f"sum by (shop_service) (shop_service_serving{{{NS}}})", "{{shop_service}}")), width=8, height=7)
    board.add(series(
        "Scrape targets up", "Prometheus's own `up`: pods whose /metrics answered the last scrape, per job.",
        "none", q(f"sum by (job) (up{{{NS}}})", "{{job}}")), width=8, height=7)
    board.add(series(
        "Password checks waiting", "shop_password_hash_waiting: sign-ins and password checks waiting for a "
        "hashing slot in the user service, per pod; above 0 for long, sign-ins are about to be shed with 503.",
        "none", q(f"max by (pod) (shop_password_hash_waiting{{{NS}}})", "{{pod}}")), width=8, height=7)
    board.row("gRPC served (per service and method)")
    link = trace_link("Traces of ${__field.labels.rpc_service}/${__field.labels.rpc_method}",
                      '{span.rpc.service="${__field.labels.rpc_service}" && '
                      'span.rpc.method="${__field.labels.rpc_method}"}')
    board.add(series(
        "Rate", "Calls served per second (rpc_server_duration_seconds_count).", "reqps",
        q(f"sum by (rpc_service, rpc_method) (rate(rpc_server_duration_seconds_count{{{rpc}}}[{RATE}]))",
          "{{rpc_service}}/{{rpc_method}}"), links=[link]), width=8)
    board.add(series(
        "Errors", f"Share of calls served that ended with a server-side gRPC code ({GRPC_SERVER_ERRORS}).",
        "percentunit",
        q(f"sum by (rpc_service, rpc_method) (rate(rpc_server_duration_seconds_count{{{rpc}, "
          f'rpc_grpc_status_code=~"{GRPC_SERVER_ERRORS}"}}[{RATE}])) / sum by (rpc_service, rpc_method) '
          f"(rate(rpc_server_duration_seconds_count{{{rpc}}}[{RATE}]))", "{{rpc_service}}/{{rpc_method}}"),
        links=[trace_link("Failed calls of ${__field.labels.rpc_method}",
                          '{span.rpc.method="${__field.labels.rpc_method}" && status=error}')]), width=8)
    board.add(series(
        "Duration", "p50 and p99 of calls served, per method.", "s",
        *quantiles("rpc_server_duration_seconds", "rpc_service, rpc_method", rpc, "{{rpc_service}}/{{rpc_method}}"),
        links=[link]), width=8)
    board.add(series(
        "Status codes", "Calls served per second by gRPC status code (0 OK, 5 NOT_FOUND, 14 UNAVAILABLE, …).",
        "reqps",
        q(f"sum by (rpc_grpc_status_code) (rate(rpc_server_duration_seconds_count{{{rpc}}}[{RATE}]))",
          "code {{rpc_grpc_status_code}}"), stack=True), width=24, height=7)
    board.row("gRPC called (clients: gateway → services, order → catalog/user)")
    board.add(series(
        "Rate", "Calls made per second, retries and waits for a ready endpoint included.", "reqps",
        q(f"sum by (rpc_service, rpc_method) (rate(rpc_client_duration_seconds_count{{{rpc}}}[{RATE}]))",
          "{{rpc_service}}/{{rpc_method}}")), width=8)
    board.add(series(
        "Errors", "Share of calls made that failed with a server-side code or a transport failure (14).",
        "percentunit",
        q(f"sum by (rpc_service, rpc_method) (rate(rpc_client_duration_seconds_count{{{rpc}, "
          f'rpc_grpc_status_code=~"{GRPC_SERVER_ERRORS}"}}[{RATE}])) / sum by (rpc_service, rpc_method) '
          f"(rate(rpc_client_duration_seconds_count{{{rpc}}}[{RATE}]))", "{{rpc_service}}/{{rpc_method}}")),
        width=8)
    board.add(series(
        "Duration", "p50 and p99 of calls made, per method.", "s",
        *quantiles("rpc_client_duration_seconds", "rpc_service, rpc_method", rpc, "{{rpc_service}}/{{rpc_method}}"),
        links=[link]), width=8)
    board.row("Gateway routes")
    route_link = trace_link("Traces of ${__field.labels.http_route}",
                            '{span.http.route="${__field.labels.http_route}"}')
    board.add(series(
        "Rate", "Requests answered per second, per method and route template.", "reqps",
        q(f"sum by (http_request_method, http_route) (rate(http_server_request_duration_seconds_count{{{route}}}[{RATE}]))",
          "{{http_request_method}} {{http_route}}"), links=[route_link]), width=8)
    board.add(series(
        "5xx", "Share of requests answered 5xx, per route.", "percentunit",
        q(f"sum by (http_route) (rate(http_server_request_duration_seconds_count{{{route}, "
          f'http_response_status_code=~"5.."}}[{RATE}])) / sum by (http_route) '
          f"(rate(http_server_request_duration_seconds_count{{{route}}}[{RATE}]))", "{{http_route}}"),
        links=[trace_link("Failed requests of ${__field.labels.http_route}",
                          '{span.http.route="${__field.labels.http_route}" && status=error}')]), width=8)
    board.add(series(
        "Duration", "p50 and p99 per route.", "s",
        *quantiles("http_server_request_duration_seconds", "http_route", route, "{{http_route}}"),
        links=[route_link]), width=8)
    board.row("Database pools and caches")
    board.add(series(
        "Connections in use", "db_client_connection_count{state=used} per pool, against the pool's maximum.",
        "none",
        q(f'sum by (db_client_connection_pool_name) (db_client_connection_count{{{NS}, db_client_connection_state="used"}})',
          "used {{db_client_connection_pool_name}}"),
        q(f"sum by (db_client_connection_pool_name) (db_client_connection_max{{{NS}}})",
          "max {{db_client_connection_pool_name}}", ref="B")), width=8)
    board.add(series(
        "Idle connections", "db_client_connection_count{state=idle} per pool.", "none",
        q(f'sum by (db_client_connection_pool_name) (db_client_connection_count{{{NS}, db_client_connection_state="idle"}})',
          "{{db_client_connection_pool_name}}")), width=8)
    board.add(series(
        "Statements per second", "db_client_operation_duration_seconds_count per pool and operation: what each "
        "service asks of its database. A jump per order placed means a batch path fell back to a statement per row.",
        "reqps",
        q(f"sum by (db_client_connection_pool_name, db_operation_name) "
          f"(rate(db_client_operation_duration_seconds_count{{{NS}}}[{RATE}]))",
          "{{db_client_connection_pool_name}} {{db_operation_name}}")), width=8)
    board.add(series(
        "Cache hit ratio", "shop_cache_requests_total: hits per lookup, per cache (token: the gateway's memory of "
        "access tokens it verified, a miss is a signature check; revocation: its memory of token revocation "
        "answers, a miss is a CheckTokenRevoked call to the user service).",
        "percentunit",
        q(f'sum by (shop_cache) (rate(shop_cache_requests_total{{{NS}, result="hit"}}[{RATE}])) / '
          f"sum by (shop_cache) (rate(shop_cache_requests_total{{{NS}}}[{RATE}]))", "{{shop_cache}}")), width=8)
    return board.with_traces("Failed calls and requests", "The latest traces with an error span, from Tempo.",
                             '{resource.service.namespace="shop" && status=error}')


def order_funnel() -> dashboard_models.Dashboard:
    board = Board("shop-orders", "shop / Order funnel",
                  "Orders placed → paid → shipped → delivered, and those rejected (stock), whose "
                  "payment failed, cancelled or returned; pending orders; how long the stock "
                  "reservation takes.", ["orders"])
    events = ["placed", "paid", "shipped", "delivered", "rejected", "payment_failed", "cancelled", "returned"]
    colors = {"placed": "blue", "paid": "green", "shipped": "purple", "delivered": "dark-green",
              "rejected": "red", "payment_failed": "dark-red", "cancelled": "orange", "returned": "yellow"}
    board.row("Funnel over the selected time range")
    for event in events:
        what = "items returned" if event == "returned" else f"orders {event}"
        board.add(big(event.replace("_", " ").capitalize(), f"increase of shop_orders_total{{shop_order_event=\"{event}\"}} "
                      f"over the dashboard's time range: {what}.", "short",
                      q(f'sum(increase(shop_orders_total{{{NS}, shop_order_event="{event}"}}[$__range]))',
                        event, instant=True),
                      [(None, colors[event])]), width=3, height=5)
    board.row("Flow")
    board.add(series(
        "Order events per minute", "shop_orders_total per event (returned counts items).", "short",
        q(f"sum by (shop_order_event) (rate(shop_orders_total{{{NS}}}[{RATE}])) * 60", "{{shop_order_event}}")),
        width=12)
    board.add(series(
        "Conversion", "Paid per placed and rejected per placed, over the last hour (sliding).", "percentunit",
        q(f'sum(increase(shop_orders_total{{{NS}, shop_order_event="paid"}}[1h])) / '
          f'sum(increase(shop_orders_total{{{NS}, shop_order_event="placed"}}[1h]))', "paid / placed"),
        q(f'sum(increase(shop_orders_total{{{NS}, shop_order_event="rejected"}}[1h])) / '
          f'sum(increase(shop_orders_total{{{NS}, shop_order_event="placed"}}[1h]))', "rejected / placed", ref="B")),
        width=12)
    board.row("Pending orders and the stock reservation")
    board.add(series(
        "Orders pending", "shop_orders_pending: orders waiting for their stock reservation's answer "
        "(the order service reads it from its database periodically).", "short",
        q(f"max(shop_orders_pending{{{NS}}})", "pending")), width=8)
    board.add(series(
        "Oldest pending order", "shop_orders_pending_oldest_age_seconds: age of the oldest pending order "
        "(0 when none). Alert: ShopOrdersPendingTooLong.", "s",
        q(f"max(shop_orders_pending_oldest_age_seconds{{{NS}}})", "oldest")), width=8)
    reservation_link = trace_link(
        "Traces of the stock results", '{resource.service.name="shop-order" && span.messaging.operation.type="process"}')
    board.add(series(
        "Reservation latency", "shop_order_reservation_duration_seconds: from the order's placement to "
        "its reservation result being applied, p50 and p99 per outcome (paid, rejected).", "s",
        *quantiles("shop_order_reservation_duration_seconds", "shop_order_outcome", NS, "{{shop_order_outcome}}"),
        links=[reservation_link]), width=8)
    board.add(series(
        "Reservation results per minute", "Reservations answered per outcome.", "short",
        q(f"sum by (shop_order_outcome) (rate(shop_order_reservation_duration_seconds_count{{{NS}}}[{RATE}])) * 60",
          "{{shop_order_outcome}}")), width=24, height=7)
    return board.with_traces("Order placements", "The latest POST /api/v1/orders traces, from Tempo.",
                             '{span.http.route="/api/v1/orders" && span.http.request.method="POST"}')


def stock_pipeline() -> dashboard_models.Dashboard:
    queue = f'{NS}, messaging_destination_name=~"$queue"'
    board = Board("shop-stock", "shop / Stock pipeline",
                  "Outboxes → RabbitMQ work queues → consumers: backlog and its age, consume rate and "
                  "duration, retries, dead letters, and what the catalog applied.", ["stock", "queues"])
    board.variable("queue", "Queue",
                   f"label_values(messaging_process_duration_seconds_count{{{NS}}}, messaging_destination_name)")
    board.row("Outboxes (rows committed, not yet published)")
    board.add(series(
        "Outbox backlog", "shop_outbox_pending: unsent outbox rows per service.", "short",
        q(f"max by (shop_outbox) (shop_outbox_pending{{{NS}}})", "{{shop_outbox}}")), width=12)
    board.add(series(
        "Oldest unsent row", "shop_outbox_oldest_age_seconds: age of the oldest unsent row (0 when empty). "
        "Alert: ShopOutboxStuck.", "s",
        q(f"max by (shop_outbox) (shop_outbox_oldest_age_seconds{{{NS}}})", "{{shop_outbox}}")), width=12)
    board.row("Queues")
    board.add(series(
        "Queue depth", "messaging_queue_depth: ready messages per consumed queue.", "short",
        q(f"max by (messaging_destination_name) (messaging_queue_depth{{{queue}}})", "{{messaging_destination_name}}")),
        width=8)
    board.add(series(
        "Consume rate", "Deliveries handled per second, per queue and outcome "
        "(messaging_process_duration_seconds_count).", "ops",
        q(f"sum by (messaging_destination_name, outcome) (rate(messaging_process_duration_seconds_count{{{queue}}}[{RATE}]))",
          "{{messaging_destination_name}} {{outcome}}"), stack=True), width=8)
    process_link = trace_link("Traces of ${__field.labels.messaging_destination_name}",
                              '{span.messaging.destination.name="${__field.labels.messaging_destination_name}" && '
                              'span.messaging.operation.type="process"}')
    board.add(series(
        "Consume duration", "p50 and p99 of one delivery's handling, per queue.", "s",
        *quantiles("messaging_process_duration_seconds", "messaging_destination_name", queue,
                   "{{messaging_destination_name}}"), links=[process_link]), width=8)
    board.row("Failures")
    board.add(series(
        "Dead letters waiting", "messaging_queue_dead_letters: messages in each .dead queue, waiting for an "
        "operator (shop-admin dlq). Alert: ShopDeadLetters.", "short",
        q(f"max by (messaging_destination_name) (messaging_queue_dead_letters{{{NS}}})",
          "{{messaging_destination_name}}")), width=8)
    board.add(series(
        "Dead-lettered", "messaging_process_dead_lettered_total: messages given up on, per queue and reason, "
        "per 5 minutes.", "short",
        q(f"sum by (messaging_destination_name, reason) (increase(messaging_process_dead_lettered_total{{{queue}}}[5m]))",
          "{{messaging_destination_name}} {{reason}}"),
        links=[trace_link("Failed deliveries of ${__field.labels.messaging_destination_name}",
                          '{span.messaging.destination.name="${__field.labels.messaging_destination_name}" && '
                          'status=error}')]), width=8)
    board.add(series(
        "Retries", "messaging_process_retries_total: deliveries handed back, per queue and kind "
        "(transient: a dependency was down; failed: returned to the queue).", "ops",
        q(f"sum by (messaging_destination_name, kind) (rate(messaging_process_retries_total{{{queue}}}[{RATE}]))",
          "{{messaging_destination_name}} {{kind}}")), width=8)
    board.row("Catalog worker")
    board.add(series(
        "Stock applied", "catalog_stock_applied_total per work (reserve, release) and outcome.", "ops",
        q(f"sum by (work, outcome) (rate(catalog_stock_applied_total{{{NS}}}[{RATE}]))", "{{work}} {{outcome}}"),
        stack=True), width=12)
    board.add(series(
        "Failed batches", "catalog_stock_batch_failures_total: batch transactions that failed and were retried.",
        "short",
        q(f"sum by (work) (increase(catalog_stock_batch_failures_total{{{NS}}}[5m]))", "{{work}}")), width=12)
    return board.with_traces("Failed deliveries", "The latest traces of a delivery whose processing failed, from Tempo.",
                             '{span.messaging.operation.type="process" && status=error}')


def edge() -> dashboard_models.Dashboard:
    route = f'{NS}, http_route=~"$route"'
    board = Board("shop-edge", "shop / Edge",
                  "The public REST API at the gateway: requests, 4xx/5xx, rate-limit 429s by limit, "
                  "latency percentiles and the latency SLO (99 % of requests within 1 s).", ["edge", "gateway"])
    board.variable("route", "Route",
                   f"label_values(http_server_request_duration_seconds_count{{{NS}}}, http_route)")
    total = f"sum(rate(http_server_request_duration_seconds_count{{{route}}}[{RATE}]))"
    board.row("Traffic and errors")
    board.add(big("Requests", "Requests per second now.", "reqps", q(total, "req/s")), width=6, height=5)
    for name, pattern, warn in (("4xx", "4..", 0.1), ("5xx", "5..", 0.01)):
        board.add(big(f"{name} share", f"Share of requests answered {name} now.", "percentunit",
                      q(f"sum(rate(http_server_request_duration_seconds_count{{{route}, "
                        f'http_response_status_code=~"{pattern}"}}[{RATE}])) / {total}', name),
                      [(None, "green"), (warn, "orange"), (warn * 5, "red")]), width=6, height=5)
    board.add(big("429s", "Requests refused by a rate limit per second now.", "reqps",
                  q(f"sum(rate(shop_rate_limit_rejections_total{{{NS}}}[{RATE}]))", "429/s")), width=6, height=5)
    board.add(series(
        "Requests by status class", "Requests answered per second, by status class.", "reqps",
        *[q(f"sum(rate(http_server_request_duration_seconds_count{{{route}, "
            f'http_response_status_code=~"{c}.."}}[{RATE}]))', f"{c}xx", ref=ref)
          for ref, c in zip("ABCD", "2345")], stack=True), width=12)
    board.add(series(
        "429s by limit", "shop_rate_limit_rejections_total: requests the gateway answered 429, per limit.", "reqps",
        q(f"sum by (shop_rate_limit) (rate(shop_rate_limit_rejections_total{{{NS}}}[{RATE}]))", "{{shop_rate_limit}}")),
        width=12)
    board.add(series(
        "4xx and 5xx by route", "Requests per second answered 4xx or 5xx, per route and status.", "reqps",
        q(f"sum by (http_route, http_response_status_code) (rate(http_server_request_duration_seconds_count{{{route}, "
          f'http_response_status_code=~"4..|5.."}}[{RATE}]))', "{{http_response_status_code}} {{http_route}}"),
        links=[trace_link("Failed requests of ${__field.labels.http_route}",
                          '{span.http.route="${__field.labels.http_route}" && status=error}')]), width=24, height=7)
    board.row("Latency")
    link = trace_link("Slow traces of ${__field.labels.http_route}",
                      '{span.http.route="${__field.labels.http_route}" && duration > 1s}')
    board.add(series(
        "Latency percentiles", "p50, p90, p99 of every request the gateway answered.", "s",
        *[q(f"histogram_quantile({p}, sum by (le) (rate(http_server_request_duration_seconds_bucket{{{route}}}[{RATE}])))",
            f"p{int(float(p) * 100)}", exemplar=True, ref=ref) for ref, p in zip("ABC", ("0.5", "0.9", "0.99"))]),
        width=12)
    board.add(series(
        "p99 per route", "p99 per route template.", "s",
        q(f"histogram_quantile(0.99, sum by (le, http_route) (rate(http_server_request_duration_seconds_bucket{{{route}}}[{RATE}])))",
          "{{http_route}}", exemplar=True), links=[link]), width=12)
    board.add(series(
        "Latency SLO: requests slower than 1 s", "Share of requests slower than 1 s, the SLO's error "
        "budget being 1 %; over 1 h and 5 m. Alert: ShopEdgeLatencyBudgetBurn.", "percentunit",
        *[q(f'1 - sum(rate(http_server_request_duration_seconds_bucket{{{NS}, le=~"1|1\\\\.0"}}[{window}])) / '
            f"sum(rate(http_server_request_duration_seconds_count{{{NS}}}[{window}]))", window, ref=ref)
          for ref, window in (("A", "1h"), ("B", "5m"))]), width=24, height=7)
    return board.with_traces("Slow requests", "The latest gateway requests slower than 1 s, from Tempo.",
                             '{resource.service.name="shop-gateway" && kind=server && duration > 1s}')


BOARDS = {
    "shop-services": service_overview,
    "shop-orders": order_funnel,
    "shop-stock": stock_pipeline,
    "shop-edge": edge,
}


def render() -> dict[str, bytes]:
    out = {}
    for uid, build in BOARDS.items():
        text = json.dumps(build(), cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False)
        out[f"{uid}.json"] = (text + "\n").encode("utf-8")
    return out


def main() -> int:
    args = sys.argv[1:]
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    out_dir = args[0] if args else DEFAULT_OUT
    files = render()
    if check:
        present = {name for name in os.listdir(out_dir) if name.endswith(".json")} if os.path.isdir(out_dir) else set()
        stale = []
        for name, data in files.items():
            path = os.path.join(out_dir, name)
            if not os.path.exists(path):
                stale.append(f"{name}: missing")
            else:
                with open(path, "rb") as file:
                    if file.read() != data:
                        stale.append(f"{name}: differs from what tools/observability/dashboards.py generates")
        stale += [f"{name}: not generated by tools/observability/dashboards.py" for name in sorted(present - set(files))]
        for line in stale:
            print(f"dashboards: {line}", file=sys.stderr)
        if stale:
            print("regenerate with: python tools/observability/dashboards.py", file=sys.stderr)
            return 1
        print(f"dashboards: {len(files)} up to date in {os.path.relpath(out_dir, ROOT)}")
        return 0
    os.makedirs(out_dir, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(out_dir, name), "wb") as file:
            file.write(data)
    print(f"dashboards: {len(files)} written to {os.path.relpath(out_dir, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
