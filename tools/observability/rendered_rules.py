"""Writes the alert rules as the chart renders them (a PrometheusRule's groups, or the rules file of
the ConfigMap) into OUT_DIR/<value set>.rules.yaml, for `promtool check rules`: what a release
ships, thresholds from its values included, is what promtool checks.

Usage: python rendered_rules.py RENDERED_DIR OUT_DIR   (RENDERED_DIR: tools/chart/render.py's output)
"""

import glob
import os
import sys

import yaml


def main() -> int:
    rendered, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    written = 0
    for path in sorted(glob.glob(os.path.join(rendered, "*.yaml"))):
        set_name = os.path.basename(path).removesuffix(".yaml")
        for doc in yaml.safe_load_all(open(path, encoding="utf-8")):
            if not doc:
                continue
            if doc["kind"] == "PrometheusRule":
                groups = doc["spec"]["groups"]
            elif doc["kind"] == "ConfigMap" and "shop-alerts.yaml" in doc.get("data", {}):
                groups = yaml.safe_load(doc["data"]["shop-alerts.yaml"])["groups"]
            else:
                continue
            with open(os.path.join(out_dir, f"{set_name}.rules.yaml"), "w", encoding="utf-8") as file:
                yaml.safe_dump({"groups": groups}, file, sort_keys=False)
            written += 1
    if not written:
        print("rendered_rules: no value set renders the alert rules", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
