#!/usr/bin/env python3
"""dispatch-api beside nginx and HAProxy on 127.0.0.1, figure by figure, the servers' order
rotating run by run. One table holds figures 1-4, the flood row (5: plans beside anonymous
refusals, every server flooded alike) and figure 1 on PostgreSQL with one and two replicas (6, 7:
against the peers' figure 1, since they store nothing anywhere), each against the best peer.

Called by bench/run.sh (which installs nginx and oha and builds release binaries). Prints a
table and exits; every process it started is stopped, also on failure. Environment: RUNS
(default 5), BENCH_SECONDS (default 10), CONNECTIONS (default 50), DURABILITY (full|normal).
"""
import glob
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

QUICK = "--quick" in sys.argv
PROVIDERS = "--providers" in sys.argv
# --flood: only the flood figure (it is also part of the full run).
FLOOD_ONLY = "--flood" in sys.argv
# --registry: only the registry-scale figure (a million registered clients; also in the full run).
REGISTRY_ONLY = "--registry" in sys.argv
# --postgres: only the PostgreSQL figure (figure 1 on SQLite, on PostgreSQL with one replica, and
# with two replicas behind HAProxy; also in the full run).
POSTGRES_ONLY = "--postgres" in sys.argv
# --ops: only the operations figures (plans beside /readyz and /metrics probes; the memory 1024
# anonymous HTTP/2 connections can take; also in the full run).
OPS_ONLY = "--ops" in sys.argv
# --etcd: only figure 1 against etcd's durable put of the same plan (also in the full run).
ETCD_ONLY = "--etcd" in sys.argv
# --against BINARY: only figure 1 of this build's dispatch-api against another build of it (a
# copy of target/release/dispatch-api made before a change), runs alternating: a change to the
# plan's path measured alone, in the same minutes, as this machine drifts between them.
AGAINST = sys.argv[sys.argv.index("--against") + 1] if "--against" in sys.argv else None
# --acme: only route-worker across ACME renewals against route-worker on a fixed certificate
# (also in the full run).
ACME_ONLY = "--acme" in sys.argv
# pebble's certificates' lifetime: renewed when a third is left, so every ~20 s.
ACME_LIFETIME = int(os.environ.get("ACME_LIFETIME_SECS", 30))
ACME_SECONDS = int(os.environ.get("ACME_SECONDS", 20 if QUICK else 60))
# Connections of the anonymous HTTP/2 memory figure, spread over networks of 128 (the default
# limits.unproven.network_max_connections), each network a /24 of 127.0.0.0/8.
H2_HOLDERS = int(os.environ.get("H2_HOLDERS", 1024))
# Certificate clients of the tryout figure, each with a certificate it presented.
TRYOUT_CLIENTS = int(os.environ.get("TRYOUT_CLIENTS", 20_000))
REGISTRY_CLIENTS = int(os.environ.get("REGISTRY_CLIENTS", 1_000_000))
FLOOD_SECONDS = int(os.environ.get("FLOOD_SECONDS", 10 if QUICK else 60))
RUNS = int(os.environ.get("RUNS", 3 if QUICK else 5))
SECONDS = int(os.environ.get("BENCH_SECONDS", 5 if QUICK else 10))
CONNECTIONS = int(os.environ.get("CONNECTIONS", 50))
# Figure 4's connections. oha's TLS client (rustls) keeps at most 8 session tickets per server:
# with more connections than that opening at once, the rest start without a ticket whatever the
# server does. dispatch-api answers plans a commit group at a time, so its connections end, and
# open again, in bursts: at 50 connections 28 % of them found no ticket in the run of
# 2026-12-06 (nginx and HAProxy, answering each at once, 0.4 %). At 8, figure 4 measures
# resumption for every server; figure 4b keeps the 50.
RESUME_CONNECTIONS = int(os.environ.get("RESUME_CONNECTIONS", 8))
# `full` (fsync per group commit: survives power loss) or `normal` (survives a process crash).
DURABILITY = os.environ.get("DURABILITY", "full")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")
AWS_LC_BIN = os.path.join(ROOT, "target", "aws-lc", "release", "dispatch-api")
TICKS = os.sysconf("SC_CLK_TCK")

work = tempfile.mkdtemp(prefix="dispatch-bench-")
children = []
removed_at_exit = [work]


