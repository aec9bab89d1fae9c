# The parallelrun image: `parallelrun` (local runs, coordinator, agents), `parallelrun-operator`,
# the native host, python3 with pandas and the Python host. One image serves the operator
# Deployment (charts/parallelrun) and, by default, the pods of every job.
#
#   docker build -t parallelrun:0.1.0 .
#   bash scripts/build-image.sh          # with podman, as CI does (localhost/parallelrun:0.1.0)
#
# The build stage installs, builds and unit-tests with the same scripts CI runs (.ci/run ->
# scripts/test.sh), so CI proves every command here; tests/chart/test_dockerfile.py checks that.

FROM debian:bookworm AS build
WORKDIR /src
# The one package list (a separate layer, so code changes do not re-install packages).
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN bash scripts/install-deps.sh
# Where the sources are built: /src, or the host's checkout folder when scripts/build-image.sh
# builds, and the locale scripts/test.sh builds with, so that the compile commands (and the
# ccache that build-image.sh lends the build, whose keys include both) match the host's.
ARG SRC=/src
# A RUN that names SRC: podman's layer cache keys WORKDIR and COPY by their unexpanded text, so
# without it a build from another checkout folder would reuse the layers of the last one.
RUN mkdir -p "${SRC}"
WORKDIR ${SRC}
ENV LANG=C.UTF-8
COPY . .
# Build, then the unit tests (the label the asan test preset runs in CI), except the test
# cluster's container tests: they unshare mount namespaces, which an unprivileged `docker build`
# does not allow, and the test cluster is not part of the image (CI runs them). One RUN that ends
# by deleting all of build/ but the three shipped binaries and share/: the layer keeps ~0.1 GB
# instead of the whole build tree (3 GB, which a CI machine once ran out of disk committing).
RUN bash scripts/build.sh default \
 && ctest --preset default --label-regex unit \
      --exclude-regex '^(ContainerProcessTest|PodRunnerTest|KubeletTest)\.' \
 && find build -mindepth 1 -maxdepth 1 ! -name bin ! -name share -exec rm -rf {} + \
 && find build/bin -type f ! -name parallelrun ! -name parallelrun-operator \
      ! -name parallelrun-native-host -delete

FROM debian:bookworm-slim
ARG VERSION=0.1.0
ARG SOURCE=""
ARG LICENSES=NOASSERTION
LABEL org.opencontainers.image.title="parallelrun" \
      org.opencontainers.image.description="Parallel runs of an entry script over large inputs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="${LICENSES}"

# Runtime libraries of the binaries (the -dev packages of scripts/install-deps.sh pull these in
# the build stage), python3 + pandas for entry scripts. tests/chart/test_dockerfile.py checks
# that every library the binaries load comes from this list or from the base image.
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      ca-certificates libcpprest2.10 libfmt9 libspdlog1.10 libssl3 libyaml-cpp0.7 \
      python3 python3-pandas \
 && rm -rf /var/lib/apt/lists/*

# The binaries in /usr/local/bin; the Python host where the agent looks for it
# (<exe dir>/../share/parallelrun/python, see runtime/worker/worker.h).
ARG SRC=/src
COPY --from=build ${SRC}/build/bin/parallelrun ${SRC}/build/bin/parallelrun-operator \
     ${SRC}/build/bin/parallelrun-native-host /usr/local/bin/
COPY --from=build ${SRC}/build/share/parallelrun/python /usr/local/share/parallelrun/python
# The C header of native entry points (runtime/hosts/native/README.md), for images built on this.
COPY runtime/hosts/native/parallelrun_native.h /usr/local/include/parallelrun/

# Non-root, with the uid the chart's securityContext sets (runAsUser 10001).
RUN groupadd --gid 10001 parallelrun \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin parallelrun
USER 10001:10001
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /tmp
CMD ["parallelrun", "--help"]
