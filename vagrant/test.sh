#!/usr/bin/env bash
# Run agent-tracer's tests on a machine that vagrant/install.sh provisioned:
# the unprivileged suite as a normal user, `agent-tracer check` as root, then
# the root suite as root. Every step runs even when an earlier one failed;
# the script exits 1 if any step failed.
#
# The Vagrantfile runs it as the "test" provisioner, on request:
#   vagrant provision --provision-with test
# and the VM test stage (.ci/vm) runs it in its guest.
#
# Usage: sudo vagrant/test.sh [REPO [PYTEST-ARGS...]]
#   REPO          the agent-tracer checkout (default: the parent of this
#                 script's directory)
#   PYTEST-ARGS   passed to both pytest runs, e.g. -x or -k fork
#
# Environment:
#   AGENT_TRACER_TEST_USER   the normal user for the unprivileged suite
#                            (default: the owner of REPO, which must be able
#                            to write pytest's cache there)
set -eux -o pipefail

repo=${1:-$(cd "$(dirname "$0")/.." && pwd)}
shift || true
user=${AGENT_TRACER_TEST_USER:-$(stat -c %U "$repo")}

if [ "$(id -u)" -ne 0 ]; then
	echo "test.sh: must run as root (try: sudo $0 $*)" >&2
	exit 2
fi

if [ ! -x "$repo/scripts/test.sh" ]; then
	echo "test.sh: $repo/scripts/test.sh not found; pass the agent-tracer checkout as the first argument" >&2
	exit 2
fi

if [ "$user" = root ] || ! home=$(getent passwd "$user" | cut -d: -f6); then
	echo "test.sh: the unprivileged suite needs a normal user, got '$user': set AGENT_TRACER_TEST_USER or chown $repo to one" >&2
	exit 2
fi

failed=()

# Run one step and record its result without stopping the script.
run_step() {
	local name=$1 start=$SECONDS status=0
	shift

	"$@" || status=$?

	if [ "$status" -eq 0 ]; then
		echo "test.sh: step $name passed in $((SECONDS - start)) s"
	else
		echo "test.sh: step $name FAILED with exit status $status after $((SECONDS - start)) s"
		failed+=("$name")
	fi
}

run_step unprivileged runuser -u "$user" -- env HOME="$home" "$repo/scripts/test.sh" -m "not root" "$@"
run_step check agent-tracer check
run_step root "$repo/scripts/test.sh" -m root "$@"

set +x
if [ "${#failed[@]}" -ne 0 ]; then
	echo "test.sh: failed steps: ${failed[*]}"
	exit 1
fi
echo "test.sh: all steps passed"
