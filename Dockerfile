# meshprobe: one image with all three binaries (meshprobe-agent, meshprobe-aggregator,
# meshprobe). Build:  docker build -t meshprobe:0.1.0 .   (or podman build; see
# docs/operations.md "Build the image", and tests/image, which builds and runs it)
#
# Stage 1 builds with the project's own scripts on Debian 12, so the image links the
# same Debian library versions the tests ran against. Stage 2 is bookworm-slim with
# exactly the packages the binaries load (ldd) or exec (the agent's iptables-save / nft
# reads); tests/deploy checks both lists against the built binaries.

FROM debian:bookworm AS build
WORKDIR /src
# Build packages first, in a layer of their own that is rebuilt only when setup.sh changes.
# setup.sh installs every Debian package the build needs; MESHPROBE_SETUP_TEST_TOOLS=0
# skips the test-only tools (Prometheus, Chromium, kubectl, the npm modules).
COPY scripts/setup.sh /src/scripts/setup.sh
RUN MESHPROBE_SETUP_TEST_TOOLS=0 bash scripts/setup.sh \
 && rm -rf /var/lib/apt/lists/*
COPY . /src
# With tests and benchmarks off, the only executables CMake knows are the three shipped.
# -O2, as the test suite builds them: GCC 12 at Release's -O3 raises false -Wrestrict and
# -Wmaybe-uninitialized warnings in inlined std::string code, which -Werror makes errors.
RUN BUILD_DIR=/build BUILD_TYPE=Release bash scripts/build.sh \
      -DMESHPROBE_BUILD_TESTS=OFF -DMESHPROBE_BUILD_BENCH=OFF -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
 && mkdir -p /out \
 && install -m 0755 -s /build/agent/meshprobe-agent /build/aggregator/meshprobe-aggregator /build/cli/meshprobe /out/

FROM debian:bookworm-slim
LABEL org.opencontainers.image.title="meshprobe" \
      org.opencontainers.image.description="Network probes and a node doctor for Istio ambient on flannel VXLAN" \
      org.opencontainers.image.version="0.1.0"
# Runtime packages, one per line, nothing else:
#   shared libraries (from `ldd` on the binaries, mapped with `dpkg -S`):
#     libabsl20220623 libboost-program-options1.74.0 libc-ares2 libfmt9 libgrpc++1.51
#     libgrpc29 libjemalloc2 libmnl0 libprotobuf32 libre2-9 libspdlog1.10 libssl3 libstdc++6 libyaml-cpp0.7 zlib1g
#   programs the agent execs (in the host's and pods' network namespaces):
#     iptables  iptables-{nft,legacy}-save, ip6tables-{nft,legacy}-save, iptables-save
#     nftables  nft -j list chains / nft -j list table
# Not installed: iproute2 (the agent reads links, routes and sockets over netlink itself),
# ca-certificates (istiod's chain is verified only against --istiod-ca).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libabsl20220623 \
      libboost-program-options1.74.0 \
      libc-ares2 \
      libfmt9 \
      libgrpc++1.51 \
      libgrpc29 \
      libjemalloc2 \
      libmnl0 \
      libprotobuf32 \
      libre2-9 \
      libspdlog1.10 \
      libssl3 \
      libstdc++6 \
      libyaml-cpp0.7 \
      zlib1g \
      iptables \
      nftables \
 && rm -rf /var/lib/apt/lists/*
# The aggregator and the CLI run as this user (uid/gid 65532; the aggregator Deployment
# sets runAsUser: 65532, runAsNonRoot). The agent DaemonSet runs as root (runAsUser: 0)
# with the capabilities listed in manifests/base/agent-daemonset.yaml.
RUN groupadd --system --gid 65532 meshprobe \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin meshprobe
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
# 9470 gRPC and 9471 HTTP (aggregator); 9472 HTTP and 9473 UDP+TCP probes (agent).
EXPOSE 9470/tcp 9471/tcp 9472/tcp 9473/tcp 9473/udp
CMD ["/usr/local/bin/meshprobe", "--help"]