def cleanup():
    for proc in children:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.time() + 10
    for proc in children:
        try:
            proc.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()
    for path in removed_at_exit:
        shutil.rmtree(path, ignore_errors=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pki(name):
    return os.path.join(work, "pki", name)


def setup_pki():
    subprocess.run([os.path.join(BIN, "devpki"), "init", "--dir", os.path.join(work, "pki"), "--days", "2"],
                   check=True, stdout=subprocess.DEVNULL)
    stops = [{"id": f"stop-{i}", "latitude": 52.0 + i * 0.01, "longitude": 4.0 + i * 0.01} for i in range(20)]
    with open(os.path.join(work, "plan.json"), "w") as f:
        json.dump({"route_id": "bench", "team": "north", "planned_date": "2026-11-23", "stops": stops}, f)


def clients_file(count):
    """route-worker (dual, key and SPIFFE binding), the operator, and count-2 other clients."""
    path = os.path.join(work, f"clients-{count}.toml")
    if os.path.exists(path):
        return path
    key_hash = open(pki("route-worker.api-key.sha256")).read().strip()
    issuer = "CN=Dispatch Dev Internal CA, O=Dispatch Dev"
    with open(path, "w") as f:
        f.write(f'[[clients]]\nname = "route-worker"\nmode = "dual"\nscopes = ["plans:submit"]\n'
                f'api_key_sha256 = "{key_hash}"\n[[clients.bindings]]\nissuer = "{issuer}"\n'
                f'spiffe_id = "spiffe://dispatch.internal/route-worker"\n')
        # The operator, for the admin calls of the registry figure.
        f.write(f'[[clients]]\nname = "operator"\nmode = "mtls"\nscopes = ["admin"]\n'
                f'[[clients.bindings]]\nissuer = "{issuer}"\nsubject_cn = "operator"\n')
        for n in range(count - 2):
            f.write(f'[[clients]]\nname = "client-{n}"\nmode = "dual"\nscopes = ["plans:submit"]\n'
                    f'api_key_sha256 = "{os.urandom(32).hex()}"\n[[clients.bindings]]\nissuer = "{issuer}"\n'
                    f'subject_cn = "client-{n}"\n')
    return path


class Server:
    def __init__(self, proc, port, pids_fn, name, handshakes=None):
        self.proc, self.port, self.pids, self.name = proc, port, pids_fn, name
        # Counts of full and resumed handshakes so far, where the server tells them.
        self.handshakes = handshakes

    def cpu_ticks(self):
        total = 0
        for pid in self.pids():
            try:
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except OSError:
                pass
        return total

    def peak_rss_mb(self):
        total = 0
        for pid in self.pids():
            try:
                for line in open(f"/proc/{pid}/status"):
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024


def start_dispatch(name, resumption=True, clients=10, crl=None, database=None, binary=None, database_url=None,
                   client_ca=None, clients_path=None):
    port, ops = free_port(), free_port()
    config = os.path.join(work, f"config-{name}")
    os.makedirs(config, exist_ok=True)
    database = database or os.path.join(work, f"{name}.db")
    crl_files = f'["{crl}"]' if crl else "[]"
    with open(os.path.join(config, "base.toml"), "w") as f:
        f.write(f"""[server]
host = "127.0.0.1"
port = {port}
ops_host = "127.0.0.1"
ops_port = {ops}
[tls]
cert_file = "{pki('dispatch-api.pem')}"
key_file = "{pki('dispatch-api.key')}"
client_ca_file = "{client_ca or pki('ca.pem')}"
client_auth = "optional"
crl_files = {crl_files}
session_resumption = {str(resumption).lower()}
[database]
path = "{database}"
synchronous = "{DURABILITY}"
{f'url = "{database_url}"' if database_url else ""}
[bootstrap]
clients_file = "{clients_path or clients_file(clients)}"
[telemetry]
format = "json"
filter = "info"
""")
    log = open(os.path.join(work, f"{name}.log"), "ab")
    proc = subprocess.Popen([binary or os.path.join(BIN, "dispatch-api")], env={**os.environ, "DISPATCH_CONFIG_DIR": config},
                            stdout=log, stderr=log)
    children.append(proc)
    deadline = time.time() + 300
    while True:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{ops}/readyz", timeout=1).status == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit(f"dispatch-api ({name}) did not start; see {log.name}")
        time.sleep(0.1)
    server = Server(proc, port, lambda: [proc.pid], f"dispatch-api/{name}")
    server.ops = ops
    server.handshakes = lambda: handshake_kinds(server)
    return server


def start_postgres():
    """A PostgreSQL server of Debian's package in the work dir (as `postgres` when run as root),
    with its defaults for durability: fsync on, synchronous_commit on."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins:
        raise SystemExit("no PostgreSQL binaries (Debian: apt-get install postgresql)")
    bin_dir, port = bins[-1], free_port()
    # Its own temp dir: the work dir is private to this user, and the server may run as another.
    home = tempfile.mkdtemp(prefix="dispatch-bench-pg-")
    removed_at_exit.append(home)
    as_user = []
    if os.geteuid() == 0:
        shutil.chown(home, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(home, "data")
    subprocess.run(as_user + [f"{bin_dir}/initdb", "-D", data, "-U", "dispatch", "--auth", "trust"],
                   check=True, stdout=subprocess.DEVNULL)
    log = os.path.join(home, "server.log")
    proc = subprocess.Popen(as_user + [f"{bin_dir}/postgres", "-D", data, "-h", "127.0.0.1", "-p", str(port),
                                       "-k", home, "-c", "max_connections=200"],
                            stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    children.append(proc)
    for _ in range(100):
        if subprocess.run([f"{bin_dir}/pg_isready", "-h", "127.0.0.1", "-p", str(port)],
                          stdout=subprocess.DEVNULL).returncode == 0:
            break
        time.sleep(0.1)
    subprocess.run([f"{bin_dir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "dispatch", "dispatch"], check=True)

    server = Server(proc, port, lambda: descendants(proc.pid), "postgresql")
    server.url = f"postgres://dispatch@127.0.0.1:{port}/dispatch"
    return server


def descendants(pid):
    """`pid` and every process below it (PostgreSQL's backends, say)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        children_of = subprocess.run(["pgrep", "-P", str(current)], capture_output=True, text=True).stdout.split()
        queue += [int(c) for c in children_of]
    return found


def start_haproxy(backends):
    """HAProxy (Debian's package) in TCP mode in front of `backends`, TLS passed through."""
    port = free_port()
    conf = os.path.join(work, "haproxy.cfg")
    servers = "\n".join(f"    server r{i} 127.0.0.1:{b.port}" for i, b in enumerate(backends))
    with open(conf, "w") as f:
        f.write(f"""global
    maxconn 4000
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend dispatch
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
{servers}
""")
    proc = subprocess.Popen(["haproxy", "-db", "-f", conf], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(work, "haproxy.log"), "wb"))
    children.append(proc)
    time.sleep(0.5)
    if proc.poll() is not None:
        raise SystemExit("haproxy did not start; see haproxy.log")
    return Server(proc, port, lambda: [proc.pid], "haproxy")


def postgres_figure():
    """Figure 1 on SQLite, on PostgreSQL with one replica, and with two replicas behind HAProxy,
    alternating run by run; CPU per request of dispatch-api (all replicas), PostgreSQL and
    HAProxy each."""
    print("\nPostgreSQL (figure 1: keep-alive mTLS, a durable plan of 20 stops):", flush=True)
    postgres = start_postgres()
    sqlite = start_dispatch("pg-baseline")
    one = start_dispatch("pg-one", database_url=postgres.url)
    a = start_dispatch("pg-a", database_url=postgres.url)
    b = start_dispatch("pg-b", database_url=postgres.url)
    balancer = start_haproxy([a, b])
    pair = Server(None, balancer.port, lambda: a.pids() + b.pids(), "dispatch-api x2")
    setups = [("SQLite (one process)", sqlite, []), ("PostgreSQL, one replica", one, [postgres]),
              ("PostgreSQL, two replicas + HAProxy", pair, [postgres, balancer])]
    samples = {label: [] for label, *_ in setups}
    others = {label: {o.name: [] for o in extra} for label, _, extra in setups}
    for run in range(RUNS):
        order = setups if run % 2 == 0 else list(reversed(setups))
        for label, server, extra in order:
            before = {o.name: o.cpu_ticks() for o in extra}
            result = oha(server, cert=True)
            requests = result["rps"] * SECONDS
            result["cpu_total_ms_per_req"] = result["cpu_ms_per_req"]
            for o in extra:
                cpu = (o.cpu_ticks() - before[o.name]) / TICKS * 1000 / max(requests, 1)
                others[label][o.name].append(cpu)
                result["cpu_total_ms_per_req"] += cpu
            samples[label].append(result)
    base = summary(samples[setups[0][0]], "rps")[0]
    for label, *_ in setups:
        rps, low, high = summary(samples[label], "rps")
        extra = "".join(f", {name} {statistics.median(v):.3f}" for name, v in others[label].items())
        print(f"  {label:36} {rps:>8.0f} req/s ({low:.0f}-{high:.0f}, {rps / base:.2f}x SQLite); "
              f"p99 {summary(samples[label], 'p99_ms')[0]:.1f} ms; cpu ms/req: dispatch-api "
              f"{summary(samples[label], 'cpu_ms_per_req')[0]:.3f}{extra}", flush=True)
    for server in (sqlite, one, a, b):
        stop(server)
    balancer.proc.send_signal(signal.SIGTERM)
    postgres.proc.send_signal(signal.SIGTERM)
    return {label: samples[label] for label, *_ in setups[1:]}


def handshake_kinds(server):
    """The server's own count of full and resumed handshakes (from /metrics)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.ops}/metrics", timeout=5).read().decode()
    kinds = dict(re.findall(r'dispatch_tls_handshakes_total\{kind="(\w+)"\} (\d+)', text))
    return {k: int(v) for k, v in kinds.items()}


def stop(server):
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(30)


def start_nginx():
    ports = {"resume": free_port(), "fresh": free_port(), "full": free_port(), "key": free_port()}
    key = open(pki("route-worker.api-key")).read().strip()
    tls = f"""ssl_protocols TLSv1.3; ssl_certificate {pki('dispatch-api.pem')};
        ssl_certificate_key {pki('dispatch-api.key')};"""
    answer = """location = /api/dispatch-plans {
            if ($request_method != POST) { return 405; }
            default_type application/json;
            return 202 '{"id":"00000000-0000-4000-8000-000000000000","status":"accepted"}';
        }"""
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes auto;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
daemon off;
events {{ worker_connections 4096; }}
http {{
    access_log {work}/nginx-access.log;
    log_format reused '$ssl_session_reused';
    keepalive_requests 1000000;
    map_hash_bucket_size 128;
    # The flood row's anonymous GETs carry 8 KiB paths: answered 401, not 414.
    large_client_header_buffers 4 16k;
    map $http_x_api_key $key_ok {{ default 0; "{key}" 1; }}
    server {{
        listen 127.0.0.1:{ports['resume']} ssl;
        {tls}
        ssl_client_certificate {pki('ca.pem')}; ssl_verify_client optional;
        ssl_session_tickets on; ssl_session_cache shared:bench:10m;
        {answer}
        location / {{ return 401; }}
    }}
    # Figure 4: the resumption server's settings, one log line per request (one per connection
    # in that figure) saying whether its session was resumed.
    server {{
        listen 127.0.0.1:{ports['fresh']} ssl;
        {tls}
        ssl_client_certificate {pki('ca.pem')}; ssl_verify_client optional;
        ssl_session_tickets on; ssl_session_cache shared:bench:10m;
        access_log {work}/nginx-fresh.log reused;
        {answer}
    }}
    server {{
        listen 127.0.0.1:{ports['full']} ssl;
        {tls}
        ssl_client_certificate {pki('ca.pem')}; ssl_verify_client optional;
        ssl_session_tickets off; ssl_session_cache off;
        {answer}
    }}
    server {{
        listen 127.0.0.1:{ports['key']} ssl;
        {tls}
        ssl_verify_client off;
        location = /api/dispatch-plans {{
            if ($key_ok = 0) {{ return 401; }}
            default_type application/json;
            return 202 '{{"id":"00000000-0000-4000-8000-000000000000","status":"accepted"}}';
        }}
    }}
}}
""")
    stderr = open(os.path.join(work, "nginx-stderr.log"), "wb")
    proc = subprocess.Popen(["nginx", "-c", conf, "-p", work], stdout=subprocess.DEVNULL, stderr=stderr)
    children.append(proc)
    time.sleep(1)
    if proc.poll() is not None:
        error = open(os.path.join(work, "nginx-stderr.log")).read()
        raise SystemExit(f"nginx did not start: {error[-2000:]}")

    def pids():
        try:
            kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        except OSError:
            kids = []
        return [proc.pid] + [int(k) for k in kids]

    def handshakes():
        # `r` for a resumed session, `.` for a full handshake.
        lines = open(os.path.join(work, "nginx-fresh.log")).read().split()
        return {"resumed": lines.count("r"), "full": lines.count(".")}

    return {name: Server(proc, port, pids, f"nginx/{name}", handshakes if name == "fresh" else None)
            for name, port in ports.items()}


