#!/usr/bin/env bash
# Fetches the real third-party tools the tests and the demo run against, from Debian sid,
# into a cache folder, without installing anything into the system (no `apt-get install`).
# Prints the bin directory on stdout. Idempotent: a complete cache is reused.
#
#   PULLGUARD_TOOLS_DIR  cache folder (default: ~/.cache/pullguard/tools)
set -euo pipefail

# runc: the OCI runtime containerd's runc shim runs, for tests that start real containers (`ctr run`).
# It links the system's glibc, and sid's build needs a newer one than Debian 12 has: it comes from the
# machine's own release (bookworm), which the sources list below adds beside sid. Everything else is
# static Go (or busybox-static) and comes from sid.
# busybox-static: one static binary, the whole userland of the test images those containers run.
# docker.io: dockerd alone (no CLI), to show that Docker's pulls with the containerd image store never
# reach containerd's verifiers (test/e2e/coverage.test.ts).
PACKAGES=(containerd=2.1.9+ds1-5 cosign=3.1.1-2 notation=1.3.2-2 oras=1.3.3-1 docker-registry=2.8.3+ds1-3
  runc=1.1.5+ds1-1+deb12u1 busybox-static=1:1.38.0-3+b1 docker.io=28.5.2+dfsg4-5)
STAMP="v1:${PACKAGES[*]}"

dir=${PULLGUARD_TOOLS_DIR:-${HOME:-/root}/.cache/pullguard/tools}
bin="$dir/root/usr/bin"
if [[ -f "$dir/stamp" && "$(cat "$dir/stamp")" == "$STAMP" ]]; then
  echo "$bin"; exit 0
fi

rm -rf "$dir"
mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial" "$dir/debs" "$dir/root"
release=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
{
  echo 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main'
  if [[ -n "$release" && "$release" != sid ]]; then
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $release main"
  fi
} >"$dir/apt/sources.list"
apt_opts=(
  -o "Dir::Etc::SourceList=$dir/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$dir/apt/lists" -o "Dir::Cache=$dir/apt/cache"
  -o Debug::NoLocking=1 -o APT::Sandbox::User=root -q
)
apt-get "${apt_opts[@]}" update >&2
# Pinned versions: sid moves, and a newer build must not change what the tests prove.
# If sid has dropped a pinned version, fall back to the current one and say so.
for p in "${PACKAGES[@]}"; do
  if ! (cd "$dir/debs" && apt-get "${apt_opts[@]}" download "$p" >&2); then
    name=${p%%=*}
    # runc links glibc: its fallback is the machine's release's build, not sid's.
    [[ "$name" == runc && -n "$release" && "$release" != sid ]] && name="runc/$release"
    echo "fetch-tools: $p is no longer there; taking the current $name" >&2
    (cd "$dir/debs" && apt-get "${apt_opts[@]}" download "$name" >&2)
  fi
done
for deb in "$dir"/debs/*.deb; do dpkg -x "$deb" "$dir/root"; done
rm -rf "$dir/apt" "$dir/debs"
ln -sf ../sbin/dockerd "$bin/dockerd"
for t in containerd ctr cosign notation oras docker-registry runc busybox dockerd; do
  [[ -x "$bin/$t" ]] || { echo "fetch-tools: $t missing after unpack" >&2; exit 1; }
done
echo "$STAMP" >"$dir/stamp"
echo "$bin"
