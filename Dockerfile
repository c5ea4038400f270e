# shardcast container image (docs/container.md).
#
# With access to Docker Hub: the binary is compiled in the `build` stage.
#   docker build -t shardcast .
#   docker run --rm -p 7800:7800 shardcast          # standalone node, system "demo"
#
# Without (scripts/container-test.sh): a base image made from Debian packages by
# mmdebstrap, and the binary built on the host (cargo build --release), taken
# from target/release/shardcast of the build context:
#   podman build --format docker --build-arg BINARY=prebuilt \
#     --build-arg RUNTIME_IMAGE=localhost/shardcast-base:bookworm -t shardcast .
#
# Configuration: /etc/shardcast/shardcast.toml (conf/shardcast.toml, a standalone
# node; mount your own over it) and any SHARDCAST_<SECTION>_<KEY> variable, which
# wins over the file (docs/api.md §6).

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
# `build` (compile in the image) or `prebuilt` (target/release/shardcast).
ARG BINARY=build

FROM ${RUST_IMAGE} AS build
# protoc: etcd-client generates its gRPC code at build time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY benches benches
COPY src src
# The workspace's other member: cargo reads its manifest even when it builds
# the node alone.
COPY bench bench
# Debug info stripped: 60 MB → 10 MB; symbols stay for backtraces.
RUN cargo build --release --locked --bin shardcast \
 && mkdir /out \
 && objcopy --strip-debug target/release/shardcast /out/shardcast

FROM scratch AS prebuilt
COPY target/release/shardcast /out/shardcast

FROM ${BINARY} AS binary

FROM ${RUNTIME_IMAGE}
# curl for the health check (the mmdebstrap base of scripts/container-test.sh
# has it already); an unprivileged user that owns the data directory.
RUN if ! command -v curl >/dev/null; then \
      apt-get update \
      && apt-get install -y --no-install-recommends curl ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && groupadd --gid 10001 shardcast \
 && useradd --no-log-init --uid 10001 --gid shardcast --home-dir /var/lib/shardcast \
      --shell /usr/sbin/nologin shardcast \
 && install -d -o shardcast -g shardcast -m 0750 /var/lib/shardcast
COPY --from=binary /out/shardcast /usr/local/bin/shardcast
COPY conf/shardcast.toml /etc/shardcast/shardcast.toml
# server.data_dir ("data" in the default file) is relative to this directory.
WORKDIR /var/lib/shardcast
USER shardcast
# 7800: HTTP API, WebSocket, console, /healthz, /readyz, /metrics.
# 7900: cluster links (node to node only; never publish it to clients).
EXPOSE 7800 7900
# The process answers /healthz while it runs; orchestrators that route traffic
# should probe /readyz (ready once every worker listens and, in a cluster, the
# node has joined).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD curl -fsS -o /dev/null http://127.0.0.1:7800/healthz || exit 1
# SIGTERM drains for server.shutdown_timeout (10 s): give `docker stop` -t 20.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/shardcast", "--config", "/etc/shardcast/shardcast.toml"]
