# syntax=docker/dockerfile:1
# Sluice worker image: Swift builder → slim Debian 12 runtime, non-root.
#
#   docker build -t sluice:latest .
#   docker run --rm -v "$PWD/models:/models:ro" -e SLUICE_KAFKA_BROKERS=host:9092 sluice:latest
#
# The model is not baked in: mount the directory holding it at /models (ops/bootstrap puts the
# default model in models/). The audit database lives on the /var/lib/sluice volume.
ARG SWIFT_IMAGE=swift:6.3-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${SWIFT_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config ca-certificates \
      libssl-dev libsasl2-dev libzstd-dev liblz4-dev zlib1g-dev libcurl4-openssl-dev \
      libopenblas-dev libsqlite3-dev \
 && rm -rf /var/lib/apt/lists/*
# librdkafka >= 2.1.2 (Debian 12 has 2.0.2): the same script ops/bootstrap runs.
COPY ops/install-librdkafka /usr/local/bin/install-librdkafka
RUN install-librdkafka 2.8.0 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
RUN swift package resolve
COPY Sources ./Sources
RUN swift build -c release --static-swift-stdlib --product sluice \
 && install -D -m 0755 "$(swift build -c release --show-bin-path)/sluice" /out/sluice

FROM ${RUNTIME_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl tzdata \
      libopenblas0-pthread libsqlite3-0 libssl3 libsasl2-2 libsasl2-modules libzstd1 liblz4-1 zlib1g libcurl4 libstdc++6 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/lib/librdkafka.so.1 /usr/local/lib/librdkafka.so.1
RUN ldconfig
COPY --from=build /out/sluice /usr/local/bin/sluice
COPY Config/sluice.yaml /etc/sluice/sluice.yaml
COPY Config/knowledge-base.jsonl /etc/sluice/knowledge-base.jsonl
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/sluice --create-home --shell /usr/sbin/nologin sluice
USER 10001:10001
WORKDIR /var/lib/sluice
ENV SLUICE_AUDIT_DB=/var/lib/sluice/audit.sqlite \
    SLUICE_WORKER_MODEL=/models/gemma-3-270m-q4_k_m.gguf \
    SLUICE_WORKER_METRICS_PORT=9400
VOLUME ["/var/lib/sluice"]
EXPOSE 9400
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${SLUICE_WORKER_METRICS_PORT:-9400}/healthz" || exit 1
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["run", "--config", "/etc/sluice/sluice.yaml"]
