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
fi

cd "$repo"
exec "$python" -m pytest "$@"