def start_haproxy_peer():
    """HAProxy (Debian's package) doing nginx's work: TLS 1.3 with the same certificate and CA,
    `verify optional`, answering 202 to the POST. Two processes, because the session cache is
    global: one with tickets and cache (figures 1, 2, 4), one with neither (figure 3)."""
    key = open(pki("route-worker.api-key")).read().strip()
    combined = os.path.join(work, "haproxy-server.pem")
    with open(combined, "w") as f:
        f.write(open(pki("dispatch-api.pem")).read() + open(pki("dispatch-api.key")).read())
    answer = ("http-request return status 202 content-type application/json "
              "string '{\"id\":\"00000000-0000-4000-8000-000000000000\",\"status\":\"accepted\"}'")
    servers = {}
    for variant, resumption in (("resume", True), ("full", False)):
        ports = {"resume": free_port(), "fresh": free_port(), "key": free_port()} if resumption else {"full": free_port()}
        tickets = "" if resumption else " no-tls-tickets"
        frontends = []
        for name, port in ports.items():
            verify = f"ca-file {pki('ca.pem')} verify optional" if name != "key" else "verify none"
            check_key = (f"    http-request return status 401 unless {{ req.hdr(x-api-key) -m str {key} }}\n"
                         if name == "key" else
                         # The flood row's anonymous GETs elsewhere than the plans' path: 401.
                         "    http-request return status 401 unless { path /api/dispatch-plans }\n")
            # Figure 4's frontend logs, per request (one per connection there), whether its
            # session was resumed; the others log nothing, as before.
            log = ('    log stdout format raw local0\n    log-format "%[ssl_fc_is_resumed]"\n'
                   if name == "fresh" else "")
            frontends.append(f"""frontend {name}
    bind 127.0.0.1:{port} ssl crt {combined} {verify} ssl-min-ver TLSv1.3 alpn http/1.1{tickets}
    option http-buffer-request
{log}{check_key}    {answer}
""")
        conf = os.path.join(work, f"haproxy-peer-{variant}.cfg")
        with open(conf, "w") as f:
            f.write(f"""global
    maxconn 4000
    nbthread {os.cpu_count() or 1}
    tune.ssl.cachesize {20000 if resumption else 0}
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 30s
""" + "".join(frontends))
        resumed_log = os.path.join(work, f"haproxy-peer-{variant}.out")
        proc = subprocess.Popen(["haproxy", "-db", "-f", conf], stdout=open(resumed_log, "wb"),
                                stderr=open(os.path.join(work, f"haproxy-peer-{variant}.log"), "wb"))
        children.append(proc)
        time.sleep(0.5)
        if proc.poll() is not None:
            raise SystemExit(f"haproxy ({variant}) did not start; see haproxy-peer-{variant}.log")
        def handshakes(path=resumed_log):
            lines = open(path).read().split()
            return {"resumed": lines.count("1"), "full": lines.count("0")}

        for name, port in ports.items():
            servers[name] = Server(proc, port, (lambda p=proc: [p.pid]), f"haproxy/{name}",
                                   handshakes if name == "fresh" else None)
    return servers


def oha(server, *, cert=True, key=False, new_connections=False, seconds=None, connections=None):
    seconds = seconds or SECONDS
    # A server may take the plan at another path, in another body (etcd: a put of it).
    body = getattr(server, "body", os.path.join(work, "plan.json"))
    path = getattr(server, "path", "/api/dispatch-plans")
    args = ["oha", "-z", f"{seconds}s", "-c", str(connections or CONNECTIONS), "--no-tui", "--output-format", "json",
            "-m", "POST", "-H", "content-type: application/json", "-D", body,
            "--cacert", pki("ca.pem")]
    if cert:
        args += ["--cert", pki("route-worker.pem"), "--key", pki("route-worker.key")]
    if key:
        args += ["-H", f"x-api-key: {open(pki('route-worker.api-key')).read().strip()}"]
    if new_connections:
        args += ["--disable-keepalive"]
    args.append(f"https://localhost:{server.port}{path}")
    before = server.cpu_ticks()
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60)
    cpu = (server.cpu_ticks() - before) / TICKS
    if out.returncode != 0:
        raise SystemExit(f"oha failed: {out.stderr[-2000:]}")
    result = json.loads(out.stdout)
    codes = result.get("statusCodeDistribution", {})
    accepted = getattr(server, "accepted", "202")
    ok = sum(v for k, v in codes.items() if k == accepted)
    total = sum(codes.values()) or 1
    if ok / total < 0.99:
        raise SystemExit(f"{server.name}: only {ok}/{total} answers were {accepted}: {codes}")
    percentiles = result.get("latencyPercentiles", {})
    return {
        "rps": ok / seconds if not result["summary"].get("requestsPerSec") else result["summary"]["requestsPerSec"],
        "p50_ms": (percentiles.get("p50") or 0) * 1000,
        "p99_ms": (percentiles.get("p99") or 0) * 1000,
        "cpu_ms_per_req": cpu * 1000 / max(ok, 1),
    }


def summary(samples, key):
    values = [s[key] for s in samples]
    return statistics.median(values), min(values), max(values)


def handshake_ceiling():
    """Full mTLS 1.3 handshakes/s two processes on this machine could do at best, from the
    arithmetic alone: per side one P-256 signature, two verifications, two X25519 operations."""
    out = subprocess.run(["openssl", "speed", "-seconds", "2", "ecdsap256", "ecdhx25519"],
                         capture_output=True, text=True).stdout
    sign = verify = x25519 = None
    for line in out.splitlines():
        m = re.match(r"\s*256 bits ecdsa \(nistp256\)\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)", line)
        if m:
            sign, verify = float(m.group(1)), float(m.group(2))
        m = re.match(r"\s*253 bits ecdh \(X25519\)\s+\S+s\s+([\d.]+)", line)
        if m:
            x25519 = float(m.group(1))
    if not (sign and verify and x25519):
        return None
    per_side = 1 / sign + 2 / verify + 2 / x25519
    cores = os.cpu_count() or 1
    return cores / (2 * per_side)


