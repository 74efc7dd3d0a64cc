"""Checks the alert rules beyond what promtool knows (promtool checks syntax and runs the tests).

- every alert has a severity (critical, warning), a summary, a description and a runbook_url
  `docs/operations.md#<anchor>` whose heading exists in docs/operations.md;
- every alert is tested by tools/observability/shop-alerts.test.yaml both firing (an
  expectation with alerts) and not firing (an expectation of none);
- the thresholds group records exactly the chart's monitoring.rules.thresholds, with the chart's
  default values (the chart rewrites that group from values: the file and values.yaml must agree).

Usage: python check_rules.py   (from anywhere; paths are the repository's)
"""

import os
import re
import sys

import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
RULES = os.path.join(ROOT, "helm", "shop", "rules", "shop-alerts.yaml")
TESTS = os.path.join(ROOT, "tools", "observability", "shop-alerts.test.yaml")
DOCS = os.path.join(ROOT, "docs", "operations.md")
VALUES = os.path.join(ROOT, "helm", "shop", "values.yaml")
THRESHOLDS_GROUP = "shop-thresholds"
THRESHOLD_PREFIX = "shop:threshold:"


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings: lower case, punctuation dropped, spaces to '-'."""
    found = set()
    for line in markdown.splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
        if match:
            text = match.group(1).strip().lower()
            found.add(re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", text)))
    return found


def camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(word.capitalize() for word in rest)


def main() -> int:
    errors = []
    with open(RULES, encoding="utf-8") as file:
        rules = yaml.safe_load(file)
    with open(TESTS, encoding="utf-8") as file:
        tests = yaml.safe_load(file)
    with open(DOCS, encoding="utf-8") as file:
        doc_anchors = anchors(file.read())
    with open(VALUES, encoding="utf-8") as file:
        values = yaml.safe_load(file)

    alerts = [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]
    for rule in alerts:
        name = rule["alert"]
        severity = rule.get("labels", {}).get("severity")
        if severity not in ("critical", "warning"):
            errors.append(f"{name}: severity {severity!r} is not critical or warning")
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            if not annotations.get(key):
                errors.append(f"{name}: no {key} annotation")
        url = annotations.get("runbook_url", "")
        page, _, anchor = url.partition("#")
        if page != "docs/operations.md" or anchor not in doc_anchors:
            errors.append(f"{name}: runbook_url {url!r} names no heading of docs/operations.md")

    firing: dict[str, int] = {}
    silent: dict[str, int] = {}
    for test in tests["tests"]:
        for case in test.get("alert_rule_test", []):
            counts = firing if case.get("exp_alerts") else silent
            counts[case["alertname"]] = counts.get(case["alertname"], 0) + 1
    names = {rule["alert"] for rule in alerts}
    for name in sorted(names):
        if not firing.get(name):
            errors.append(f"{name}: no test shows it firing")
        if not silent.get(name):
            errors.append(f"{name}: no test shows it not firing")
    for name in sorted((set(firing) | set(silent)) - names):
        errors.append(f"{name}: tested, but no such alert")

    group = next((g for g in rules["groups"] if g["name"] == THRESHOLDS_GROUP), None)
    chart = values.get("monitoring", {}).get("rules", {}).get("thresholds", {})
    in_file = {}
    for rule in (group or {}).get("rules", []):
        record = rule.get("record", "")
        match = re.fullmatch(r"vector\(([0-9.]+)\)", rule.get("expr", "").strip())
        if not record.startswith(THRESHOLD_PREFIX) or not match:
            errors.append(f"{THRESHOLDS_GROUP}: {record or rule}: not a `{THRESHOLD_PREFIX}…` record of vector(<number>)")
            continue
        in_file[camel(record[len(THRESHOLD_PREFIX):])] = float(match.group(1))
    for key in sorted(set(in_file) | set(chart)):
        if key not in chart:
            errors.append(f"values.yaml: monitoring.rules.thresholds.{key} missing (the rules file records it)")
        elif key not in in_file:
            errors.append(f"rules file: no {THRESHOLD_PREFIX} record for monitoring.rules.thresholds.{key}")
        elif float(chart[key]) != in_file[key]:
            errors.append(f"monitoring.rules.thresholds.{key}: values.yaml says {chart[key]}, the rules file {in_file[key]}")

    for error in errors:
        print(f"rules: {error}", file=sys.stderr)
    if not errors:
        print(f"rules: {len(alerts)} alerts annotated, runbooks found, each tested firing and not firing; "
              f"{len(in_file)} thresholds match values.yaml")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
