"""Renders, lints and validates the Helm chart without a cluster.

Renders helm/shop like `helm template` (Helm's own engine), lints it strictly, writes the
manifests to a file for the schema and policy checks, and fails on any error.
Usage: python render.py CHART OUT.yaml
"""

import sys

import helm_python


def main() -> int:
    chart_path, out_path = sys.argv[1], sys.argv[2]
    lint = helm_python.lint(chart_path, strict=True, kube_version="v1.33.0")
    errors = lint.get("errors") if isinstance(lint, dict) else getattr(lint, "errors", None)
    if errors:
        print("helm lint failed:", errors, file=sys.stderr)
        return 1
    chart = helm_python.Chart.load(chart_path)
    rendered = chart.render(
        values={
            "image": {"registry": "registry.example.com/shop", "tag": "0.1.0", "pullPolicy": "IfNotPresent"},
            # Optional parts are rendered too, so that they are checked.
            "otelCollector": {"enabled": True},
        },
        name="shop",
        namespace="shop",
        is_install=True,
    )
    documents = [text for name, text in sorted(rendered.items()) if name.endswith(".yaml") and text.strip()]
    with open(out_path, "w", encoding="utf-8") as out:
        out.write("\n---\n".join(documents))
    print(f"helm lint clean; rendered {len(documents)} templates to {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
