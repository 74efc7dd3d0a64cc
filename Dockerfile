# One image per binary: `docker build --build-arg BIN=shop-user -t shop-user .`
# (skaffold.yaml builds all four). The build stage compiles only the requested binary; the
# runtime stage is a slim Debian with CA certificates, running as an unprivileged user.
FROM rust:1.95-bookworm AS build
ARG BIN
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin "${BIN}" && cp "target/release/${BIN}" /usr/local/bin/app

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 shop && useradd --uid 10001 --gid 10001 --no-create-home shop
COPY --from=build /usr/local/bin/app /usr/local/bin/app
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/app"]
