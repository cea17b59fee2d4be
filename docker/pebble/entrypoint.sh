#!/bin/sh
# Pebble for the `acme` compose profile (docker-compose.yml). At each start:
# 1. a TLS certificate for the name `pebble` under a root of its own (keys in /run/pebble, this
#    container's only); the root goes to the acme-trust volume: route-worker's tls.acme.ca_file;
# 2. pebble, issuing certificates valid for $CERTIFICATE_VALIDITY_SECS, validating http-01 for
#    real (Docker's DNS resolves route-worker's name to its container);
# 3. once its management API answers: the root and intermediate it issues under (new at every
#    start of pebble) into acme-trust: client-ca.pem (the dev CA and them, dispatch-api's
#    tls.client_ca_file) and issuer-name (the intermediate's subject, for the operator's
#    `dns_name` binding). The healthcheck waits for client-ca.pem.
# The management API listens inside this container only: it also serves the CA's private keys.
set -eu
TRUST=/acme-trust
OWN=/run/pebble
rm -f "$TRUST/client-ca.pem" "$TRUST/issuer-name"

# A year: a development stack left up for weeks still reaches its CA.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
  -subj "/CN=Pebble TLS Root (compose)" -keyout "$OWN/root.key" -out "$OWN/root.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=pebble" \
  -keyout "$OWN/tls.key" -out "$OWN/tls.csr" 2>/dev/null
printf '%s\n' "subjectAltName=DNS:pebble" "extendedKeyUsage=serverAuth" \
  "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" > "$OWN/tls.ext"
openssl x509 -req -in "$OWN/tls.csr" -CA "$OWN/root.pem" -CAkey "$OWN/root.key" \
  -CAcreateserial -days 365 -extfile "$OWN/tls.ext" -out "$OWN/tls.pem" 2>/dev/null
rm -f "$OWN/root.key"
cp "$OWN/root.pem" "$TRUST/pebble-tls-root.pem.new" && mv "$TRUST/pebble-tls-root.pem.new" "$TRUST/pebble-tls-root.pem"

cat > "$OWN/config.json" <<JSON
{"pebble": {
  "listenAddress": "0.0.0.0:14000", "managementListenAddress": "127.0.0.1:15000",
  "certificate": "$OWN/tls.pem", "privateKey": "$OWN/tls.key",
  "httpPort": 5002, "tlsPort": 5001, "ocspResponderURL": "",
  "externalAccountBindingRequired": false,
  "certificateValidityPeriod": ${CERTIFICATE_VALIDITY_SECS:-300}
}}
JSON
# Validation at once, not after pebble's random sleep of up to 15 s.
PEBBLE_VA_NOSLEEP=1 pebble -config "$OWN/config.json" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null' TERM INT

get() { curl -sSf --max-time 2 --cacert "$OWN/root.pem" --resolve pebble:15000:127.0.0.1 "https://pebble:15000$1"; }
ready=
for _ in $(seq 1 60); do
  if get /roots/0 > "$OWN/ca-root.pem" 2>/dev/null && get /intermediates/0 > "$OWN/ca-intermediate.pem"; then
    cat /dev-ca/ca.pem "$OWN/ca-root.pem" "$OWN/ca-intermediate.pem" > "$TRUST/client-ca.pem.new"
    openssl x509 -in "$OWN/ca-intermediate.pem" -noout -subject -nameopt RFC2253 \
      | sed 's/^subject=//' > "$TRUST/issuer-name"
    mv "$TRUST/client-ca.pem.new" "$TRUST/client-ca.pem"
    echo "pebble ready: issuing under $(cat "$TRUST/issuer-name")"
    ready=1
    break
  fi
  if ! kill -0 $pid 2>/dev/null; then break; fi
  sleep 1
done
if [ -z "$ready" ]; then
  echo "pebble's management API did not answer within 60 s; stopping" >&2
  kill -TERM $pid 2>/dev/null || true
  exit 1
fi
wait $pid
