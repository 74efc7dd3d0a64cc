"""Validates skaffold.yaml without skaffold: against tools/chart/skaffold-v4beta11.schema.json,
then each profile the way `skaffold -p <profile>` applies it (its JSON patches, `replace` when no
op is given, on the configuration without its profiles; then its own sections replacing the
configuration's), the result validated again, and the profile combinations the README uses.
A patch whose path does not exist, a result the schema refuses, or a chart or values file that
is not in the repository fails.

Usage: python skaffold_check.py SKAFFOLD_YAML
"""

import copy
import json
import os
import sys

import jsonpatch
import jsonschema
import yaml

SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "skaffold-v4beta11.schema.json")
# Profiles used together (README, skaffold.yaml's header).
COMBINATIONS = [["dev", "observability"]]


def apply(config: dict, profile: dict) -> dict:
    patches = [{"op": "replace", **patch} for patch in profile.get("patches", [])]
    result = jsonpatch.apply_patch(config, patches)
    for section in ("build", "manifests", "deploy"):
        if section in profile:
            result[section] = copy.deepcopy(profile[section])
    return result


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as file:
        config = yaml.safe_load(file)
    with open(SCHEMA, encoding="utf-8") as file:
        validator = jsonschema.Draft202012Validator(json.load(file))
    failed = False

    def check(what: str, document: dict) -> None:
        nonlocal failed
        errors = sorted(validator.iter_errors(document), key=lambda error: list(error.absolute_path))
        for error in errors:
            path = "/".join(str(part) for part in error.absolute_path)
            print(f"skaffold.yaml ({what}): /{path}: {error.message}", file=sys.stderr)
        failed = failed or bool(errors)
        root = os.path.dirname(os.path.abspath(sys.argv[1]))
        for release in document.get("deploy", {}).get("helm", {}).get("releases", []):
            paths = ([release["chartPath"]] if "chartPath" in release else []) + release.get("valuesFiles", [])
            for path in paths:
                if not os.path.exists(os.path.join(root, path)):
                    print(f"skaffold.yaml ({what}): release {release['name']}: {path} does not exist", file=sys.stderr)
                    failed = True

    check("as written", config)
    base = {key: value for key, value in config.items() if key != "profiles"}
    profiles = {profile["name"]: profile for profile in config.get("profiles", [])}
    for names in [[name] for name in profiles] + COMBINATIONS:
        result = base
        try:
            for name in names:
                result = apply(result, profiles[name])
        except (KeyError, jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as error:
            print(f"skaffold.yaml (-p {','.join(names)}): cannot apply: {error!r}", file=sys.stderr)
            failed = True
            continue
        check(f"-p {','.join(names)}", result)
    if not failed:
        print(f"skaffold.yaml: valid skaffold/v4beta11, and with each of {len(profiles)} profiles applied")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
