#!/usr/bin/env bash
# Installs pullguard as containerd's image verifier on this node: a thin wrapper around
# `pullguard node install`, kept for existing runbooks (README.md, "Installing on a node").
#
#   install/install.sh [--binary FILE] [pullguard node install flags...]
#
# --binary FILE   the single executable to install (default: dist/pullguard next to this script)
# Every other flag goes to `pullguard node install` (--policy FILE|DIR, --no-restart, --bin-dir DIR,
# --config PATH, --dropin PATH, --policy-dir DIR, ...; `pullguard node` lists them).
# DESTDIR=/some/root installs into that host root (`--root`); paths written into files stay the host's.
#
# Changed from the old script: --policy names the policy to install (the destination is --policy-dir,
# default /etc/pullguard); containerd is restarted when its effective configuration changed (pass
# --no-restart to leave that to you); `pullguard node uninstall` takes it all off again.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
binary="$(dirname "$here")/dist/pullguard"
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done
[[ -f "$binary" && -x "$binary" ]] || { echo "install.sh: $binary is missing or not executable (run \`make build\`, or pass --binary)" >&2; exit 2; }
exec "$binary" node install --executable "$binary" ${DESTDIR:+--root "$DESTDIR"} ${args[@]+"${args[@]}"}
