#!/usr/bin/env bash
# The README's main job, on a fresh Debian 12 machine as root: install everything
# (scripts/bootstrap.sh), then build the Linux Mobile IPv6 HOWTO test bed in network
# namespaces and watch the Mobile Node travel visitnet -> visitnet2 -> home while the
# CN pings its home address (nfq-mip6 demo; extra arguments are passed on, see
# `nfq-mip6 demo --help`). The test bed is removed at the end, also on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "demo: needs root (network namespaces, bridges, radvd): run bash scripts/demo.sh as root" >&2
  exit 1
fi
bash scripts/bootstrap.sh
exec .venv/bin/nfq-mip6 demo "$@"
