# The Runnel image: a Rust builder stage and a slim Debian runtime.
#
#   docker build -t runnel:latest .
#   docker run -d -p 9092:9092 -e RUNNEL_ADVERTISED_LISTENERS=PLAINTEXT://localhost:9092 runnel:latest
#
# Configuration: environment variables (RUNNEL_NODE_ID, RUNNEL_LISTENERS, RUNNEL_VOTERS,
# RUNNEL_CFG_<KEY>, ...; see deploy/docker/docker-entrypoint.sh and docs/configuration.md)
# and/or a mounted properties file named by RUNNEL_CONFIG_FILE. Data lives in the volume
# /var/lib/runnel. Offline (no registry), scripts/docker-offline-image.sh builds the same runtime
# stage from a host binary with deploy/docker/Dockerfile.prebuilt; keep the two in step.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src

# Dependencies first, against stub crates, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY proto proto
COPY crates/protocol/Cargo.toml crates/protocol/
COPY crates/storage/Cargo.toml crates/storage/
COPY crates/replication/Cargo.toml crates/replication/build.rs crates/replication/
COPY crates/controller/Cargo.toml crates/controller/build.rs crates/controller/
COPY crates/broker/Cargo.toml crates/broker/
COPY crates/cli/Cargo.toml crates/cli/
COPY crates/security/Cargo.toml crates/security/
COPY crates/client/Cargo.toml crates/client/
COPY crates/coordinator/Cargo.toml crates/coordinator/
RUN set -eux; \
    for c in protocol storage replication controller broker cli security client coordinator; do \
        mkdir -p crates/$c/src; : > crates/$c/src/lib.rs; \
    done; \
    echo 'fn main() {}' > crates/cli/src/main.rs; \
    cargo build --release --locked -p runnel; \
    rm -rf crates/*/src

# Then the sources (touched: COPY keeps their older modification times). The image has no git
# checkout: `--build-arg RUNNEL_COMMIT=$(git rev-parse --short=12 HEAD)` names the commit that
# `runnel --version` prints.
ARG RUNNEL_COMMIT=
COPY crates crates
RUN set -eux; \
    find crates -name '*.rs' -exec touch {} +; \
    cargo build --release --locked -p runnel; \
    strip --strip-debug -o /usr/local/bin/runnel target/release/runnel; \
    /usr/local/bin/runnel --version

FROM debian:bookworm-slim AS runtime
# --- the runtime stage; deploy/docker/Dockerfile.prebuilt repeats it from here ---
RUN set -eux; \
    groupadd --system --gid 10001 runnel; \
    useradd --system --uid 10001 --gid runnel --home-dir /var/lib/runnel --no-create-home \
        --shell /usr/sbin/nologin runnel; \
    mkdir -p /var/lib/runnel/data; \
    chown -R runnel:runnel /var/lib/runnel
COPY --from=builder /usr/local/bin/runnel /usr/local/bin/runnel
COPY deploy/docker/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV RUNNEL_DATA_DIR=/var/lib/runnel/data \
    RUNNEL_LISTENERS=PLAINTEXT://:9092 \
    RUNNEL_HEALTH_SERVER=localhost:9092
USER runnel
WORKDIR /var/lib/runnel
VOLUME ["/var/lib/runnel"]
# 9092: Kafka clients; 9093: inter-node gRPC (metadata quorum and replication).
EXPOSE 9092 9093
# Healthy once the node answers Metadata, a controller is known, and (when RUNNEL_NODE_ID is a
# number) this node is a registered, unfenced broker.
HEALTHCHECK --interval=5s --timeout=6s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/docker-entrypoint.sh", "health"]
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["server"]
