# syntax=docker/dockerfile:1
# cdc-verifier container image: docker build -t cdc-verifier . (docker-compose.yml uses it)

FROM rust:1-bookworm AS build
# rdkafka is built from source (cmake-build); libssl-dev, zlib and a C++ compiler
# come with the rust image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin cdc-verifier \
 && install -m 0755 target/release/cdc-verifier /usr/local/bin/cdc-verifier

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/cdc-verifier /usr/local/bin/cdc-verifier
USER 10001:10001
ENTRYPOINT ["cdc-verifier"]
CMD ["run"]
