#!/usr/bin/env bash
# Live check of the real Dockerfile and docker-compose.yml: makes the base images locally when no
# registry can be reached, vendors the crates, builds, `up -d`, and checks that both services
# become healthy, that route-worker's plan is accepted with its key, and that the operator's flip
# through the admin endpoint works from the host. Then the `ha` profile: two replicas on
# PostgreSQL behind HAProxy, route-worker's plans through the balancer, and a flip made through
# one replica seen by the other. Last the `acme` profile: route-worker's certificate from pebble
# over ACME (real http-01), bound by its DNS name, its plans accepted, renewed, and accepted again
# over the renewed certificate. Between the two, the operator guide's compose walkthrough
# (docs/operator-guide.md) is extracted and run as written, with dispatchctl from this
# workspace (built here if it is not). Always ends with `down -v`. Bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."

COMPOSE=(docker-compose)
if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose); fi
export COMPOSE_PROJECT_NAME=dispatch-smoke
API_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export API_PORT
OP=.dev-pki/compose-operator
export OPERATOR_UID=$(id -u) OPERATOR_GID=$(id -g)

cleanup() {
  status=$?
  if [ $status -ne 0 ]; then
    echo "== compose smoke failed; service logs:"
    timeout 60 "${COMPOSE[@]}" --profile single --profile ha --profile acme logs --no-color --tail=80 2>/dev/null || true
  fi
  timeout 180 "${COMPOSE[@]}" --profile single --profile ha --profile acme down -v --remove-orphans >/dev/null 2>&1 || true
  rm -rf "$OP"
  exit $status
}
trap cleanup EXIT

deadline() { # seconds, description, command... (each try bounded: curl's --max-time, timeout)
  local limit=$1 what=$2; shift 2
  local end=$((SECONDS + limit))
  while [ "$SECONDS" -lt "$end" ]; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "timed out after ${limit}s: $what"; return 1
}
# Whether route-worker moved a stop file to done/: every plan of it accepted (a refused one
# sends the file to failed/).
file_done() { timeout 20 docker exec "$worker" test -f "/work/inbox/done/$1"; }

if [ -z "${SKIP_LOCAL_BASE_IMAGES:-}" ]; then
  echo "== base images (made locally: this machine can pull none)"
  docker/local-base-images.sh
  echo "== vendored crates (offline build)"
  cargo vendor --locked vendor >/dev/null  # kept in step with Cargo.lock
fi
echo "== build"
timeout 1800 "${COMPOSE[@]}" --profile single --profile ha --profile acme build
echo "== up"
mkdir -p "$OP"
timeout 300 "${COMPOSE[@]}" up -d

api=$("${COMPOSE[@]}" ps -q dispatch-api)
health() { [ "$(timeout 20 docker inspect -f '{{.State.Health.Status}}' "$api")" = healthy ]; }
deadline 120 "dispatch-api healthy" health
worker=$("${COMPOSE[@]}" ps -q route-worker)
running() { [ "$(timeout 20 docker inspect -f '{{.State.Running}}' "$worker")" = true ]; }
deadline 60 "route-worker running" running
echo "both services up"

ADMIN=(curl -sS --fail --max-time 10 --cert "$OP/operator.pem" --key "$OP/operator.key" --cacert "$OP/ca.pem")
API=https://localhost:$API_PORT

echo "== route-worker submits a plan with its key"
timeout 60 docker cp examples/stops.csv "$worker:/work/inbox/stops.csv"
key_used() {
  "${ADMIN[@]}" "$API/admin/migration" \
    | jq -e '.clients[] | select(.name == "route-worker") | .usage.api_key.requests_in_window >= 2'
}
deadline 60 "route-worker's plans accepted with its key" key_used
deadline 30 "route-worker's stop file done" file_done stops.csv
"${ADMIN[@]}" "$API/admin/clients/route-worker" | jq -c '{name, mode, usage: .usage.api_key.requests_in_window}'

echo "== the operator flips route-worker to dual from the host"
"${ADMIN[@]}" -X PUT "$API/admin/clients/route-worker/mode" \
  -H 'content-type: application/json' -d '{"mode":"dual","reason":"compose smoke test"}' | jq -c .
"${ADMIN[@]}" "$API/admin/clients/route-worker" | jq -e '.mode == "dual"' >/dev/null

echo "== no secret in the image"
for image in dispatch-mtls:local dispatch-pebble:local; do
  # The listing must come back whole (a run that failed would list nothing), and list nothing.
  found=$(timeout 120 docker run --rm --entrypoint sh "$image" -c \
    'find / -xdev \( -name "*.key" -o -name "*key*.pem" -o -name "*.p12" -o -name "*.api-key" -o -name "*.db" \) -print 2>/dev/null; echo "-- listed"') \
    || { echo "could not list the files of the image $image"; exit 1; }
  case "$found" in
    *"-- listed") ;;
    *) echo "the listing of the image $image did not finish"; exit 1 ;;
  esac
  if [ "$found" != "-- listed" ]; then
    echo "the image $image holds key or database files:"; echo "${found%-- listed}"; exit 1
  fi
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

timeout 180 "${COMPOSE[@]}" --profile single down -v --remove-orphans >/dev/null 2>&1