def rss_mb(server):
    for line in open(f"/proc/{server.proc.pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def database_bytes(path):
    return sum(os.path.getsize(path + suffix) for suffix in ("", "-wal") if os.path.exists(path + suffix))


def flooder(server, seconds):
    """oha's arguments for the flood: anonymous GETs with 8 KiB paths over 50 connections."""
    return ["oha", "-z", f"{seconds}s", "-c", "50", "--no-tui", "--output-format", "json",
            "--cacert", pki("ca.pem"), f"https://localhost:{server.port}/api/" + "A" * 8192]


def refusals(attacker, seconds):
    """The refusals a flood got: 401s, and dispatch-api's 503 `busy` (limits.unproven) or a
    peer's 429/503 past its own limits; any other answer ends the bench."""
    result = json.loads(attacker.communicate(timeout=seconds + 60)[0])
    codes = result.get("statusCodeDistribution", {})
    if set(codes) - {"401", "429", "503"}:
        raise SystemExit(f"the flood got answers other than 401, 429 or 503: {codes}")
    return sum(codes.values())


def flood_row(servers):
    """The main table's flood row: plans over 4 keep-alive mTLS connections beside the flood, on
    each server of `servers` ((label, server) pairs) in turn, RUNS runs of SECONDS. CPU is per
    request answered, plans and refusals together."""
    results = {label: [] for label, _ in servers}
    for run in range(RUNS):
        for label, server in servers[run % len(servers):] + servers[:run % len(servers)]:
            before = server.cpu_ticks()
            attacker = subprocess.Popen(flooder(server, SECONDS), stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
            sample = oha(server, cert=True, connections=4)
            refused = refusals(attacker, SECONDS)
            sample["refusals_per_s"] = refused / SECONDS
            answered = sample["rps"] * SECONDS + refused
            sample["cpu_ms_per_req"] = (server.cpu_ticks() - before) / TICKS * 1000 / max(answered, 1)
            results[label].append(sample)
    return results


def flood():
    """Anonymous requests with 8 KiB paths from 50 connections beside a worker-like client
    submitting plans over 4 keep-alive mTLS connections: the plans' rate and p99 with and without
    the flood (runs alternating), and what the flood costs in database bytes and memory."""
    print(f"\nflood ({FLOOD_SECONDS}s per run; plans over 4 mTLS connections; the flood: anonymous "
          f"GETs with 8 KiB paths over 50 connections):", flush=True)
    database = os.path.join(work, "flood.db")
    server = start_dispatch("flood", database=database)
    flood_args = flooder(server, FLOOD_SECONDS)
    plans = dict(cert=True, seconds=FLOOD_SECONDS, connections=4)
    log = os.path.join(work, "flood.log")
    quiet, loud, refused = [], [], 0
    quiet_bytes = quiet_plans = loud_bytes = loud_plans = log_bytes = 0
    rss_growth = 0.0
    for run in range(2):
        for flooded in ([False, True] if run % 2 == 0 else [True, False]):
            db_before, rss_before, log_before = database_bytes(database), rss_mb(server), os.path.getsize(log)
            attacker = flooded and subprocess.Popen(flood_args, stdout=subprocess.PIPE,
                                                    stderr=subprocess.DEVNULL, text=True)
            sample = oha(server, **plans)
            if attacker:
                refused += refusals(attacker, FLOOD_SECONDS)
            # Let the recorder write its last batch before measuring the file.
            time.sleep(1.5)
            grown = database_bytes(database) - db_before
            stored = sample["rps"] * FLOOD_SECONDS
            if flooded:
                loud.append(sample)
                loud_bytes, loud_plans = loud_bytes + grown, loud_plans + stored
                log_bytes += os.path.getsize(log) - log_before
                rss_growth = max(rss_growth, rss_mb(server) - rss_before)
            else:
                quiet.append(sample)
                quiet_bytes, quiet_plans = quiet_bytes + grown, quiet_plans + stored
    (qr, _, _), (lr, _, _) = summary(quiet, "rps"), summary(loud, "rps")
    (qp, _, _), (lp, _, _) = summary(quiet, "p99_ms"), summary(loud, "p99_ms")
    print(f"  plans alone                    {qr:>8.0f} plans/s, p99 {qp:.1f} ms", flush=True)
    print(f"  plans beside the flood         {lr:>8.0f} plans/s, p99 {lp:.1f} ms "
          f"({lr / qr - 1:+.1%} plans/s)", flush=True)
    # The database grows with the plans stored meanwhile; what the flood adds is the rest.
    per_plan = quiet_bytes / max(quiet_plans, 1)
    flood_bytes = max(loud_bytes - per_plan * loud_plans, 0)
    per_million = flood_bytes / max(refused, 1) * 1_000_000
    print(f"  the flood: {refused} refusals (401, or 503 past limits.unproven) in {2 * FLOOD_SECONDS}s ({refused / (2 * FLOOD_SECONDS):.0f}/s); "
          f"database growth beyond the plans stored meanwhile {flood_bytes / 1024:.0f} KiB "
          f"({per_million / 1024 / 1024:.2f} MiB per million refusals); log growth "
          f"{log_bytes / 1024:.0f} KiB with the plans' lines; server RSS growth during a flood run "
          f"{rss_growth:.1f} MiB (peak {server.peak_rss_mb():.0f} MiB)", flush=True)
    stop(server)


def main():
    setup_pki()
    if REGISTRY_ONLY:
        print(f"machine: {os.cpu_count()} cores; {RUNS} runs x {SECONDS}s per figure; load generator oha on the same "
              f"machine; dispatch-api synchronous={DURABILITY}", flush=True)
        registry_scale()
        return
    if POSTGRES_ONLY:
        print(f"machine: {os.cpu_count()} cores; {RUNS} runs x {SECONDS}s per figure, {CONNECTIONS} connections; "
              f"load generator oha on the same machine; dispatch-api synchronous={DURABILITY} on SQLite",
              flush=True)
        postgres_figure()
        return
    if FLOOD_ONLY:
        print(f"machine: {os.cpu_count()} cores; load generator oha on the same machine; "
              f"dispatch-api synchronous={DURABILITY}", flush=True)
        flood()
        return
    if ETCD_ONLY:
        print(f"machine: {os.cpu_count()} cores; {RUNS} runs x {SECONDS}s, {CONNECTIONS} connections; load generator "
              f"oha on the same machine; dispatch-api synchronous={DURABILITY}", flush=True)
        etcd_figure()
        return
    if AGAINST:
        print(f"machine: {os.cpu_count()} cores; {RUNS} runs x {SECONDS}s, {CONNECTIONS} connections; load generator "
              f"oha on the same machine; dispatch-api synchronous={DURABILITY}", flush=True)
        against(AGAINST)
        return
    if ACME_ONLY:
        print(f"machine: {os.cpu_count()} cores; dispatch-api synchronous={DURABILITY}", flush=True)
        acme_figure()
        return
    if OPS_ONLY:
        print(f"machine: {os.cpu_count()} cores; {RUNS} runs x {SECONDS}s per figure, {CONNECTIONS} connections; "
              f"load generator oha on the same machine; dispatch-api synchronous={DURABILITY}", flush=True)
        ops_figures()
        return
    print(f"machine: {os.cpu_count()} cores; {RUNS} runs x {SECONDS}s per figure, {CONNECTIONS} connections "
          f"(figure 4: {RESUME_CONNECTIONS}); load generator oha on the same machine; "
          f"dispatch-api synchronous={DURABILITY}", flush=True)
    resumed = start_dispatch("resume", resumption=True)
    full = start_dispatch("full", resumption=False)
    peers = {"nginx": start_nginx(), "haproxy": start_haproxy_peer()}
    figures = [
        ("1 keep-alive, mTLS, POST plan (20 stops)", resumed, "resume", dict(cert=True)),
        ("2 keep-alive, API key", resumed, "key", dict(cert=False, key=True)),
        ("3 new connection per request, full mTLS 1.3 handshake", full, "full", dict(cert=True, new_connections=True)),
        ("4 new connection per request, TLS session resumption", resumed, "fresh",
         dict(cert=True, new_connections=True, connections=RESUME_CONNECTIONS)),
        (f"4b figure 4 over {CONNECTIONS} connections (more than oha's tickets)", resumed, "fresh",
         dict(cert=True, new_connections=True)),
    ]
    labels = ["dispatch"] + list(peers)
    results = {name: {label: [] for label in labels} for name, *_ in figures}
    for run in range(RUNS):
        for name, ours, kind, options in figures:
            servers = [("dispatch", ours)] + [(peer, peers[peer][kind]) for peer in peers]
            # Each run starts with the next server in turn, so none is always first or last.
            order = servers[run % len(servers):] + servers[:run % len(servers)]
            for label, server in order:
                before = server.handshakes() if server.handshakes and kind == "fresh" else None
                sample = oha(server, **options)
                if before is not None:
                    after = server.handshakes()
                    sample.update({k: after.get(k, 0) - before.get(k, 0) for k in ("resumed", "full")})
                results[name][label].append(sample)
        print(f"  run {run + 1}/{RUNS} done", flush=True)
    # The handshake counts of figures 3 and 4 and the peak RSS of figures 1-4, before the flood
    # row adds its anonymous connections.
    handshakes = (handshake_kinds(resumed), handshake_kinds(full))
    nginx = peers["nginx"]
    rss = (resumed.peak_rss_mb(), nginx["resume"].peak_rss_mb(), peers["haproxy"]["resume"].peak_rss_mb())
    flood_name = "5 plans (4 mTLS connections) beside an anonymous flood"
    results[flood_name] = flood_row([("dispatch", resumed)] + [(peer, peers[peer]["resume"]) for peer in peers])
    print("  flood row done", flush=True)
    stop(full)
    for proc in children:
        if proc.args[0] in ("nginx", "haproxy") and proc.poll() is None:
            proc.send_signal(signal.SIGQUIT if proc.args[0] == "nginx" else signal.SIGTERM)
    stop(resumed)

    # Figure 1 on PostgreSQL; the peers' columns are their figure 1 (they store nothing anywhere).
    for number, (label, samples) in enumerate(postgres_figure().items(), start=6):
        name = f"{number} figure 1 on {label}"
        results[name] = {"dispatch": samples, **{peer: results[figures[0][0]][peer] for peer in peers}}

    print()
    print("figure 5: CPU per request answered (plans and refusals); figures 6-7: CPU of dispatch-api, "
          "PostgreSQL and HAProxy together per plan, the peers' columns their figure 1")
    print(f"{'figure':56} " + " ".join(f"{label + ' req/s (min-max)':>27} {'cpu ms':>6}" for label in labels)
          + f" {'best peer':>9} {'ratio':>5} {'cpu ratio':>9}")
    for name, by_label in results.items():
        row = f"{name:56} "
        cpu_key = {label: ("cpu_total_ms_per_req" if "cpu_total_ms_per_req" in by_label[label][0] else "cpu_ms_per_req")
                   for label in labels}
        for label in labels:
            rps, low, high = summary(by_label[label], "rps")
            row += f"{rps:>9.0f} ({low:.0f}-{high:.0f}){'':>{max(0, 15 - len(f'{low:.0f}-{high:.0f}'))}} " \
                   f"{summary(by_label[label], cpu_key[label])[0]:>6.3f} "
        best = max(peers, key=lambda peer: summary(by_label[peer], "rps")[0])
        ours_rps, best_rps = summary(by_label["dispatch"], "rps")[0], summary(by_label[best], "rps")[0]
        ours_cpu, best_cpu = (summary(by_label[x], cpu_key[x])[0] for x in ("dispatch", best))
        print(row + f"{best:>9} {ours_rps / best_rps:>5.2f} {ours_cpu / best_cpu:>9.2f}")
    for name in (figures[0][0], figures[2][0], figures[3][0], figures[4][0], flood_name):
        parts = [f"{label} p50 {summary(results[name][label], 'p50_ms')[0]:.2f} ms, "
                 f"p99 {summary(results[name][label], 'p99_ms')[0]:.2f} ms" for label in labels]
        best = min(peers, key=lambda peer: summary(results[name][peer], "p99_ms")[0])
        ratio = summary(results[name]["dispatch"], "p99_ms")[0] / max(summary(results[name][best], "p99_ms")[0], 1e-9)
        print(f"latency {name[:2]}: " + "; ".join(parts) + f"; p99 ratio against {best} {ratio:.2f}")
    print(f"flood 5: refusals (401) per second beside the plans: " + ", ".join(
        f"{label} {summary(results[flood_name][label], 'refusals_per_s')[0]:.0f}" for label in labels))
    print(f"handshakes seen by dispatch-api: resumption server {handshakes[0]}, full-handshake server {handshakes[1]}")
    for name, *_ in figures[3:]:
        shares = []
        for label in labels:
            samples = results[name][label]
            resumed_count = sum(s.get("resumed", 0) for s in samples)
            total = resumed_count + sum(s.get("full", 0) for s in samples)
            shares.append(f"{label} {resumed_count / total:.1%} of {total}" if total else f"{label} not told")
        print(f"resumed share {name[:2].strip()} (each server's own count of its connections): " + ", ".join(shares))
    print(f"peak RSS: dispatch-api {rss[0]:.1f} MiB, nginx (all processes) {rss[1]:.1f} MiB, haproxy {rss[2]:.1f} MiB")
    ceiling = handshake_ceiling()
    if ceiling:
        reached = ", ".join(f"{label} {summary(results[figures[2][0]][label], 'rps')[0] / ceiling:.0%}" for label in labels)
        print(f"full-handshake ceiling from `openssl speed` (both sides' signatures and key exchange): {ceiling:.0f}/s; "
              f"reached: {reached}")

    flood()
    ops_figures()
    etcd_figure()
    acme_figure()
    if PROVIDERS:
        compare_providers()
    if not QUICK:
        scaling()
        registry_scale()


def admin_put(server, path, body):
    """An admin call with the operator's certificate, by Python's own ssl and http.client (the
    server verified against the dev CA); returns (status, seconds it took)."""
    import http.client
    import ssl
    context = ssl.create_default_context(cafile=pki("ca.pem"))
    context.load_cert_chain(pki("operator.pem"), pki("operator.key"))
    connection = http.client.HTTPSConnection("localhost", server.port, context=context, timeout=60)
    started = time.perf_counter()
    connection.request("PUT", path, json.dumps(body), {"content-type": "application/json"})
    response = connection.getresponse()
    response.read()
    took = time.perf_counter() - started
    connection.close()
    return response.status, took


def key_status(server):
    """The status of route-worker's next request by API key."""
    import http.client
    import ssl
    context = ssl.create_default_context(cafile=pki("ca.pem"))
    connection = http.client.HTTPSConnection("localhost", server.port, context=context, timeout=60)
    connection.request("GET", "/api/whoami", headers={"x-api-key": open(pki("route-worker.api-key")).read().strip()})
    status = connection.getresponse().status
    connection.close()
    return status


def rss_now_mb(server):
    for line in open(f"/proc/{server.proc.pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def registry_scale():
    """REGISTRY_CLIENTS registered clients (bulk-inserted, as a bulk bootstrap would): start-up
    time, RSS, the time a flip (disable, enable) takes to reach the next request, and figure 1
    against a server with 10 clients."""
    count = REGISTRY_CLIENTS
    print(f"\nregistry scale ({count:,} registered clients):", flush=True)
    db = os.path.join(work, "clients.db")
    stop(start_dispatch("clients", database=db))
    issuer = "CN=Dispatch Dev Internal CA, O=Dispatch Dev"
    started = time.perf_counter()
    with sqlite3.connect(db) as conn:
        numbers = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) ")
        conn.execute(numbers + "INSERT INTO clients (name, mode, scopes, disabled, created_at, updated_at) "
                     "SELECT printf('bulk-%d', i), 'dual', 'plans:submit', 0, 0, 0 FROM n", (count,))
        conn.execute(numbers + "INSERT INTO api_keys (client, key_sha256, created_at) "
                     "SELECT printf('bulk-%d', i), lower(hex(randomblob(32))), 0 FROM n", (count,))
        conn.execute(numbers + "INSERT INTO cert_bindings (client, issuer, subject_cn, fingerprints) "
                     "SELECT printf('bulk-%d', i), ?, printf('bulk-%d', i), '' FROM n", (count, issuer))
    print(f"  bulk insert of {count:,} clients (key and CN binding each): {time.perf_counter() - started:.1f} s", flush=True)
    started = time.perf_counter()
    server = start_dispatch("clients", database=db)
    print(f"  start-up to ready: {time.perf_counter() - started:.2f} s; RSS {rss_now_mb(server):.0f} MiB", flush=True)
    baseline = start_dispatch("registry-baseline")
    print(f"  (10 clients: RSS {rss_now_mb(baseline):.0f} MiB)", flush=True)
    for label, target in [("10 clients", baseline), (f"{count:,} clients", server)]:
        scrapes = []
        for _ in range(5):
            started = time.perf_counter()
            size = len(urllib.request.urlopen(f"http://127.0.0.1:{target.ops}/metrics", timeout=60).read())
            scrapes.append((time.perf_counter() - started) * 1000)
        print(f"  GET /metrics ({label}): median {statistics.median(scrapes):.1f} ms, max {max(scrapes):.1f} ms, "
              f"{size / 1024:.0f} KiB (goal < 100 ms)", flush=True)
    for label, target in [("10 clients", baseline), (f"{count:,} clients", server)]:
        flips = []
        for disabled, expected in [(True, 403), (False, 200)] * 3:
            status, took = admin_put(target, "/admin/clients/route-worker/disabled",
                                     {"disabled": disabled, "reason": "bench: a flip"})
            seen = key_status(target)
            if status != 200 or (seen == 200) != (expected == 200):
                raise SystemExit(f"flip on {label}: admin {status}, next request {seen}")
            flips.append(took * 1000)
        print(f"  a flip reaches the next request ({label}): median {statistics.median(flips):.1f} ms, "
              f"max {max(flips):.1f} ms (admin call, answered after the snapshot swap)", flush=True)
    print_change(f"figure 1 with {count:,} clients", *alternate(baseline, server), "10 clients")
    stop(server)
    stop(baseline)


def probes(server, path, seconds, connections=25):
    """oha hammering an ops listener path over plain HTTP keep-alive connections."""
    return subprocess.Popen(["oha", "-z", f"{seconds}s", "-c", str(connections), "--no-tui", "--output-format",
                             "json", f"http://127.0.0.1:{server.ops}{path}"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def probes_answered(hammer, seconds):
    result = json.loads(hammer.communicate(timeout=seconds + 60)[0])
    codes = result.get("statusCodeDistribution", {})
    if set(codes) - {"200"}:
        raise SystemExit(f"an ops probe got answers other than 200: {codes}")
    return sum(codes.values()) / seconds


def ops_figures():
    """Figure 1 alone and beside 50 keep-alive connections hammering /readyz and /metrics (25
    each), runs alternating: the plans' rate beside the probes against alone (goal: at least
    0.8), and the probes' own rate. Then the memory anonymous HTTP/2 connections can take."""
    print("\noperations (figure 1 beside /readyz and /metrics probes; anonymous HTTP/2 memory):", flush=True)
    server = start_dispatch("ops")
    alone, beside, answered = [], [], []
    for run in range(RUNS):
        for hammered in ([False, True] if run % 2 == 0 else [True, False]):
            if not hammered:
                alone.append(oha(server, cert=True))
                continue
            hammers = [probes(server, path, SECONDS) for path in ("/readyz", "/metrics")]
            beside.append(oha(server, cert=True))
            answered.append(sum(probes_answered(hammer, SECONDS) for hammer in hammers))
    (ra, _, _), (rb, lo, hi) = summary(alone, "rps"), summary(beside, "rps")
    pa, pb = summary(alone, "p99_ms")[0], summary(beside, "p99_ms")[0]
    print(f"  figure 1 alone                          {ra:>8.0f} req/s, p99 {pa:.1f} ms", flush=True)
    print(f"  figure 1 beside 50 probe connections    {rb:>8.0f} req/s ({lo:.0f}-{hi:.0f}), p99 {pb:.1f} ms; "
          f"{rb / ra:.2f}x alone (goal >= 0.8); probes answered {statistics.median(answered):.0f}/s", flush=True)
    stop(server)
    # Each on a server of its own, so that one's memory is not the other's.
    for sending in (False, True):
        server = start_dispatch(f"h2-{'sending' if sending else 'idle'}")
        h2_holders(server, sending)
        stop(server)
    tryout_scale()


def h2_holders(server, sending=True):
    """H2_HOLDERS anonymous HTTP/2 connections (python3-h2), 128 per network of 127.0.0.0/8 so
    that none is shed by limits.unproven's per-network cap, each keeping 8 POST streams open
    with a 1 GiB content-length and sending body bytes as fast as the server's flow-control
    windows allow, for SECONDS: the server's RSS before, at its peak, and the growth (goal: at
    most 64 MiB for 1024 connections)."""
    import asyncio
    import ssl
    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions

    context = ssl.create_default_context(cafile=pki("ca.pem"))
    context.set_alpn_protocols(["h2"])
    chunk = b"x" * 16384
    sent = [0]

    async def hold(index, until):
        loop = asyncio.get_running_loop()
        network, host = divmod(index, 128)
        source = f"127.0.{network + 1}.{host + 1}"
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", server.port, ssl=context, server_hostname="localhost", local_addr=(source, 0))
        except OSError:
            return
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        open_streams = set()

        def open_one():
            stream = conn.get_next_available_stream_id()
            conn.send_headers(stream, [(":method", "POST"), (":path", "/api/dispatch-plans"), (":scheme", "https"),
                                       (":authority", "localhost"), ("content-type", "application/json"),
                                       ("content-length", str(1 << 30))])
            open_streams.add(stream)

        try:
            while loop.time() < until:
                while sending and len(open_streams) < 8:
                    open_one()
                for stream in list(open_streams):
                    window = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size)
                    while window > 0:
                        conn.send_data(stream, chunk[:window])
                        sent[0] += window
                        window = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size)
                writer.write(conn.data_to_send())
                await writer.drain()
                try:
                    data = await asyncio.wait_for(reader.read(65536), 0.5)
                except asyncio.TimeoutError:
                    continue
                if not data:
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, (h2.events.StreamReset, h2.events.StreamEnded)):
                        open_streams.discard(event.stream_id)
                writer.write(conn.data_to_send())
        except (OSError, h2.exceptions.ProtocolError, ssl.SSLError):
            return
        finally:
            writer.close()

    async def all_of_them():
        until = asyncio.get_running_loop().time() + max(SECONDS, 10)
        await asyncio.gather(*(hold(index, until) for index in range(H2_HOLDERS)))

    before = rss_now_mb(server)
    peak = [before]

    def watch():
        while not done[0]:
            peak[0] = max(peak[0], rss_now_mb(server))
            time.sleep(0.2)

    import threading
    done = [False]
    watcher = threading.Thread(target=watch)
    watcher.start()
    asyncio.run(all_of_them())
    done[0] = True
    watcher.join()
    growth = peak[0] - before
    what = "sending bodies as fast as the windows allow" if sending else "idle (no stream)"
    print(f"  {H2_HOLDERS} anonymous HTTP/2 connections {what}: RSS {before:.0f} MiB before, "
          f"{peak[0]:.0f} MiB at the peak, +{growth:.0f} MiB (goal <= 64 MiB sending); "
          f"{sent[0] / 1048576:.0f} MiB of body sent", flush=True)


def tryout_scale():
    """TRYOUT_CLIENTS certificate clients, each with a certificate it presented (rows of
    presented_certificates, real chains the dev CA signed, made with python3-cryptography): how
    long an admin change takes when it is tried against every one of them (a disable and an
    enable of one client; the first one verifies every chain, later ones find them verified),
    goal at most 1 s; and figure 1's p99 while such changes are made back to back, against
    without (runs alternating), goal at most 2x."""
    import datetime
    import hashlib
    import threading
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    count = TRYOUT_CLIENTS
    print(f"\ntryout scale ({count:,} certificate clients, each with a live certificate):", flush=True)
    db = os.path.join(work, "tryout.db")
    stop(start_dispatch("tryout", database=db))
    ca_cert = x509.load_pem_x509_certificate(open(pki("ca.pem"), "rb").read())
    ca_key = serialization.load_pem_private_key(open(pki("ca.key"), "rb").read(), None)
    now = datetime.datetime.now(datetime.timezone.utc)
    # One key for every leaf: the tryout checks the CA's signature on each, not the leaf's key.
    leaf_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    issuer = "CN=Dispatch Dev Internal CA, O=Dispatch Dev"
    not_after = now + datetime.timedelta(days=1)
    rows = []
    started = time.perf_counter()
    for n in range(count):
        name = f"tried-{n}"
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_cert.subject).public_key(leaf_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(not_after)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        der = cert.public_bytes(serialization.Encoding.DER)
        rows.append((name, hashlib.sha256(der).hexdigest(), der.hex(), int(time.time()), int(not_after.timestamp())))
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO clients (name, mode, scopes, disabled, created_at, updated_at) "
                         "VALUES (?, 'dual', 'plans:submit', 0, 0, 0)", [(row[0],) for row in rows])
        conn.executemany("INSERT INTO cert_bindings (client, issuer, subject_cn, fingerprints) VALUES (?, ?, ?, '')",
                         [(row[0], issuer, row[0]) for row in rows])
        conn.executemany("INSERT INTO presented_certificates (client, fingerprint, chain, last_seen, not_after) "
                         "VALUES (?, ?, ?, ?, ?)", rows)
    print(f"  {count:,} certificates made and stored: {time.perf_counter() - started:.1f} s", flush=True)
    server = start_dispatch("tryout", database=db)
    changes = []
    for disabled in [True, False] * 3:
        status, took = admin_put(server, "/admin/clients/tried-0/disabled",
                                 {"disabled": disabled, "reason": "bench: a change tried against every certificate"})
        if status != 200:
            raise SystemExit(f"tryout figure: the admin change answered {status}")
        changes.append(took * 1000)
    print(f"  an admin change tried against {count:,} live certificates: first {changes[0]:.0f} ms (every chain "
          f"verified), then median {statistics.median(changes[1:]):.0f} ms, max {max(changes[1:]):.0f} ms "
          f"(goal <= 1000 ms)", flush=True)
    quiet, busy, made = [], [], []
    for run in range(RUNS):
        for changing in ([False, True] if run % 2 == 0 else [True, False]):
            if not changing:
                quiet.append(oha(server, cert=True))
                continue
            stop_changes = threading.Event()

            def change_back_to_back():
                disabled = True
                while not stop_changes.is_set():
                    admin_put(server, "/admin/clients/tried-1/disabled",
                              {"disabled": disabled, "reason": "bench: changes beside plans"})
                    made.append(1)
                    disabled = not disabled

            changer = threading.Thread(target=change_back_to_back)
            changer.start()
            busy.append(oha(server, cert=True))
            stop_changes.set()
            changer.join()
    (rq, _, _), (rb, _, _) = summary(quiet, "rps"), summary(busy, "rps")
    pq, pb = summary(quiet, "p99_ms")[0], summary(busy, "p99_ms")[0]
    print(f"  figure 1 without admin changes           {rq:>8.0f} req/s, p99 {pq:.1f} ms", flush=True)
    print(f"  figure 1 beside changes back to back     {rb:>8.0f} req/s, p99 {pb:.1f} ms ({pb / pq:.2f}x, goal <= 2x); "
          f"{len(made) / (RUNS * SECONDS):.1f} changes/s", flush=True)
    stop(server)


