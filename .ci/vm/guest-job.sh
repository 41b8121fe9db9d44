#!/bin/bash
# The VM test stage's job, run as root inside the guest by guest-init.sh
# under the host's time limit, from the local copy of the repository. The
# guest has no network.
#
#  1. Check BCC itself with bcc-smoke.py.
#  2. Provision with vagrant/install.sh, offline: the same steps as the
#     Vagrantfile's "install" provisioner, ending in `agent-tracer check`.
#  3. Run `agent-tracer demo`, when the installed version has it. Processes
#     that it leaves running fail the step, because they would disturb the
#     tests.
#  4. Run vagrant/test.sh: the unprivileged suite, `agent-tracer check` and
#     the root suite, as the Vagrantfile's "test" provisioner does, or the
#     steps that run.sh --steps selects.
#
# A failure in steps 1-2 ends the job, because nothing after them can run.
# Steps 3 and 4 both run; the job exits 1 if either failed.
#
# Usage: guest-job.sh REPO USER
#   REPO   the local copy of the repository
#   USER   the normal user for the unprivileged suite, owner of REPO
set -u -o pipefail

repo=$1
user=$2

# run.sh sets the pytest arguments, the marker expression and the steps of
# vagrant/test.sh in job.env. These are the defaults.
pytest_args=()
pytest_marker=
test_steps=unprivileged,check,root
if [ -f /mnt/out/job.env ]; then
	. /mnt/out/job.env
fi

# Heavy test workloads (storms) shrink under emulation; their counts stay exact.
export AGENT_TRACER_TEST_SCALE=${AGENT_TRACER_TEST_SCALE:-0.05}

step() { echo; echo "=== guest-job: $* ($(date -u +%H:%M:%S) UTC)"; }
fail() { echo "guest-job: $*" >&2; exit 1; }

step "checking BCC on its own"
start=$SECONDS
/usr/bin/python3 "$repo/.ci/vm/bcc-smoke.py" || fail "BCC does not work on this kernel; see the output above"
echo "guest-job: bcc-smoke.py took $((SECONDS - start)) s"

step "provisioning with vagrant/install.sh (offline)"
start=$SECONDS
AGENT_TRACER_OFFLINE=1 "$repo/vagrant/install.sh" "$repo" || fail "vagrant/install.sh failed"
echo "guest-job: vagrant/install.sh took $((SECONDS - start)) s"

# Run `agent-tracer demo` in a cgroup of its own, so that processes it leaves
# behind are found, reported and killed before the tests start. guest-init.sh
# mounts cgroup2 at /sys/fs/cgroup; cgroup.kill needs kernel 5.14 or later.
run_demo() {
	local cgroup=/sys/fs/cgroup/agent-tracer-demo status=0 leftover

	if [ ! -f "$(dirname "$cgroup")/cgroup.controllers" ]; then
		echo "guest-job: $(dirname "$cgroup") is not a cgroup2 mount" >&2
		return 1
	fi
	mkdir "$cgroup" || return 1

	(echo "$BASHPID" >"$cgroup/cgroup.procs" && cd /tmp && exec agent-tracer demo) || status=$?

	leftover=$(cat "$cgroup/cgroup.procs")
	if [ -n "$leftover" ]; then
		echo "guest-job: agent-tracer demo left processes running; killing them:"
		ps -o pid,ppid,args -p "$(echo $leftover | tr ' ' ,)"
		echo 1 >"$cgroup/cgroup.kill"
		if [ "$status" -eq 0 ]; then
			status=1
		fi
	fi

	# rmdir fails while the killed processes are still exiting.
	for _ in $(seq 50); do
		rmdir "$cgroup" 2>/dev/null && break
		sleep 0.1
	done
	return "$status"
}

demo_status=0
if agent-tracer demo --help >/dev/null 2>&1; then
	step "running agent-tracer demo"
	start=$SECONDS
	run_demo || demo_status=$?
	echo "guest-job: agent-tracer demo exited with status $demo_status after $((SECONDS - start)) s"
else
	step "skipping agent-tracer demo: this version has no demo command"
fi

step "running vagrant/test.sh"
test_status=0
AGENT_TRACER_TEST_USER=$user AGENT_TRACER_TEST_MARKER=$pytest_marker AGENT_TRACER_TEST_STEPS=$test_steps \
	"$repo/vagrant/test.sh" "$repo" "${pytest_args[@]}" || test_status=$?

if [ "$demo_status" -ne 0 ] || [ "$test_status" -ne 0 ]; then
	fail "failed: demo exit status $demo_status, vagrant/test.sh exit status $test_status"
fi
echo "guest-job: all steps passed"
