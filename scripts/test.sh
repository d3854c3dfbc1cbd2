#!/usr/bin/env bash
# Set up a fresh Debian 12 machine (as root) and run the whole test suite:
# unit tests (no root needed) and the integration tests that build the test bed in
# network namespaces (marked netns; skipped when not root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest: no tests collected" >&2
  exit 0
fi
exit "$rc"
