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
#   PYTEST-ARGS   passed to both pytest runs, e.g. -x or -k fork; not -m,
#                 because each run sets its own marker expression
#
# Environment:
#   AGENT_TRACER_TEST_USER     the normal user for the unprivileged suite
#                              (default: the owner of REPO, which must be
#                              able to write pytest's cache there)
#   AGENT_TRACER_TEST_MARKER   a pytest marker expression that narrows both
#                              runs, e.g. "not soak"
#   AGENT_TRACER_TEST_STEPS    the steps to run, from "unprivileged check
#                              root" (the default), separated by spaces or
#                              commas; they run in that order
set -eux -o pipefail

repo=${1:-$(cd "$(dirname "$0")/.." && pwd)}
shift || true
user=${AGENT_TRACER_TEST_USER:-$(stat -c %U "$repo")}
marker=${AGENT_TRACER_TEST_MARKER:-}
steps=" $(echo "${AGENT_TRACER_TEST_STEPS:-unprivileged check root}" | tr ',' ' ') "

if [ "$(id -u)" -ne 0 ]; then
	echo "test.sh: must run as root (try: sudo $0 $*)" >&2
	exit 2
fi

if [ ! -x "$repo/scripts/test.sh" ]; then
	echo "test.sh: $repo/scripts/test.sh not found; pass the agent-tracer checkout as the first argument" >&2
	exit 2
fi

for step in $steps; do
	case "$step" in
	unprivileged | check | root) ;;
	*)
		echo "test.sh: unknown step '$step' in AGENT_TRACER_TEST_STEPS; the steps are unprivileged, check and root" >&2
		exit 2
		;;
	esac
done

if [ -z "${steps// /}" ]; then
	echo "test.sh: AGENT_TRACER_TEST_STEPS names no step; the steps are unprivileged, check and root" >&2
	exit 2
fi

has_step() { [[ "$steps" == *" $1 "* ]]; }

if has_step unprivileged; then
	if [ "$user" = root ] || ! home=$(getent passwd "$user" | cut -d: -f6); then
		echo "test.sh: the unprivileged suite needs a normal user, got '$user': set AGENT_TRACER_TEST_USER or chown $repo to one" >&2
		exit 2
	fi
fi

for arg in "$@"; do
	case "$arg" in
	-m | -m* | --markexpr | --markexpr=*)
		echo "test.sh: '$arg' would replace the marker expression of each run; set AGENT_TRACER_TEST_MARKER instead" >&2
		exit 2
		;;
	esac
done

unprivileged_marker="not root"
root_marker="root"
if [ -n "$marker" ]; then
	unprivileged_marker="not root and ($marker)"
	root_marker="root and ($marker)"
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

if has_step unprivileged; then
	run_step unprivileged runuser -u "$user" -- env HOME="$home" "$repo/scripts/test.sh" -m "$unprivileged_marker" "$@"
fi
if has_step check; then
	run_step check agent-tracer check
fi
if has_step root; then
	run_step root "$repo/scripts/test.sh" -m "$root_marker" "$@"
fi

set +x
if [ "${#failed[@]}" -ne 0 ]; then
	echo "test.sh: failed steps: ${failed[*]}"
	exit 1
fi
echo "test.sh: all steps passed"
