"""Drives scripts/fuzz-api: waits for the shop, makes a signed-up customer and signs the admin
in, runs schemathesis over the served OpenAPI document anonymously, as the customer and as the
admin, and prints a summary: requests the gateway answered (from its own metrics, by status
class), and failures by check. Exits non-zero on any 5xx or any check failure."""

import argparse
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

# Operations left out of a run, each with its reason. Nothing here hides a 5xx: an exclusion
# only keeps an operation from destroying the identity a run depends on.
EXCLUDED = {
    # Logging out revokes the access token the authenticated runs send with every request; it
    # is fuzzed in the anonymous run (where it must answer 401).
    "authenticated": [("POST", "/auth/logout")],
}


def request(method, url, body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as resp:
        text = resp.read()
        return json.loads(text) if text else None


def wait_ready(base, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if time.monotonic() > deadline:
            sys.exit(f"fuzz-api: the shop was not ready within {timeout}s")
        time.sleep(0.3)


def code_from_log(log, email, timeout=20):
    """The verification code mailed to `email`, from the log mail transport's JSON lines."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in Path(log).read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            fields = json.loads(line).get("fields", {})
            if fields.get("message") == "mail (log transport)" and fields.get("to") == email:
                match = re.search(r": (\d{6})\s*$", fields.get("subject", ""))
                if match:
                    return match.group(1)
        time.sleep(0.2)
    sys.exit(f"fuzz-api: no verification code for {email} in the log")


def sign_up(api, log, email, password):
    request("POST", f"{api}/auth/email-verifications", {"email": email})
    code = code_from_log(log, email)
    token = request("POST", f"{api}/auth/email-verifications/confirm", {"email": email, "code": code})
    request(
        "POST",
        f"{api}/users",
        {
            "verification_token": token["verification_token"],
            "email": email,
            "password": password,
            "name": "Fuzz Customer",
            "phone": "+82-10-1234-5678",
            "address": "1 Fuzz Street, Seoul",
        },
    )


def login(api, email, password):
    return request("POST", f"{api}/auth/login", {"email": email, "password": password})["access_token"]


def status_counts(metrics_url):
    """Requests the gateway answered so far, by status code (its own histogram's counts)."""
    counts = Counter()
    with urllib.request.urlopen(metrics_url, timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("http_server_request_duration_seconds_count{"):
                status = re.search(r'http_response_status_code="(\d+)"', line)
                counts[status.group(1) if status else "none"] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def run_schemathesis(args, name, token, report_dir):
    junit = (report_dir / f"{name}.junit.xml").resolve()
    cmd = [
        str(Path(args.st).resolve()), "--config-file", str(Path(__file__).resolve().with_name("schemathesis.toml")),
        "run", f"{args.base}/openapi.json",
        "--checks", "all",
        "--max-examples", str(args.max_examples),
        "--seed", str(args.seed),
        "--workers", "1",
        "--request-timeout", "20",
        "--report", "junit", "--report-junit-path", str(junit),
        "--suppress-health-check", "too_slow",
    ]
    if token:
        cmd += ["--header", f"Authorization: Bearer {token}"]
    for method, path in EXCLUDED.get("authenticated" if token else "anonymous", []):
        cmd += ["--exclude-operation-id", args.document["paths"][path][method.lower()]["operationId"]]
    print(f"\n==> schemathesis, {name}", flush=True)
    # In the report directory: schemathesis keeps a cache directory where it runs.
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=report_dir)
    (report_dir / f"{name}.log").write_text(out.stdout + out.stderr)
    print(out.stdout[-6000:], flush=True)
    return out.returncode, out.stdout


def failures_by_check(output):
    """The `Failures:` and `Errors:` blocks of schemathesis's summary, as {check: count}."""
    counts = Counter()
    block = False
    for line in output.splitlines():
        if line.strip() in ("Failures:", "Errors:"):
            block = True
            continue
        if block:
            match = re.match(r"\s+\S+\s+(.+?): (\d+)$", line)
            if not match:
                block = False
                continue
            counts[match.group(1)] += int(match.group(2))
    return counts


def main():
    parser = argparse.ArgumentParser()
    for opt in ("--base", "--metrics", "--log", "--admin-email", "--admin-password", "--st", "--reports"):
        parser.add_argument(opt, required=True)
    parser.add_argument("--max-examples", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args()
    report_dir = Path(args.reports)
    report_dir.mkdir(parents=True, exist_ok=True)
    api = f"{args.base}/api/v1"

    wait_ready(args.base)
    with urllib.request.urlopen(f"{args.base}/openapi.json", timeout=10) as resp:
        args.document = json.load(resp)
    customer_email, customer_password = "customer@fuzz.example", "Fuzz-customer-1"
    sign_up(api, args.log, customer_email, customer_password)
    identities = [
        ("anonymous", None),
        ("customer", login(api, customer_email, customer_password)),
        ("admin", login(api, args.admin_email, args.admin_password)),
    ]

    started = time.monotonic()
    before = status_counts(args.metrics)
    failed_runs = []
    by_check = Counter()
    for name, token in identities:
        code, output = run_schemathesis(args, name, token, report_dir)
        if code != 0:
            failed_runs.append(name)
        by_check.update(failures_by_check(output))
    after = status_counts(args.metrics)
    answered = after - before
    total = sum(answered.values())
    server_errors = sum(n for s, n in answered.items() if s.startswith("5"))
    print(f"\n==> summary: {total} requests in {time.monotonic() - started:.0f}s, by status: {dict(sorted(answered.items()))}")
    print(f"5xx answers: {server_errors}; failures by check: {dict(by_check) or 'none'}")
    print(f"runs that failed: {failed_runs or 'none'}; reports (JUnit, output) in {report_dir}")
    sys.exit(1 if failed_runs or server_errors else 0)


if __name__ == "__main__":
    main()
