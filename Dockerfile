# One image for both services (dispatch-api, route-worker), the dev PKI tool and dispatchctl.
# No certificate, key, API key or database is in any layer: they are mounted at run time
# (see docker-compose.yml), and .dockerignore keeps local PKI and data directories out of the
# build context. Builds offline from `vendor/` when present (CI makes it with `cargo vendor`).

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# The context is filtered by .dockerignore: sources, Cargo.lock, migrations, and vendor/ if any.
COPY . .
RUN if [ -d vendor ]; then \
      mkdir -p .cargo && printf '[source.crates-io]\nreplace-with = "vendored"\n[source.vendored]\ndirectory = "vendor"\n' > .cargo/config.toml; \
    fi \
 && cargo build --release --locked --bin dispatch-api --bin route-worker --bin devpki --bin dispatchctl \
 && mkdir -p /out \
 && cp target/release/dispatch-api target/release/route-worker target/release/devpki target/release/dispatchctl /out/

FROM ${RUNTIME_IMAGE}
RUN groupadd --system --gid 10001 dispatch \
 && useradd --system --uid 10001 --gid dispatch --home-dir /app --no-create-home --shell /usr/sbin/nologin dispatch \
 && mkdir -p /app /var/lib/dispatch-api /var/lib/route-worker /work/inbox \
 && chown dispatch:dispatch /var/lib/dispatch-api /var/lib/route-worker /work /work/inbox
COPY --from=build /out/ /usr/local/bin/
COPY config/ /app/config/
COPY examples/ /app/examples/
COPY docker/pki-init.sh /usr/local/bin/pki-init
WORKDIR /app
ENV DISPATCH_CONFIG_DIR=/app/config \
    DISPATCH_ENV=container \
    ROUTE_WORKER_CONFIG_DIR=/app/config
USER 10001:10001
EXPOSE 8443 9090
CMD ["dispatch-api"]
