# Tollgate container image: a release build in a Rust builder stage, then only the
# stripped binary and a default config in a small runtime stage that runs as non-root
# with a read-only root filesystem (the only writable place is the /var/lib/tollgate
# volume: the SQLite default store and the generated development signing key).
#
#   docker build -t tollgate .
#   docker run --read-only -p 8080:8080 -v tollgate-data:/var/lib/tollgate tollgate
#
# Base images are build arguments so a registry mirror or an air-gapped build can name
# its own (docs/operations.md, "Container image"). CARGO_NET_OFFLINE=true builds from a
# cargo home that already holds the crates (`cargo fetch --locked` beforehand).

ARG BUILDER_IMAGE=docker.io/library/rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILDER_IMAGE} AS build
ARG CARGO_NET_OFFLINE=false
# The official rust image's own locations, spelled out so a builder base whose toolchain
# is mounted at these paths (CI does) builds the same way.
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CARGO_NET_OFFLINE=${CARGO_NET_OFFLINE} \
    CARGO_TERM_COLOR=never
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tollgate \
 && mkdir -p /out/var/lib/tollgate \
 && cp target/release/tollgate /out/tollgate \
 && strip /out/tollgate

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/tollgate /usr/local/bin/tollgate
COPY deploy/container/tollgate.yaml /etc/tollgate/tollgate.yaml
# The data directory must exist owned by the runtime user for a fresh volume to be
# writable by it (Docker and podman copy the ownership into a new named volume).
COPY --from=build --chown=65532:65532 /out/var/lib/tollgate /var/lib/tollgate
ENV TOLLGATE_CONFIG=/etc/tollgate/tollgate.yaml \
    TOLLGATE_LOG_FORMAT=json
WORKDIR /var/lib/tollgate
USER 65532:65532
VOLUME ["/var/lib/tollgate"]
# 8080 HTTP (and h2c), 8443 HTTPS when tls is configured, 9090 admin (/healthz, /readyz,
# /metrics: keep it off any public network).
EXPOSE 8080 8443 9090
# The runtime image has no shell or curl: the binary checks its own admin /healthz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/tollgate", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/tollgate"]
CMD ["serve"]
