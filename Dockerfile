# syntax=docker/dockerfile:1
#
# Abacus node image: a static binary on distroless, running as non-root.
#
#   docker build -t abacus:dev .
#   docker run --rm -p 127.0.0.1:4000:4000 -v abacus-data:/data abacus:dev
#
# The entrypoint is `abacus agent`: arguments after the image name are agent
# flags (--node-name, --dc, --join, …). For the client commands, override it:
#   docker run --rm --entrypoint /abacus abacus:dev keygen
#
# There is no HEALTHCHECK: distroless has no shell or curl to run one. Probe
# GET /healthz (liveness) and GET /readyz (readiness) on port 4000 from the
# orchestrator instead (see docs/OPERATIONS.md and deploy/).

FROM golang:1.26-bookworm AS build
# A release passes its version and commit (docker build --build-arg
# VERSION=v1.2.0 --build-arg REVISION=$(git rev-parse HEAD) .); they show in
# abacus version and in abacus_build_info. Empty: "devel" and "unknown".
ARG VERSION=""
ARG REVISION=""
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/abacus-counter/abacus/internal/buildinfo.version=${VERSION} -X github.com/abacus-counter/abacus/internal/buildinfo.revision=${REVISION}" -o /out/abacus ./cmd/abacus \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/abacus /abacus
# An empty /data owned by the nonroot user (65532): a new named volume
# mounted there starts with this owner, so the agent can write to it.
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV ABACUS_DATA_DIR=/data \
    ABACUS_HTTP_ADDR=0.0.0.0:4000 \
    ABACUS_GOSSIP_ADDR=0.0.0.0:7946
VOLUME ["/data"]
# 4000: HTTP API. 7946: gossip, TCP and UDP (both are needed).
EXPOSE 4000/tcp 7946/tcp 7946/udp
# SIGTERM shuts down gracefully (stop taking requests, finish commits, send
# pending deltas, leave the cluster); allow it up to 30 s (docker stop -t 45).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/abacus", "agent"]