def alternate(baseline, other, options=None):
    """RUNS runs of figure 1 (or `options`), baseline and other alternating; medians of each."""
    options = options or dict(cert=True)
    a, b = [], []
    for run in range(RUNS):
        pair = [(baseline, a), (other, b)] if run % 2 == 0 else [(other, b), (baseline, a)]
        for server, samples in pair:
            samples.append(oha(server, **options))
    return a, b


def print_change(label, a, b, against):
    (ra, _, _), (rb, _, _) = summary(a, "rps"), summary(b, "rps")
    ca, cb = summary(a, "cpu_ms_per_req")[0], summary(b, "cpu_ms_per_req")[0]
    print(f"  {label:30} {rb:>8.0f} req/s vs {ra:>6.0f} ({rb / ra - 1:+6.1%}); "
          f"cpu {cb:.3f} vs {ca:.3f} ms/req ({cb / ca - 1:+6.1%})  [vs {against}]", flush=True)


def scaling():
    """Each scenario against a baseline server started beside it, runs alternating, because the
    machine drifts between minutes more than most of these effects."""
    print("\nscaling (figure 1, dispatch-api only; each against its baseline in the same minutes):")
    baseline = start_dispatch("baseline")
    for label, options in [("10 000 registered clients", dict(clients=10_000)),
                           ("100 000 registered clients", dict(clients=100_000))]:
        server = start_dispatch(label.split()[0], **options)
        print_change(label, *alternate(baseline, server), "10 clients")
        stop(server)
    db = os.path.join(work, "million.db")
    server = start_dispatch("million", database=db)
    stop(server)
    with sqlite3.connect(db) as conn:
        body = open(os.path.join(work, "plan.json")).read()
        # Existing rows carry random (v4-like) ids, as plans stored by an older version would.
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) "
            "INSERT INTO plans (id, client, auth_method, route_id, team, planned_date, stop_count, body, "
            "idempotency_key, request_sha256, received_at) "
            "SELECT lower(hex(randomblob(16))), 'route-worker', 'certificate', 'seed', 'north', '2026-11-23', 20, ?, "
            "printf('seed-%d', i), 'x', 0 FROM n", (body,))
    server = start_dispatch("million", database=db)
    print_change("1 000 000 plans stored", *alternate(baseline, server), "empty")
    stop(server)
    crl = os.path.join(work, "big.crl.pem")
    subprocess.run([os.path.join(BIN, "devpki"), "crl", "--dir", os.path.join(work, "pki"), "--random", "10000", "--out", crl],
                   check=True, stdout=subprocess.DEVNULL)
    server = start_dispatch("crl", crl=crl)
    print_change("CRL with 10 000 serials", *alternate(baseline, server), "no CRL")
    stop(server)
    stop(baseline)


