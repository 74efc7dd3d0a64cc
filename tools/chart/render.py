"""Renders, lints and checks the Helm chart's value sets without a cluster.

For each value set (the defaults, values-dev.yaml, values-prod.yaml and ci/all-on-values.yaml)
Helm's own engine lints the chart strictly (values.schema.json enforced) and renders it like
`helm template` (hooks and `helm test` pods included); the manifests go to OUT_DIR/<set>.yaml
for the Kubernetes schema and policy checks. Then the wiring the binaries depend on is checked
on the rendered objects: every Secret key a pod reads exists in the Secret the dev set creates,
every gRPC target names a rendered headless Service, port and fully qualified name, autoscaled
Deployments leave `replicas` to the autoscaler, and the gateway's grace period covers its
preStop pause and its drain. The Prometheus Operator objects (PrometheusRule, ServiceMonitor,
PodMonitor), which the Kubernetes schemas do not know, are validated against
tools/chart/monitoring-v1.schema.json, and the rules and dashboards the chart ships are checked to
be the chart's files (the rules with their thresholds from values). Fails on any error.

Usage: python render.py CHART OUT_DIR

With `--release`, one release instead, for the cluster-in-a-box test (shop/tests/cluster):
the chart linted strictly and rendered (hooks and test pods included) with the value files
given, later files winning as with `helm install -f a.yaml -f b.json`; the objects are printed
as one JSON array.

Usage: python render.py --release CHART VALUES_FILE...
"""

import base64
import json
import os
import re
import sys

import helm_python
import yaml

NAMESPACE = "shop"
RELEASE = "shop"
MONITORING_SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "monitoring-v1.schema.json")


def check_monitoring(chart_path: str, values: dict, docs: list[dict]) -> list[str]:
    """The Operator's objects against their committed schema; the shipped rules and dashboards
    against the chart's files."""
    # Imported here: `--release` (the cluster-in-a-box test's environment) does without it.
    import jsonschema

    errors = []
    with open(MONITORING_SCHEMA, encoding="utf-8") as file:
        schemas = json.load(file)
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            schema = schemas["definitions"].get(doc["kind"])
            if schema is None:
                errors.append(f"{doc['kind']} {doc['metadata']['name']}: no schema in {MONITORING_SCHEMA}")
                continue
            for error in jsonschema.Draft7Validator(schema).iter_errors(doc):
                path = "/".join(str(p) for p in error.absolute_path)
                errors.append(f"{doc['kind']} {doc['metadata']['name']}: {path}: {error.message}")
    monitoring = values.get("monitoring", {})
    rules_on = monitoring.get("rules", {}).get("enabled", False)
    shipped = [d["spec"]["groups"] for d in docs if d["kind"] == "PrometheusRule"]
    shipped += [yaml.safe_load(d["data"]["shop-alerts.yaml"])["groups"] for d in docs
                if d["kind"] == "ConfigMap" and "shop-alerts.yaml" in d.get("data", {})]
    if rules_on and len(shipped) != 1:
        errors.append(f"monitoring.rules.enabled, yet {len(shipped)} rule objects rendered")
    if shipped:
        with open(os.path.join(chart_path, "rules", "shop-alerts.yaml"), encoding="utf-8") as file:
            expected = yaml.safe_load(file)["groups"]
        thresholds = merge(yaml.safe_load(open(os.path.join(chart_path, "values.yaml"), encoding="utf-8"))["monitoring"]["rules"],
                           monitoring.get("rules", {}))["thresholds"]
        for group in expected:
            for rule in group["rules"]:
                if group["name"] == "shop-thresholds":
                    head, *rest = rule["record"].removeprefix("shop:threshold:").split("_")
                    value = thresholds[head + "".join(w.capitalize() for w in rest)]
                    rule["expr"] = f"vector({value:g})" if isinstance(value, float) else f"vector({value})"
        got = shipped[0]
        for group_got, group in zip(got, expected):
            for rule_got, rule in zip(group_got["rules"], group["rules"]):
                for key in ("alert", "record", "expr", "for"):
                    if rule_got.get(key) != rule.get(key):
                        errors.append(f"rules {rule.get('alert') or rule.get('record')}: {key} {rule_got.get(key)!r}, "
                                      f"expected {rule.get(key)!r}")
        if [len(g["rules"]) for g in got] != [len(g["rules"]) for g in expected]:
            errors.append("rules: the rendered groups differ from rules/shop-alerts.yaml")
    # Prometheus must be let in to each component's `metrics` port by the component's policy.
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        template = deployment["spec"]["template"]
        ports = [p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])
                 if p.get("name") == "metrics"]
        labels = template["metadata"]["labels"]
        selecting = [p for p in policies
                     if p["spec"]["podSelector"].get("matchLabels")
                     and p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
                     and "Ingress" in p["spec"].get("policyTypes", [])]
        allowed = {port.get("port") for p in selecting for rule in p["spec"].get("ingress", [])
                   for port in rule.get("ports", [])}
        for port in ports:
            if selecting and port not in allowed:
                errors.append(f"{deployment['metadata']['name']}: metrics port {port} is not let in by its NetworkPolicy "
                              "(networkPolicy.metrics.ports)")
    dashboards = {name: d["data"][name] for d in docs if d["kind"] == "ConfigMap"
                  for name in d.get("data", {}) if name.endswith(".json")}
    if monitoring.get("dashboards", {}).get("enabled", False):
        files = sorted(os.listdir(os.path.join(chart_path, "dashboards")))
        if sorted(dashboards) != files:
            errors.append(f"dashboards: rendered {sorted(dashboards)}, the chart has {files}")
        for name, text in dashboards.items():
            with open(os.path.join(chart_path, "dashboards", name), encoding="utf-8") as file:
                if file.read() != text:
                    errors.append(f"dashboards: {name} differs from the chart's file")
    return errors


