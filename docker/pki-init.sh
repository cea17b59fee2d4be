#!/bin/sh
# The compose demo's one-shot PKI service. Runs `devpki` into the `pki` volume when it is empty,
# then hands each service only what it needs, each in its own volume, mounted read-only:
#   api-secrets:     dispatch-api.pem/.key, ca.pem, route-worker.api-key.sha256
#   worker-secrets:  ca.pem, route-worker.api-key   (route-worker.pem/.key: see `give-worker-cert`)
#   operator (bind mount ./.dev-pki/compose-operator on the host): operator.pem/.key, ca.pem
#   dev-ca:          ca.pem alone (pebble's, in the acme profile: nothing secret beside it)
# Usage: pki-init [init | give-worker-cert]. Dev PKI only; production uses the team's CA.
set -eu
PKI=/pki
OWNER=10001:10001
# The operator's files belong to the owner of the checkout (the compose file, mounted at
# /owner-reference) unless OPERATOR_UID/OPERATOR_GID are set; root only as a last resort.
reference_owner() { stat -c "$1" /owner-reference 2>/dev/null || echo 0; }
OPERATOR_OWNER=${OPERATOR_UID:-$(reference_owner %u)}:${OPERATOR_GID:-$(reference_owner %g)}

put() { # put FILE DIR MODE OWNER
  cp "$PKI/$1" "$2/$1"
  chmod "$3" "$2/$1"
  chown "$4" "$2/$1"
}

case "${1:-init}" in
  init)
    devpki init --dir "$PKI" --if-absent
    chmod 0700 "$PKI"
    put ca.pem /api-secrets 0644 "$OWNER"
    put dispatch-api.pem /api-secrets 0644 "$OWNER"
    put dispatch-api.key /api-secrets 0600 "$OWNER"
    put route-worker.api-key.sha256 /api-secrets 0644 "$OWNER"
    put ca.pem /worker-secrets 0644 "$OWNER"
    put ca.pem /dev-ca 0644 "$OWNER"
    put route-worker.api-key /worker-secrets 0600 "$OWNER"
    put ca.pem /operator 0644 "$OPERATOR_OWNER"
    put operator.pem /operator 0644 "$OPERATOR_OWNER"
    put operator.key /operator 0600 "$OPERATOR_OWNER"
    echo "dev PKI ready; operator files in ./.dev-pki/compose-operator"
    ;;
  give-worker-cert)
    put route-worker.pem /worker-secrets 0644 "$OWNER"
    put route-worker.key /worker-secrets 0600 "$OWNER"
    echo "route-worker's certificate is in its secrets volume"
    ;;
  *)
    echo "usage: pki-init [init | give-worker-cert]" >&2
    exit 2
    ;;
esac
