#!/usr/bin/env bash
# Run the test suite with the project's virtual environment.
#
# As root, the root tier runs against the real kernel and a skipped root test
# fails the run (AGENT_TRACER_REQUIRE_ROOT=1). As another user only the
# unprivileged tier runs. Extra arguments go to pytest.
#
# Usage: sudo scripts/test.sh [PYTEST-ARGS...]
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
python="$repo/.venv/bin/python"

if [ ! -x "$python" ]; then
	echo "test.sh: $python is missing; run scripts/setup.sh first" >&2
	exit 2
fi

if [ "$(id -u)" -eq 0 ]; then
	export AGENT_TRACER_REQUIRE_ROOT=${AGENT_TRACER_REQUIRE_ROOT:-1}

	# The root tier cross-checks with strace, builds a 32-bit program and
	# lists loaded BPF programs with bpftool.
	if [ "${AGENT_TRACER_OFFLINE:-0}" != 1 ] && command -v apt-get >/dev/null &&
		! { command -v strace && command -v gcc && command -v bpftool; } >/dev/null; then
		echo "test.sh: installing strace, gcc and bpftool for the root tests" >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q strace gcc bpftool >&2
	fi
fi

cd "$repo"
exec "$python" -m pytest "$@"
