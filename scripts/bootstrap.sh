#!/usr/bin/env bash
# Install everything nfq_mip6 needs on a fresh Debian 12 machine (run as root):
# the system packages (build chain for NetfilterQueue, iproute2, ip6tables, radvd,
# capture tools, iperf3, clang and libbpf headers for the route-optimization tc programs,
# what the TAHI conformance tester in tools/tahi builds with),
# the BPF objects (scripts/build-bpf.sh) and a Python virtual environment in .venv with the
# project installed in editable mode plus its dev extras.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  gcc python3-dev python3-venv libnetfilter-queue-dev pkgconf
  iproute2 iptables radvd ndisc6 tcpdump tshark iperf3 iputils-ping procps kmod ethtool
  clang libbpf-dev
  # tools/tahi (TAHI v6eval, the conformance smoke test): C++ build chain, packet grammar,
  # capture and crypto libraries, the perl modules its sequences load
  build-essential flex libfl-dev bison libpcap-dev libssl-dev libtirpc-dev
  perl libexpect-perl libio-stty-perl libio-pty-perl libyaml-perl libdigest-hmac-perl
  # the cluster store's tests start their own etcd on unused loopback ports
  # (tests/support/etcd.py); a packaged service that starts on 2379 does not disturb them
  etcd-server
  # the cluster test bed (nfq-mip6 testbed up --cluster N): VRRPv3 for the virtual HA's
  # address and MAC; no service is started (the test bed runs one per HA host namespace)
  keepalived
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: missing system packages (${missing[*]}); run as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

bash scripts/build-bpf.sh

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.nfq-mip6-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev,cluster]'
  touch "$stamp"
fi
echo "bootstrap: ok ($(.venv/bin/python --version), $(ip6tables --version))"