def start_etcd():
    """Debian's etcd-server storing each plan durably (its WAL fsynced per commit, its defaults),
    written through its HTTP/JSON gateway as a put, over keep-alive mTLS: any certificate of the
    dev CA may write (--client-cert-auth; the gateway refuses client-cert auth beside RBAC). Its
    certificate carries serverAuth and clientAuth, as its gateway dials etcd itself with it."""
    d = os.path.join(work, "etcd")
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/ext", "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n")
    quiet = dict(check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-subj", "/CN=etcd", "-keyout", f"{d}/etcd.key", "-out", f"{d}/etcd.csr"], **quiet)
    subprocess.run(["openssl", "x509", "-req", "-in", f"{d}/etcd.csr", "-CA", pki("ca.pem"), "-CAkey", pki("ca.key"),
                    "-CAcreateserial", "-days", "2", "-extfile", f"{d}/ext", "-out", f"{d}/etcd.pem"], **quiet)
    port, peer = free_port(), free_port()
    log = open(f"{d}/etcd.log", "ab")
    proc = subprocess.Popen(
        ["etcd", "--name", "bench", "--data-dir", f"{d}/data",
         "--listen-client-urls", f"https://127.0.0.1:{port}", "--advertise-client-urls", f"https://127.0.0.1:{port}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"bench=http://127.0.0.1:{peer}",
         "--cert-file", f"{d}/etcd.pem", "--key-file", f"{d}/etcd.key", "--client-cert-auth",
         "--trusted-ca-file", pki("ca.pem"), "--log-level", "error",
         # Every put is a new revision of one key: compacted, as a store kept running would be.
         "--auto-compaction-mode", "revision", "--auto-compaction-retention", "1000"],
        stdout=log, stderr=log)
    children.append(proc)
    import base64
    plan = open(os.path.join(work, "plan.json"), "rb").read()
    body = os.path.join(work, "etcd-put.json")
    with open(body, "w") as f:
        json.dump({"key": base64.b64encode(b"plans/bench").decode(), "value": base64.b64encode(plan).decode()}, f)
    deadline = time.time() + 60
    while True:
        check = subprocess.run(["curl", "-sf", "--cacert", pki("ca.pem"), "--cert", pki("route-worker.pem"),
                                "--key", pki("route-worker.key"), "-X", "POST", "-d", f"@{body}",
                                f"https://localhost:{port}/v3/kv/put"], capture_output=True)
        if check.returncode == 0:
            break
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit(f"etcd did not start; see {log.name}")
        time.sleep(0.2)
    server = Server(proc, port, lambda: [proc.pid], "etcd")
    server.path, server.body, server.accepted = "/v3/kv/put", body, "200"
    return server


def etcd_figure():
    """Figure 1 against the same work done by a store teams trust: etcd's durable put of the
    same plan, over keep-alive mTLS, runs alternating."""
    ours = start_dispatch("etcd-anchor")
    etcd = start_etcd()
    samples = {"dispatch": [], "etcd": []}
    for run in range(RUNS):
        for label, server in ([("dispatch", ours), ("etcd", etcd)] if run % 2 == 0
                              else [("etcd", etcd), ("dispatch", ours)]):
            samples[label].append(oha(server, cert=True))
        print(f"  etcd anchor run {run + 1}/{RUNS} done", flush=True)
    (rd, ld, hd), (re_, le, he) = summary(samples["dispatch"], "rps"), summary(samples["etcd"], "rps")
    cd, ce = summary(samples["dispatch"], "cpu_ms_per_req")[0], summary(samples["etcd"], "cpu_ms_per_req")[0]
    pd, pe = summary(samples["dispatch"], "p99_ms")[0], summary(samples["etcd"], "p99_ms")[0]
    print(f"\nsame work (figure 1: a durable plan of 20 stops over keep-alive mTLS, {CONNECTIONS} connections, "
          f"{RUNS} runs alternating):")
    print(f"  dispatch-api (SQLite, synchronous={DURABILITY}) {rd:>7.0f} req/s ({ld:.0f}-{hd:.0f}); p99 {pd:.1f} ms; "
          f"cpu ms/req {cd:.3f}")
    print(f"  etcd 3.4 put through its gateway (WAL fsync)  {re_:>7.0f} req/s ({le:.0f}-{he:.0f}); p99 {pe:.1f} ms; "
          f"cpu ms/req {ce:.3f}")
    print(f"  ratio {rd / re_:.2f}x etcd; cpu per request {cd / ce:.2f}x etcd's; p99 {pd / pe:.2f}x", flush=True)
    stop(etcd)
    stop(ours)


def start_pebble(lifetime):
    """Debian's pebble with pebble-challtestsrv as its DNS (every name is 127.0.0.1), as the
    end-to-end tests start them: real http-01 validation against the worker's own responder."""
    d = os.path.join(work, "pebble")
    os.makedirs(d, exist_ok=True)
    quiet = dict(check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", "/CN=Pebble TLS Root (bench)", "-keyout", f"{d}/root.key",
                    "-out", f"{d}/root.pem"], **quiet)
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-subj", "/CN=localhost", "-keyout", f"{d}/tls.key", "-out", f"{d}/tls.csr"], **quiet)
    with open(f"{d}/tls.ext", "w") as f:
        f.write("subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n")
    subprocess.run(["openssl", "x509", "-req", "-in", f"{d}/tls.csr", "-CA", f"{d}/root.pem", "-CAkey",
                    f"{d}/root.key", "-CAcreateserial", "-days", "2", "-extfile", f"{d}/tls.ext",
                    "-out", f"{d}/tls.pem"], **quiet)
    acme, management, http01, tls, dns, challtest = (free_port() for _ in range(6))
    with open(f"{d}/config.json", "w") as f:
        json.dump({"pebble": {
            "listenAddress": f"127.0.0.1:{acme}", "managementListenAddress": f"127.0.0.1:{management}",
            "certificate": f"{d}/tls.pem", "privateKey": f"{d}/tls.key", "httpPort": http01, "tlsPort": tls,
            "ocspResponderURL": "", "externalAccountBindingRequired": False,
            "certificateValidityPeriod": lifetime}}, f)
    log = open(f"{d}/pebble.log", "ab")
    children.append(subprocess.Popen(
        ["pebble-challtestsrv", "-management", f"127.0.0.1:{challtest}", "-dns01", f"127.0.0.1:{dns}",
         "-http01", "", "-https01", "", "-tlsalpn01", "", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
        stdout=log, stderr=log))
    children.append(subprocess.Popen(["pebble", "-config", f"{d}/config.json", "-dnsserver", f"127.0.0.1:{dns}"],
                                     env={**os.environ, "PEBBLE_VA_NOSLEEP": "1"}, stdout=log, stderr=log))
    import ssl
    context = ssl.create_default_context(cafile=f"{d}/root.pem")
    deadline = time.time() + 30
    while True:
        try:
            get = lambda path: urllib.request.urlopen(f"https://localhost:{management}{path}", context=context,
                                                      timeout=2).read().decode()
            root, intermediate = get("/roots/0"), get("/intermediates/0")
            break
        except OSError:
            if time.time() > deadline:
                raise SystemExit(f"pebble did not start; see {log.name}")
            time.sleep(0.2)
    with open(f"{d}/intermediate.pem", "w") as f:
        f.write(intermediate)
    subject = subprocess.run(["openssl", "x509", "-in", f"{d}/intermediate.pem", "-noout", "-subject", "-nameopt",
                              "RFC2253"], check=True, capture_output=True, text=True).stdout
    return {"directory": f"https://localhost:{acme}/dir", "tls_root": f"{d}/root.pem", "http01": http01,
            "chain": root + intermediate, "issuer": subject.strip().removeprefix("subject="),
            "processes": children[-2:]}


class Worker:
    """route-worker `run` over its own inbox, fed from here; its plans are counted as files done."""

    def __init__(self, name, server, tls):
        self.name = name
        self.dir = os.path.join(work, f"worker-{name}")
        self.inbox = os.path.join(self.dir, "inbox")
        os.makedirs(self.inbox, exist_ok=True)
        config = os.path.join(self.dir, "config")
        os.makedirs(config, exist_ok=True)
        with open(os.path.join(config, "route-worker.toml"), "w") as f:
            f.write(f'[server]\nurl = "https://localhost:{server.port}"\n\n[tls]\nca_file = "{pki("ca.pem")}"\n'
                    f'{tls}\n[input]\ndir = "{self.inbox}"\npoll_interval_secs = 1\n\n'
                    f'[telemetry]\nformat = "json"\nfilter = "info"\n')
        self.log = os.path.join(self.dir, "worker.log")
        log = open(self.log, "ab")
        self.proc = subprocess.Popen([os.path.join(BIN, "route-worker"), "--config-dir", config, "run"],
                                     stdout=log, stderr=log)
        children.append(self.proc)
        self.fed = 0

    def feed(self, files):
        """Drops `files` stop files of one plan each, each its own (an idempotency key of its own)."""
        for _ in range(files):
            n = self.fed
            self.fed += 1
            staged = os.path.join(self.inbox, f".{n}.json")
            with open(staged, "w") as f:
                json.dump([{"id": f"s{i}", "team": "north", "latitude": 52.0 + (n * 20 + i) * 1e-6,
                            "longitude": 4.0 + i * 0.01} for i in range(20)], f)
            os.rename(staged, os.path.join(self.inbox, f"{n}.json"))

    def count(self, sub):
        try:
            return len(os.listdir(os.path.join(self.inbox, sub)))
        except FileNotFoundError:
            return 0

    def pending(self):
        return sum(1 for name in os.listdir(self.inbox) if name.endswith(".json"))

    def window(self, seconds):
        """Plans done per second over `seconds` while the inbox never runs dry."""
        self.feed(2000)
        # From the moment it takes the first file of this window (it polls every second).
        self.wait_until(lambda: self.pending() < 2000, 60, "takes no file")
        before, t0 = self.count("done"), time.time()
        while time.time() < t0 + seconds:
            if self.pending() < 1000:
                self.feed(1000)
            if self.proc.poll() is not None:
                raise SystemExit(f"route-worker ({self.name}) exited; see {self.log}")
            time.sleep(0.05)
        done, elapsed = self.count("done") - before, time.time() - t0
        # Let the rest go, so the next window starts from an empty inbox.
        self.wait_until(lambda: self.pending() == 0, 300, "does not finish its inbox")
        return done / elapsed

    def wait_until(self, condition, seconds, what):
        deadline = time.time() + seconds
        while not condition():
            if self.proc.poll() is not None:
                raise SystemExit(f"route-worker ({self.name}) exited; see {self.log}")
            if time.time() > deadline:
                raise SystemExit(f"route-worker ({self.name}) {what} within {seconds} s; see {self.log}")
            time.sleep(0.05)
        if self.proc.poll() is not None:
            raise SystemExit(f"route-worker ({self.name}) exited; see {self.log}")

    def log_count(self, text):
        return open(self.log, errors="replace").read().count(text)


def acme_figure():
    """route-worker renewing its certificate over ACME (pebble, ACME_LIFETIME-second certificates)
    against route-worker on a fixed certificate, same server, windows alternating."""
    pebble = start_pebble(ACME_LIFETIME)
    bundle = os.path.join(work, "client-ca-with-pebble.pem")
    with open(bundle, "w") as f:
        f.write(open(pki("ca.pem")).read() + pebble["chain"])
    clients = os.path.join(work, "clients-acme.toml")
    with open(clients, "w") as f:
        f.write(open(clients_file(10)).read())
        f.write(f'[[clients]]\nname = "acme-worker"\nmode = "mtls"\nscopes = ["plans:submit"]\n'
                f'[[clients.bindings]]\nissuer = "{pebble["issuer"]}"\ndns_name = "worker.bench.internal"\n')
    server = start_dispatch("acme", client_ca=bundle, clients_path=clients)
    fixed = Worker("fixed", server, f'cert_file = "{pki("route-worker.pem")}"\nkey_file = "{pki("route-worker.key")}"\n')
    acme = Worker("acme", server,
                  f'reload_interval_secs = 1\n[tls.acme]\ndirectory_url = "{pebble["directory"]}"\n'
                  f'ca_file = "{pebble["tls_root"]}"\ndns_names = ["worker.bench.internal"]\n'
                  f'http01_listen = "127.0.0.1:{pebble["http01"]}"\nstate_dir = "{os.path.join(work, "acme-state")}"\n')
    rates = {"fixed": [], "acme": []}
    renewed = "renewed the certificate over ACME"
    renewals_before, in_windows = acme.log_count(renewed), 0
    for run in range(RUNS):
        for worker in ([fixed, acme] if run % 2 == 0 else [acme, fixed]):
            before = acme.log_count(renewed)
            rates[worker.name].append(worker.window(ACME_SECONDS))
            if worker is acme:
                in_windows += acme.log_count(renewed) - before
        print(f"  run {run + 1}/{RUNS} done", flush=True)
    renewals = acme.log_count(renewed) - renewals_before
    med = {name: statistics.median(values) for name, values in rates.items()}
    print(f"\nroute-worker across ACME renewals ({RUNS} windows of {ACME_SECONDS} s each, alternating; "
          f"pebble's certificates live {ACME_LIFETIME} s, renewed when a third is left):")
    for name, label in [("fixed", "a fixed certificate"), ("acme", "renewing over ACME")]:
        print(f"  {label:22} {med[name]:>7.0f} plans/s ({min(rates[name]):.0f}-{max(rates[name]):.0f})")
    # Read once dispatch-api has stopped: its recorder writes the last refusals at shutdown.
    for proc in [fixed.proc, acme.proc] + pebble["processes"]:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    stop(server)
    db = sqlite3.connect(f"file:{os.path.join(work, 'acme.db')}?mode=ro", uri=True)
    refused = db.execute("SELECT count(*) FROM audit_events WHERE kind = 'auth_refused'").fetchone()[0]
    unnamed = db.execute("SELECT coalesce(sum(count), 0) FROM refusal_counts").fetchone()[0]
    db.close()
    print(f"  ratio {med['acme'] / med['fixed']:.3f}; renewals {renewals} in the run, {in_windows} in the renewing "
          f"worker's windows; "
          f"plans failed: fixed {fixed.count('failed')}, acme {acme.count('failed')}; retries: fixed "
          f"{fixed.log_count('retrying')}, acme {acme.log_count('retrying')}; refusals at the server: "
          f"{refused} of known clients, {unnamed} of unnamed callers", flush=True)


def against(binary):
    """Figure 1 of this build against `binary`, alternating, with CPU and p99 per request."""
    before = start_dispatch("before", binary=os.path.abspath(binary))
    after = start_dispatch("after")
    a, b = alternate(before, after)
    print(f"\nfigure 1, this build against {binary} ({RUNS} runs alternating):")
    for label, samples in [("before", a), ("after", b)]:
        (r, lo, hi), cpu, p99 = summary(samples, "rps"), summary(samples, "cpu_ms_per_req"), summary(samples, "p99_ms")
        print(f"  {label:7} {r:>7.0f} req/s ({lo:.0f}-{hi:.0f}); cpu ms/req {cpu[0]:.4f} ({cpu[1]:.4f}-{cpu[2]:.4f}); "
              f"p99 {p99[0]:.1f} ms")
    print_change("after against before", a, b, "before")
    stop(before)
    stop(after)


def compare_providers():
    """ring against aws-lc-rs as dispatch-api's rustls provider, on the handshake figures."""
    print("\nrustls provider (dispatch-api only, runs alternating):")
    for label, resumption, options in [
            ("3 full mTLS handshake per request", False, dict(cert=True, new_connections=True)),
            ("4 resumed handshake per request", True,
             dict(cert=True, new_connections=True, connections=RESUME_CONNECTIONS)),
            ("1 keep-alive, mTLS", True, dict(cert=True))]:
        ring = start_dispatch(f"ring-{resumption}", resumption=resumption)
        aws = start_dispatch(f"aws-{resumption}", resumption=resumption, binary=AWS_LC_BIN)
        a, b = alternate(ring, aws, options)
        (ra, _, _), (rb, _, _) = summary(a, "rps"), summary(b, "rps")
        ca, cb = summary(a, "cpu_ms_per_req")[0], summary(b, "cpu_ms_per_req")[0]
        print(f"  {label:36} ring {ra:>6.0f} req/s, {ca:.3f} ms/req; aws-lc-rs {rb:>6.0f} req/s, {cb:.3f} ms/req "
              f"({rb / ra - 1:+.1%} req/s)", flush=True)
        stop(ring)
        stop(aws)


if __name__ == "__main__":
    try:
        main()
    finally:
        cleanup()