echo "== the operator guide's compose walkthrough, run as written (docs/operator-guide.md)"
# dispatchctl from the workspace's build, put on PATH as the README does (under .ci/run,
# scripts/test built it; a CI job of its own builds it here).
PATH="$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)/debug:$PATH"
command -v dispatchctl >/dev/null || cargo build --locked --bin dispatchctl
walkthrough=$(mktemp)
python3 - docs/operator-guide.md > "$walkthrough" <<'PY'
import sys
text = open(sys.argv[1]).read()
marker = "<!-- compose-walkthrough"
start = text.index("```sh\n", text.index(marker)) + len("```sh\n")
print(text[start:text.index("```", start)])
PY
mkdir -p "$OP"
timeout 900 bash -euo pipefail "$walkthrough"
rm -f "$walkthrough"
echo "the walkthrough ran as written"

echo "== the ha profile: two replicas on PostgreSQL behind HAProxy"
REPLICA_A_PORT=$(free_port) REPLICA_B_PORT=$(free_port)
export REPLICA_A_PORT REPLICA_B_PORT
mkdir -p "$OP"
timeout 300 "${COMPOSE[@]}" --profile ha up -d
for replica in dispatch-api-a dispatch-api-b; do
  id=$("${COMPOSE[@]}" --profile ha ps -q "$replica")
  replica_health() { [ "$(timeout 20 docker inspect -f '{{.State.Health.Status}}' "$1")" = healthy ]; }
  deadline 120 "$replica healthy" replica_health "$id"
done
worker=$("${COMPOSE[@]}" --profile ha ps -q route-worker-ha)
deadline 60 "route-worker-ha running" running
echo "both replicas healthy behind the balancer"

echo "== route-worker's plans through the balancer, counted across both replicas"
timeout 60 docker cp examples/stops.csv "$worker:/work/inbox/stops.csv"
deadline 90 "route-worker's plans accepted through the balancer" key_used
deadline 30 "route-worker-ha's stop file done" file_done stops.csv

echo "== a flip through replica A, seen by replica B"
A=https://localhost:$REPLICA_A_PORT B=https://localhost:$REPLICA_B_PORT
"${ADMIN[@]}" -X PUT "$A/admin/clients/route-worker/mode" \
  -H 'content-type: application/json' -d '{"mode":"dual","reason":"compose ha smoke test"}' | jq -c .
seen_by_b() { "${ADMIN[@]}" "$B/admin/clients/route-worker" | jq -e '.mode == "dual"'; }
deadline 5 "replica B sees the flip" seen_by_b
echo "replica B sees route-worker in dual"
timeout 180 "${COMPOSE[@]}" --profile ha down -v --remove-orphans >/dev/null 2>&1

echo "== the acme profile: route-worker's certificate from pebble over ACME, renewed"
# 90-second certificates: renewed when a third is left, within the bounds below.
export ACME_CERTIFICATE_LIFETIME_SECS=90
mkdir -p "$OP"
timeout 300 "${COMPOSE[@]}" --profile acme up -d
api=$("${COMPOSE[@]}" --profile acme ps -q dispatch-api-acme)
deadline 120 "dispatch-api-acme healthy" health
worker=$("${COMPOSE[@]}" --profile acme ps -q route-worker-acme)
deadline 60 "route-worker-acme running" running
issuer=$(timeout 60 "${COMPOSE[@]}" --profile acme exec -T pebble cat /acme-trust/issuer-name)
echo "the operator binds route-worker-acme by its DNS name under $issuer"
jq -n --arg issuer "$issuer" '{name: "route-worker-acme", mode: "mtls", scopes: ["plans:submit"],
    bindings: [{issuer: $issuer, dns_name: "worker.dispatch.internal"}],
    reason: "compose smoke test: ACME"}' \
  | "${ADMIN[@]}" -X POST "$API/admin/clients" -H 'content-type: application/json' -d @- \
  | jq -c '{name, mode, bindings}'
acme_client() { "${ADMIN[@]}" "$API/admin/clients/route-worker-acme"; }
timeout 60 docker cp examples/stops.csv "$worker:/work/inbox/stops.csv"
cert_used() { acme_client | jq -e '.usage.certificate.requests_in_window >= 2'; }
deadline 120 "route-worker-acme's plans accepted over its ACME certificate" cert_used
deadline 30 "route-worker-acme's stop file done" file_done stops.csv
first=$(acme_client | jq -r .usage.certificate.last_certificate_fingerprint)
[[ $first =~ ^[0-9a-f]{64}$ ]] || { echo "no certificate fingerprint seen for route-worker-acme: $first"; exit 1; }
acme_client | jq -c '{name, renewal, certificate: .usage.certificate.last_certificate_fingerprint}'
renewed() { timeout 20 docker logs "$worker" 2>&1 | grep "renewed the certificate over ACME" >/dev/null; }
deadline 150 "route-worker-acme renews its certificate" renewed
timeout 60 docker cp examples/stops.csv "$worker:/work/inbox/stops-renewed.csv"
over_renewed() {
  acme_client | jq -e --arg first "$first" '.usage.certificate.requests_in_window >= 4
    and .usage.certificate.last_certificate_fingerprint != $first'
}
deadline 120 "route-worker-acme's next plans accepted over the renewed certificate" over_renewed
deadline 30 "route-worker-acme's second stop file done" file_done stops-renewed.csv
acme_client | jq -c '{name, renewal, certificate: .usage.certificate.last_certificate_fingerprint}'
echo "route-worker-acme renewed its certificate, and its plans are accepted over it"
echo "compose smoke test passed"
