# syntax=docker/dockerfile:1.7
# One image per binary: `docker build --build-arg BIN=shop-user -t shop-user .` (BIN defaults to
# shop-gateway; skaffold.yaml builds all four). Dependencies are compiled in a layer of their own
# (cargo-chef): it is rebuilt only when Cargo.toml/Cargo.lock change, not on every source edit.
# The runtime image is distroless (glibc, CA certificates, no shell, no package manager) and
# runs as the numeric non-root user 10001, which the chart's securityContext also sets.
#
# Base images: the build image is pinned by its exact version, the runtime image by digest.
# Pass BUILD_IMAGE=rust:<version>@sha256:<digest> to pin the build image by digest as well.
ARG BUILD_IMAGE=rust:1.95.0-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f

FROM ${BUILD_IMAGE} AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

# The recipe: the workspace's manifests and lock file, nothing else.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
ARG BIN=shop-gateway
COPY --from=planner /src/recipe.json recipe.json
# The dependencies of BIN, cached as a layer (and in the registry cache mount).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo chef cook --release --locked --recipe-path recipe.json --bin "${BIN}"
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked --bin "${BIN}" \
    && install -D "target/release/${BIN}" /out/app

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/app /usr/local/bin/app
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/app"]
