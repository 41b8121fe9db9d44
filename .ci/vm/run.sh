#!/usr/bin/env bash
# Boot the Debian 12 test image under qemu and run the test suite in it.
#
# The guest has no network device. The repository is shared read-only
# through 9p, and a second 9p share (the output directory) carries the job's
# settings in and its log and exit status out. The guest's own steps are in
# guest-init.sh and guest-job.sh.
#
# Usage: sudo .ci/vm/run.sh [--image DIR] [--out DIR] [--timeout MINUTES]
#                           [--marker EXPR] [--steps LIST] [--repo DIR]
#                           [-- PYTEST-ARGS...]
#   --image DIR        image built by build-image.sh (default: build or reuse
#                      the cached one)
#   --out DIR          output directory, which must be empty or missing
#                      (default: a new directory under /tmp)
#   --timeout MINUTES  time limit of the job in the guest (default 60); qemu
#                      gets 5 minutes more for boot and power-off
#   --marker EXPR      pytest marker expression that narrows both the
#                      unprivileged and the root run, e.g. "not soak"
#   --steps LIST       steps of vagrant/test.sh to run, from
#                      "unprivileged,check,root" (the default)
#   --repo DIR         repository to test (default: this script's checkout)
#   --check-args       check the options, then exit; .ci/vm-stage runs
#                      this before its slow steps
#   PYTEST-ARGS        passed to both pytest runs in the guest; not -m,
#                      because each run sets its own marker expression
#
# Environment:
#   AGENT_TRACER_VM_CACHE   image cache, see build-image.sh
#
# Exit status:
#   0   every step in the guest passed
#   1   a step failed, or the guest's time limit stopped the job
#   2   usage or set-up error
#   3   the guest wrote no exit status (boot failure, crash, or qemu's own
#       time limit)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
image=
out=
timeout_minutes=60
pytest_marker=
test_steps=unprivileged,check,root
pytest_args=()
check_args_only=0

usage_error() {
	echo "run.sh: $*" >&2
	echo "usage: run.sh [--image DIR] [--out DIR] [--timeout MINUTES] [--marker EXPR] [--steps LIST] [--repo DIR] [-- PYTEST-ARGS...]" >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case "$1" in
	--image | --out | --timeout | --marker | --steps | --repo)
		[ $# -ge 2 ] || usage_error "$1 needs a value"
		case "$1" in
		--image) image=$2 ;;
		--out) out=$2 ;;
		--timeout) timeout_minutes=$2 ;;
		--marker) pytest_marker=$2 ;;
		--steps) test_steps=$2 ;;
		--repo) repo=$2 ;;
		esac
		shift 2
		;;
	--)
		shift
		pytest_args=("$@")
		break
		;;
	--check-args)
		check_args_only=1
		shift
		;;
	-h | --help)
		awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
		exit 0
		;;
	*) usage_error "unknown argument '$1'" ;;
	esac
done

# vagrant/test.sh rejects -m as well, but only after the boot.
for arg in "${pytest_args[@]}"; do
	case "$arg" in
	-m | -m* | --markexpr | --markexpr=*)
		usage_error "'$arg' would replace the marker expression of each pytest run; use --marker EXPR instead"
		;;
	esac
done
# vagrant/test.sh checks the list again in the guest.
known_steps="the steps are unprivileged, check and root"
for step in ${test_steps//,/ }; do
	case "$step" in
	unprivileged | check | root) ;;
	*) usage_error "unknown step '$step' in --steps; $known_steps" ;;
	esac
done
if [ -z "${test_steps//[, ]/}" ]; then
	usage_error "--steps names no step; $known_steps"
fi
if ! [[ "$timeout_minutes" =~ ^[1-9][0-9]*$ ]]; then
	usage_error "--timeout must be a whole number of minutes, got '$timeout_minutes'"