def value_sets(chart_path: str) -> dict[str, dict]:
    def load(path: str) -> dict:
        with open(os.path.join(chart_path, path), encoding="utf-8") as file:
            return yaml.safe_load(file) or {}

    return {
        "default": {},
        "dev": load("values-dev.yaml"),
        "prod": load("values-prod.yaml"),
        "all-on": load("ci/all-on-values.yaml"),
    }


def objects(rendered: dict[str, str]) -> list[dict]:
    found = []
    for name, text in sorted(rendered.items()):
        if name.endswith(".yaml"):
            found.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return found


def check_wiring(set_name: str, docs: list[dict]) -> list[str]:
    """What a renamed value, Secret key or port would break, checked on the rendered objects."""
    errors = []
    by_kind: dict[str, dict[str, dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    services = by_kind.get("Service", {})
    secrets = by_kind.get("Secret", {})
    hpas = {hpa["spec"]["scaleTargetRef"]["name"] for hpa in by_kind.get("HorizontalPodAutoscaler", {}).values()}
    pods = [(name, d["spec"]["template"]["spec"]) for kind in ("Deployment", "Job", "StatefulSet")
            for name, d in by_kind.get(kind, {}).items()]
    pods += [(name, d["spec"]) for name, d in by_kind.get("Pod", {}).items()]
    target = re.compile(r"^dns:///([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.([a-z0-9.-]+)\.:(\d+)$")
    for name, spec in pods:
        for container in spec["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and secrets and not ref.get("optional"):
                    data = secrets.get(ref["name"], {}).get("data", {})
                    if ref["key"] not in data:
                        errors.append(f"{name}: {env['name']} reads key {ref['key']} absent from Secret {ref['name']}")
                value = env.get("value", "")
                args = container.get("args", [])
                for text in [value] + [a for a in args if a.startswith("dns:")]:
                    if not text.startswith("dns:"):
                        continue
                    match = target.match(text)
                    if not match:
                        errors.append(f"{name}: {text!r} is not a fully qualified dns:/// target with a final dot")
                        continue
                    svc = services.get(match.group(1))
                    if svc is None or svc["spec"].get("clusterIP") != "None":
                        errors.append(f"{name}: {text!r} names no rendered headless Service")
                    elif int(match.group(4)) not in [p["port"] for p in svc["spec"]["ports"]]:
                        errors.append(f"{name}: {text!r}: Service {match.group(1)} has no such port")
                    if match.group(2) != NAMESPACE:
                        errors.append(f"{name}: {text!r} is not in the release namespace")
    for name, deployment in by_kind.get("Deployment", {}).items():
        if name in hpas and "replicas" in deployment["spec"]:
            errors.append(f"{name}: autoscaled, yet sets replicas (every upgrade would reset the scale)")
        if name not in hpas and "replicas" not in deployment["spec"]:
            errors.append(f"{name}: neither replicas nor an autoscaler")
        spec = deployment["spec"]["template"]["spec"]
        container = spec["containers"][0]
        pause = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        if name.endswith("-gateway"):
            timeout = next(e["value"] for e in container["env"] if e["name"] == "SHOP_REQUEST_TIMEOUT")
            drain = int(timeout.rstrip("s"))
            if spec["terminationGracePeriodSeconds"] < pause + drain:
                errors.append(f"{name}: grace {spec['terminationGracePeriodSeconds']} s < preStop {pause} s + drain {drain} s")
        elif spec["terminationGracePeriodSeconds"] <= pause:
            errors.append(f"{name}: grace period leaves no time to drain after the preStop pause")
    for name, pdb in by_kind.get("PodDisruptionBudget", {}).items():
        if "minAvailable" in pdb["spec"]:
            errors.append(f"{name}: minAvailable can block node drains; use maxUnavailable")
    if set_name == "dev":
        dev_secret = next((s for s in secrets.values() if "SHOP_JWT_SIGNING_KEYS" in s.get("data", {})), None)
        if dev_secret is None:
            errors.append("dev: no backends Secret rendered")
        else:
            keys = base64.b64decode(dev_secret["data"]["SHOP_JWT_SIGNING_KEYS"]).decode()
            kid, _, seed = keys.partition("=")
            if not kid or len(base64.urlsafe_b64decode(seed + "=" * (-len(seed) % 4))) != 32:
                errors.append(f"dev: SHOP_JWT_SIGNING_KEYS is not kid=<base64url 32-byte seed>: {keys!r}")
    return errors


def merge(base: dict, overlay: dict) -> dict:
    """Helm's merge of value files: maps merged key by key, anything else replaced."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def lint_and_render(chart_path: str, chart, values: dict) -> tuple[dict[str, str] | None, str]:
    """Helm's strict lint, the values schema, then the render; (None, why) when lint fails."""
    lint = helm_python.lint(chart_path, values, strict=True, namespace=NAMESPACE, kube_version="v1.33.0")
    if lint.get("errors") or any(m.get("severity", 0) >= 2 for m in lint.get("messages") or []):
        return None, f"helm lint failed: {lint.get('errors')} {lint.get('messages')}"
    chart.validate_schema(values)
    return chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True), ""


def release(chart_path: str, value_files: list[str]) -> int:
    values: dict = {}
    for path in value_files:
        with open(path, encoding="utf-8") as file:
            values = merge(values, yaml.safe_load(file) or {})
    rendered, why = lint_and_render(chart_path, helm_python.Chart.load(chart_path), values)
    if rendered is None:
        print(why, file=sys.stderr)
        return 1
    json.dump(objects(rendered), sys.stdout)
    return 0


def main() -> int:
    if sys.argv[1] == "--release":
        return release(sys.argv[2], sys.argv[3:])
    chart_path, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    chart = helm_python.Chart.load(chart_path)
    failed = False
    for set_name, values in value_sets(chart_path).items():
        rendered, why = lint_and_render(chart_path, chart, values)
        if rendered is None:
            print(f"{set_name}: {why}", file=sys.stderr)
            failed = True
            continue
        docs = objects(rendered)
        errors = check_wiring(set_name, docs) + check_monitoring(chart_path, values, docs)
        for error in errors:
            print(f"{set_name}: {error}", file=sys.stderr)
        failed = failed or bool(errors)
        out = os.path.join(out_dir, f"{set_name}.yaml")
        with open(out, "w", encoding="utf-8") as file:
            yaml.safe_dump_all(docs, file, sort_keys=False)
        notes = next((text for name, text in rendered.items() if name.endswith("NOTES.txt")), "")
        with open(os.path.join(out_dir, f"{set_name}.NOTES.txt"), "w", encoding="utf-8") as file:
            file.write(notes)
        print(f"{set_name}: helm lint clean, {len(docs)} objects, wiring checked -> {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
