# oct, built from this repository (docs/distributed.md). Two stages: the Rust toolchain builds
# the one `oct` binary (the OCT command names are its subcommands); the runtime is Debian slim
# with CA certificates and python3 (for OCT's .py scripts), running as a non-root user.
#   docker build -t oct .
#   docker run --rm oct --help
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin oct \
 && strip target/release/oct

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin oct
COPY --from=build /src/target/release/oct /usr/local/bin/oct
USER 10001:10001
WORKDIR /home/oct
ENTRYPOINT ["oct"]
CMD ["--help"]
