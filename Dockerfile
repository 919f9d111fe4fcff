# The ambient image: FROM scratch with the static binary and one symlink per subcommand, nothing
# else (no shell, no libc, no CA bundle: the binary needs none of them).
#
# `make image` stages the build context in build/image/ (rootfs/usr/local/bin/ambient plus the
# symlinks ztunnel, waypoint, cni, ca, ctl -> ambient) and builds this file with docker, or with
# buildah when no docker daemon runs. To build the binary inside a container as well (a machine
# with registry access), see the multi-stage Dockerfile in docs/quickstart.md.
#
# The default user is 65532 (non-root): enough for `ca init|issue|token|serve`, `ctl` and
# `version`. ztunnel, waypoint with redirection and cni need root with NET_ADMIN and SYS_ADMIN:
#   docker run --user 0 --cap-add NET_ADMIN --cap-add SYS_ADMIN ... ambient ztunnel ...
FROM scratch

ARG VERSION=dev
ARG REVISION=unknown

LABEL org.opencontainers.image.title="ambient" \
      org.opencontainers.image.description="Sidecar-less zero-trust service mesh in one static binary: ztunnel, waypoint, cni, ca, ctl" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.documentation="README.md, docs/quickstart.md"

COPY rootfs/ /

ENV PATH=/usr/local/bin
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ambient"]
CMD ["help"]
