#!/usr/bin/env bash
# Fetches the real third-party tools the tests and the demo run against, from Debian sid,
# into a cache folder, without installing anything into the system (no `apt-get install`).
# Prints the bin directory on stdout. Idempotent: a complete cache is reused.
#
#   PULLGUARD_TOOLS_DIR  cache folder (default: ~/.cache/pullguard/tools-<hash of the package list>, so
#                        worktrees or checkouts with different lists never wipe each other's cache)
set -euo pipefail

# NAME=VERSION[/SUITE]: SUITE (default sid) is where the fallback takes the current version from.
# runc comes from bookworm: sid's and trixie's builds need glibc 2.38, and the test machines run
# bookworm (glibc 2.36); a bookworm build also runs on every later Debian.
# docker.io: dockerd alone (no CLI), to show that Docker's pulls with the containerd image store, and
# its BuildKit's, never reach containerd's verifiers (test/e2e/coverage.test.ts); it needs glibc 2.34.
PACKAGES=(containerd=2.1.9+ds1-5 cosign=3.1.1-2 notation=1.3.2-2 oras=1.3.3-1 docker-registry=2.8.3+ds1-3
  kubectl=1.36.4+ds-1 runc=1.1.5+ds1-1+deb12u1/bookworm busybox-static=1:1.38.0-3+b1 docker.io=28.5.2+dfsg4-5)
STAMP="v2:${PACKAGES[*]}"

dir=${PULLGUARD_TOOLS_DIR:-${HOME:-/root}/.cache/pullguard/tools-$(sha256sum <<<"$STAMP" | cut -c1-12)}
bin="$dir/root/usr/bin"
if [[ -f "$dir/stamp" && "$(cat "$dir/stamp")" == "$STAMP" ]]; then
  echo "$bin"; exit 0
fi

rm -rf "$dir"
mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial" "$dir/debs" "$dir/root"
cat >"$dir/apt/sources.list" <<LIST
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main
LIST
apt_opts=(
  -o "Dir::Etc::SourceList=$dir/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$dir/apt/lists" -o "Dir::Cache=$dir/apt/cache"
  -o Debug::NoLocking=1 -o APT::Sandbox::User=root -q
)
apt-get "${apt_opts[@]}" update >&2
# Pinned versions: sid moves, and a newer build must not change what the tests prove.
# If sid has dropped a pinned version, fall back to the current one and say so.
for entry in "${PACKAGES[@]}"; do
  p=${entry%%/*} suite=sid
  [[ "$entry" == */* ]] && suite=${entry#*/}
  if ! (cd "$dir/debs" && apt-get "${apt_opts[@]}" download "$p" >&2); then
    echo "fetch-tools: $p is no longer in the archive; taking the current ${p%%=*} from $suite" >&2
    (cd "$dir/debs" && apt-get "${apt_opts[@]}" download "${p%%=*}/$suite" >&2)
  fi
done
for deb in "$dir"/debs/*.deb; do dpkg -x "$deb" "$dir/root"; done
rm -rf "$dir/apt" "$dir/debs"
# runc and dockerd are in /usr/sbin; link them next to the others so one PATH entry finds every tool.
ln -sf ../sbin/runc "$bin/runc"
ln -sf ../sbin/dockerd "$bin/dockerd"
for t in containerd ctr cosign notation oras docker-registry kubectl runc busybox dockerd; do
  [[ -x "$bin/$t" ]] || { echo "fetch-tools: $t missing after unpack" >&2; exit 1; }
done
echo "$STAMP" >"$dir/stamp"
echo "$bin"