fi
if [ "$check_args_only" = 1 ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	usage_error "must run as root (the image and its cache belong to root); try: sudo $0"
fi
if ! command -v qemu-system-x86_64 >/dev/null; then
	usage_error "qemu-system-x86_64 not found; install it with: apt-get install qemu-system-x86"
fi
if [ ! -x "$repo/.ci/vm/guest-init.sh" ]; then
	usage_error "$repo does not look like an agent-tracer checkout (.ci/vm/guest-init.sh is missing)"
fi
repo=$(cd "$repo" && pwd)

if [ -z "$image" ]; then
	image=$("$here/build-image.sh")
fi
for file in vmlinuz initrd.img disk.raw kernel-release; do
	if [ ! -f "$image/$file" ]; then
		usage_error "$image/$file is missing; build the image with .ci/vm/build-image.sh"
	fi
done

if [ -z "$out" ]; then
	out=$(mktemp -d /tmp/agent-tracer-vm.XXXXXX)
elif [ -e "$out" ] && [ -n "$(ls -A "$out")" ]; then
	usage_error "output directory $out is not empty; results of an earlier run would mix with this one"
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)

job_timeout=$((timeout_minutes * 60))
qemu_timeout=$((job_timeout + 300))

# guest-init.sh and guest-job.sh source this file.
{
	echo "AGENT_TRACER_VM_JOB_TIMEOUT=$job_timeout"
	declare -p pytest_args pytest_marker test_steps
} >"$out/job.env"

echo "run.sh: booting kernel $(cat "$image/kernel-release") from $image under TCG" >&2
echo "run.sh: repository $repo, output in $out, job time limit $job_timeout s" >&2
echo "run.sh: steps in the guest: $test_steps${pytest_marker:+; marker expression: $pytest_marker}" >&2

# TCG, because the CI machines are themselves VMs without a usable KVM.
# snapshot=on sends the guest's disk writes to a temporary file, so every
# boot starts from the image as built. panic=-1 and -no-reboot make a kernel
# panic end qemu at once instead of waiting for the time limit.
start=$SECONDS
qemu_status=0
timeout --kill-after=10 "$qemu_timeout" \
	qemu-system-x86_64 \
	-accel tcg,thread=multi -machine q35 -cpu max -smp 2 -m 2048 \
	-display none -serial stdio -monitor none -nic none -no-reboot \
	-kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
	-append "root=/dev/vda rw console=ttyS0 quiet panic=-1 init=/usr/local/sbin/agent-tracer-vm-boot" \
	-drive "file=$image/disk.raw,format=raw,if=virtio,snapshot=on" \
	-virtfs "local,path=$repo,mount_tag=repo,security_model=none,readonly=on" \
	-virtfs "local,path=$out,mount_tag=out,security_model=none" \
	</dev/null 2>&1 | tee "$out/console.log" || qemu_status=${PIPESTATUS[0]}
elapsed=$((SECONDS - start))

echo
echo "run.sh: qemu ran for $elapsed s (exit status $qemu_status); output in $out"

if [ ! -f "$out/exit-code" ]; then
	if [ "$qemu_status" -eq 124 ] || [ "$qemu_status" -eq 137 ]; then
		echo "run.sh: FAILED: qemu hit its time limit of $qemu_timeout s and the guest wrote no exit status; see $out/console.log" >&2
	else
		echo "run.sh: FAILED: the guest powered off without writing an exit status (boot failure or crash); see $out/console.log" >&2
	fi
	exit 3
fi

job_status=$(cat "$out/exit-code")
echo "run.sh: guest kernel: $(cat "$out/kernel-release" 2>/dev/null || echo unknown)"

# pytest's summary lines, e.g. "===== 12 passed, 1 skipped in 40.12s =====",
# and the result of each step.
grep -E '^=+ .*( in [0-9.]+s)( \([0-9:]+\))? =+$' "$out/job.log" | sed 's/^/run.sh: guest pytest: /' || echo "run.sh: no pytest summary line in the guest's log"
grep -E '^(guest-init: |test\.sh: step |guest-job: .*(took|exited))' "$out/job.log" | sed 's/^/run.sh: guest /' || true

if [ "$job_status" = 124 ]; then
	echo "run.sh: FAILED: the job hit the guest's time limit of $job_timeout s; see $out/job.log" >&2
	exit 1
elif [ "$job_status" != 0 ]; then
	echo "run.sh: FAILED: the job in the guest exited with status $job_status; see $out/job.log" >&2
	exit 1
fi
echo "run.sh: passed"
