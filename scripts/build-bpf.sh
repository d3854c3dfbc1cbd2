#!/usr/bin/env bash
# Build the route-optimization tc programs (nfq_mip6/dataplane/bpf/*.bpf.c -> *.bpf.o) with
# clang at install time; the agent only loads the objects (docs/route-optimization.md).
# Needs clang and libbpf-dev (scripts/bootstrap.sh installs them). Rebuilds only stale objects.
set -euo pipefail
cd "$(dirname "$0")/.."
CLANG=${CLANG:-clang}
arch_include="/usr/include/$(uname -m)-linux-gnu"
for src in nfq_mip6/dataplane/bpf/*.bpf.c; do
  obj="${src%.c}.o"
  if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ]; then
    # -g: the maps are BTF-defined; the arch directory holds asm/types.h.
    "$CLANG" -O2 -g -Wall -Werror -target bpf -I"$arch_include" -c "$src" -o "$obj"
  fi
done
echo "build-bpf: ok ($(ls nfq_mip6/dataplane/bpf/*.bpf.o | xargs -n1 basename | tr '\n' ' '))"
