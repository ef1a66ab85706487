# syntax=docker/dockerfile:1
# The imagestreams image: one binary that runs every service (`up`, the
# default) or one of them (`serve <service>`), as a non-root user.
#
#   docker build -t imagestreams:dev .
#   docker run --rm -p 50051:50051 -p 8080:8080 -p 8085:8085 \
#     -e IMAGESTREAMS_NATS__URL=nats://my-nats:4222 \
#     -e IMAGESTREAMS_REGISTRY_WATCHER__TOKEN=… imagestreams:dev

ARG RUST_VERSION=1
ARG DEBIAN_RELEASE=bookworm

# ---- build: the release binary, with the cargo registry and target cached
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p imagestreams \
 && install -D -m 0755 target/release/imagestreams /out/imagestreams

# ---- runtime: Debian slim with curl for health checks, uid 65532
FROM debian:${DEBIAN_RELEASE}-slim
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="imagestreams" \
      org.opencontainers.image.description="OpenShift-style image streams for any container registry, over NATS JetStream" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 imagestreams \
 && useradd --system --uid 65532 --gid 65532 --home-dir /var/lib/imagestreams \
      --create-home --shell /usr/sbin/nologin imagestreams \
 && install -d -o 65532 -g 65532 -m 0700 /var/lib/imagestreams/registry-keys
COPY --from=build /out/imagestreams /usr/local/bin/imagestreams
USER 65532:65532
WORKDIR /var/lib/imagestreams
# Defaults for a container: listen on every interface, NATS at nats:4222,
# never start a NATS server, JSON logs. IMAGESTREAMS_* variables override them.
COPY deploy/container/imagestreams.toml /etc/imagestreams/imagestreams.toml
ENV IMAGESTREAMS_CONFIG=/etc/imagestreams/imagestreams.toml
# gRPC API, HTTP (REST, health, metrics), stream-store, tag-syncer, trigger, registry notifications
EXPOSE 50051 8080 8081 8082 8083 8085 8086
STOPSIGNAL SIGTERM
ENTRYPOINT ["imagestreams"]
CMD ["up"]
