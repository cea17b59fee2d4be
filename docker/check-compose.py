#!/usr/bin/env python3
"""Static checks of docker-compose.yml, for machines where no Docker engine answers (and before
the live run where one does): it parses, and the invariants docs/operator-guide.md promises hold."""
import sys

import yaml

with open(sys.argv[1] if len(sys.argv) > 1 else "docker-compose.yml") as f:
    compose = yaml.safe_load(f)

problems = []
services = compose.get("services", {})
for name in ("pki", "dispatch-api", "route-worker"):
    if name not in services:
        problems.append(f"service {name} is missing")

def mounts(service):
    return [v if isinstance(v, str) else f"{v.get('source')}:{v.get('target')}" for v in services.get(service, {}).get("volumes", [])]

for service in ("dispatch-api", "route-worker"):
    secret_mounts = [m for m in mounts(service) if "/run/secrets" in m]
    if not secret_mounts:
        problems.append(f"{service}: no secrets mounted under /run/secrets")
    for m in secret_mounts:
        if not m.endswith(":ro"):
            problems.append(f"{service}: secrets mount {m} is not read-only")
    for m in mounts(service):
        if ".dev-pki" in m or m.startswith("./") or m.startswith("/"):
            problems.append(f"{service}: bind-mounts host path {m}; secrets come from volumes")

api = services.get("dispatch-api", {})
if not any(m.startswith("api-data:/var/lib/dispatch-api") for m in mounts("dispatch-api")):
    problems.append("dispatch-api: the database is not on the named volume api-data")
if "healthcheck" not in api:
    problems.append("dispatch-api: no healthcheck")
worker_deps = services.get("route-worker", {}).get("depends_on", {})
if not isinstance(worker_deps, dict) or worker_deps.get("dispatch-api", {}).get("condition") != "service_healthy":
    problems.append("route-worker: does not wait for dispatch-api to be healthy")
api_deps = api.get("depends_on", {})
if not isinstance(api_deps, dict) or api_deps.get("pki", {}).get("condition") != "service_completed_successfully":
    problems.append("dispatch-api: does not wait for the pki one-shot")
# Every published port is on the host's loopback only (the HTTPS listener and the plain-HTTP
# operations listener alike).
for name, service in services.items():
    for port in service.get("ports", []):
        text = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port.get('published')}:{port.get('target')}"
        if not text.startswith("127.0.0.1:"):
            problems.append(f"{name}: port {text} is published beyond the host's 127.0.0.1")
pki_env = services.get("pki", {}).get("environment", {})
if isinstance(pki_env, dict) and str(pki_env.get("OPERATOR_UID", "")).endswith(":-0}"):
    problems.append("pki: OPERATOR_UID defaults to root; the operator's files must belong to the invoking user")
if problems:
    print("docker-compose.yml:\n  " + "\n  ".join(problems))
    sys.exit(1)
print("docker-compose.yml: static checks passed")
