#!/usr/bin/env bash
# Builds the parallelrun image from the Dockerfile with podman, into root's local storage.
#
#   bash scripts/build-image.sh            # localhost/parallelrun:<appVersion of the chart>
#   bash scripts/build-image.sh 0.1.0-dev  # localhost/parallelrun:0.1.0-dev
#   bash scripts/build-image.sh registry.example.com/parallelrun:0.1.0   # any full reference
#
# Needs what scripts/install-tools.sh installs (podman, runc, debootstrap). Only Debian's mirror
# is used: when the Dockerfile's base images (debian:bookworm, debian:bookworm-slim) are not in
# local storage they are made with debootstrap, and the root file system is kept as a tarball in
# $PARALLELRUN_CACHE_DIR (default /var/cache/parallelrun) for the next time.
#
# The build stage compiles with ccache: this script lends it the host's ccache (and its key
# settings) and builds in the folder the host builds in (--build-arg SRC=<this checkout>), so the
# compile commands are the host's and an image built after a host build compiles little. The
# host build must use LANG=C.UTF-8 (as the build stage does; ccache keys include it) and, where
# the host's -dev packages are older than Debian's current ones, CCACHE_SLOPPINESS=system_headers:
# scripts/test.sh sets both. apt in the build also reuses the host's downloaded packages. None of
# this changes the image, and `docker build .` builds the same Dockerfile without them (in /src).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "build-image: $*" >&2; exit 1; }

version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' charts/parallelrun/Chart.yaml)"
[ -n "$version" ] || fail "charts/parallelrun/Chart.yaml has no appVersion"
case "${1:-}" in
  "") image="localhost/parallelrun:$version" ;;
  */* | *:*) image="$1" ;;
  *) image="localhost/parallelrun:$1" ;;
esac
cache_dir="${PARALLELRUN_CACHE_DIR:-/var/cache/parallelrun}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
command -v podman >/dev/null || fail "podman is not installed (run scripts/install-tools.sh)"

# Makes docker.io/library/debian:<suite> (and :<suite>-slim) from a debootstrap root file system
# with the apt sources of Docker Hub's Debian images (the release, its updates, security).
make_base_image() {
  local suite="$1" tarball="$cache_dir/debian-$1-minbase.tar"
  if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null ||
      fail "debootstrap is not installed (run scripts/install-tools.sh)"
    echo "build-image: making the debian:$suite base image with debootstrap ($mirror)" >&2
    mkdir -p "$cache_dir"
    local rootfs
    rootfs="$(mktemp -d "$cache_dir/rootfs.XXXXXX")"
    chmod 0755 "$rootfs"  # the image's /
    debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 ||
      { tail -20 "$rootfs.log" >&2; rm -rf "$rootfs"; fail "debootstrap failed"; }
    rm -f "$rootfs/etc/apt/sources.list" "$rootfs.log"
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\n%s\n\n%s\n%s\n%s\n%s\n%s\n' \
      "$mirror" "$suite" "$suite" \
      'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' \
      'Types: deb' "URIs: ${mirror%/debian}/debian-security" "Suites: $suite-security" \
      'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' \
      >"$rootfs/etc/apt/sources.list.d/debian.sources"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar --numeric-owner -C "$rootfs" -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    rm -rf "$rootfs"
  fi
  podman import --change 'CMD ["bash"]' "$tarball" "localhost/debian:$suite" >/dev/null
  podman tag "localhost/debian:$suite" "docker.io/library/debian:$suite" \
    "docker.io/library/debian:$suite-slim"
}
for base in debian:bookworm debian:bookworm-slim; do
  podman image exists "docker.io/library/$base" || make_base_image bookworm
done

# The host's ccache and apt download cache, lent to the build's RUN steps.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
volumes=()
if command -v ccache >/dev/null; then
  host_cache="$(ccache -k cache_dir)"
  mkdir -p "$host_cache"
  # The host's own key rules: the build stage compiles in the same folder as the host (SRC).
  printf '%s\n' 'cache_dir = /ccache' "base_dir = $(ccache -k base_dir)" \
    "hash_dir = $(ccache -k hash_dir)" "sloppiness = $(ccache -k sloppiness)" \
    "compiler_check = $(ccache -k compiler_check)" "max_size = $(ccache -k max_size)" \
    'stats_log = /ccache-stats/stats.log' >"$work/ccache.conf"
  volumes+=(--volume "$host_cache:/ccache" --volume "$work:/ccache-stats"
            --volume "$work/ccache.conf:/root/.config/ccache/ccache.conf:ro")
fi
if [ -d /var/cache/apt/archives ]; then
  volumes+=(--volume /var/cache/apt/archives:/var/cache/apt/archives)
fi

echo "build-image: building $image" >&2
start=$SECONDS
podman build --network=host --build-arg "VERSION=$version" --build-arg "SRC=$PWD" \
  "${volumes[@]}" --tag "$image" .
if [ -s "$work/stats.log" ]; then
  echo "build-image: the build stage's ccache use:" >&2
  CCACHE_STATSLOG="$work/stats.log" ccache --show-log-stats >&2
fi
echo "build-image: built $image in $((SECONDS - start)) s" >&2
