#!/usr/bin/env bash
# Benchmark: dispatch-api beside nginx and HAProxy doing the same TLS work (and etcd the same
# durable work), on 127.0.0.1, printing one table (figures 1-4, the flood row, figure 1 on
# PostgreSQL), the same-work anchor, route-worker across ACME renewals and the scaling figures.
# Not a test: it measures and exits. Installs what it needs (nginx from Debian, oha from
# crates.io), makes its PKI with devpki, builds release binaries, and stops every process it
# started, even on failure. RUNS (default 5) runs of SECONDS (default 10) per figure.
# Usage: bench/run.sh [--quick] [--providers] [--flood] [--registry] [--postgres] [--ops] [--etcd] [--acme] [--against BINARY]
#   --quick: 3 runs of 5 s, no scaling figures, a 10 s flood
#   --flood: only the flood figure (anonymous 8 KiB-path requests beside plans; FLOOD_SECONDS)
#   --registry: only the registry-scale figure (REGISTRY_CLIENTS, default a million)
#   --postgres: only figure 1 on SQLite, on PostgreSQL, and on two replicas behind HAProxy
#   --ops: only figure 1 beside /readyz and /metrics probes, 1024 anonymous HTTP/2
#     connections' memory (H2_HOLDERS), and admin changes tried against 20 000 live
#     certificates (TRYOUT_CLIENTS)
#   --etcd: only figure 1 against etcd's durable put of the same plan over keep-alive mTLS (the
#     same-work anchor beside the static peers)
#   --acme: only route-worker renewing its certificate over ACME (pebble) against route-worker on
#     a fixed certificate, plans per second in alternating windows (ACME_SECONDS, default 60)
#   --against BINARY: only figure 1 of this build against another build of dispatch-api (a copy
#     of target/release/dispatch-api made before a change), runs alternating
#   --providers: also ring against aws-lc-rs as the rustls provider (builds a second binary)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nginx >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }
command -v openssl >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null; }
command -v haproxy >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >/dev/null; }
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }
python3 -c "import h2, cryptography" 2>/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-h2 python3-cryptography >/dev/null; }
command -v etcd >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >/dev/null; }
command -v pebble >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pebble >/dev/null; }
command -v oha >/dev/null 2>&1 || cargo install oha --locked
cargo build --release --locked --bin dispatch-api --bin devpki --bin route-worker
if [[ " $* " == *" --providers "* ]]; then
    cargo build --release --locked -p dispatch-api --features aws-lc-rs --target-dir target/aws-lc --bin dispatch-api
fi
# Debian's Python, whose python3-h2 and python3-cryptography the figures use (not a pyenv one).
exec /usr/bin/python3 bench/bench.py "$@"
