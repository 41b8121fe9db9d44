#!/bin/bash
# PID 1 of the VM test stage's guest, started by the image's boot script once
# the repository share is mounted read-only at /mnt/repo. It mounts what a
# normal boot mounts, copies the repository to /opt/agent-tracer, runs the
# copy's guest-job.sh under the time limit the host set, writes the job's log
# and exit status to the output share and powers off.
#
# Output share (9p tag "out", mounted at /mnt/out), as run.sh reads it:
#   job.env          written by run.sh: the time limit and the pytest arguments
#   kernel-release   the guest's `uname -r`
#   job.log          everything the job printed (also copied to the console)
#   exit-code        the job's exit status, written last; 124 means that the
#                    guest's time limit stopped the job
#
# PID 1 must never exit (the kernel panics), so nothing here stops on error.
# All the code is in functions called from the last line: bash reads a script
# as it runs it, and the share shows edits made on the host at once.

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 PYTHONUNBUFFERED=1

share=/mnt/repo
repo=/opt/agent-tracer
user=tester
out=/mnt/out

say() { echo "guest-init: $*" >/dev/console; }

# Mount TYPE on DIR unless something is mounted there already.
mount_missing() {
	local type=$1 dir=$2
	shift 2

	mkdir -p "$dir"
	mountpoint -q "$dir" || mount -t "$type" "$@" "$type" "$dir" || say "mounting $type on $dir failed"
}

# Set up what a normal systemd boot provides before services start.
prepare_system() {
	mount_missing devpts /dev/pts -o gid=5,mode=620
	mount_missing tmpfs /dev/shm -o mode=1777,nosuid,nodev
	mount_missing tmpfs /run -o mode=755,nosuid,nodev
	mount_missing securityfs /sys/kernel/security
	mount_missing debugfs /sys/kernel/debug
	mount_missing tracefs /sys/kernel/tracing
	mount_missing cgroup2 /sys/fs/cgroup
	mount_missing bpf /sys/fs/bpf -o mode=700

	# The directories of tmpfiles.d, such as /run/systemd and /run/lock.
	systemd-tmpfiles --create --boot --exclude-prefix=/dev >/dev/null 2>&1 ||
		say "systemd-tmpfiles reported errors; some directories under /run or /var may be missing"

	hostname "$(cat /etc/hostname)"
	ip link set lo up || say "bringing up the loopback interface failed"
}

# Copy the repository without the host's virtual environment and caches, which
# are of no use in the guest, and give it to the user of the unprivileged
# suite, which writes pytest's cache there.
copy_repository() {
	mkdir -p "$repo"
	tar -C "$share" -c \
		--exclude=./.venv --exclude=./.vagrant --exclude=./vagrant/.vagrant \
		--exclude=./build --exclude=./dist --exclude=./bench/out --exclude=./bench/bin \
		--exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache --exclude=.hypothesis \
		. | tar -C "$repo" -x &&
		chown -R "$user:$user" "$repo"
}

# Stop what the job left running, flush the output share, make / read-only so
# that the power-off leaves the file system clean, and power off.
power_off() {
	kill -TERM -1 2>/dev/null
	sleep 1
	kill -KILL -1 2>/dev/null

	sync
	umount "$out" || say "unmounting $out failed"
	mount -o remount,ro / || say "remounting / read-only failed"
	poweroff -f -d
	say "poweroff failed; halting"
	sleep infinity
}

main() {
	local job_timeout=3600 status start tail_pid

	prepare_system

	modprobe 9pnet_virtio
	mkdir -p "$out"
	if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out "$out"; then
		say "mounting the output share (tag 'out') failed; nothing to report to"
		power_off
	fi

	# run.sh writes job.env. Without it the job runs with the default limit.
	if [ -f "$out/job.env" ]; then
		. "$out/job.env"
		job_timeout=$AGENT_TRACER_VM_JOB_TIMEOUT
	fi

	uname -r >"$out/kernel-release"

	# The job writes its log straight to the share, so that a guest crash
	# still leaves it behind. tail copies the log to the console for the live
	# CI log, polling because 9p has no inotify.
	: >"$out/job.log"
	tail -n +1 -F -s 1 "$out/job.log" >/dev/console 2>/dev/null &
	tail_pid=$!

	echo "guest-init: kernel $(uname -r), up for $(cut -d' ' -f1 /proc/uptime) s; copying $share to $repo" >>"$out/job.log"
	start=$SECONDS
	if ! copy_repository >>"$out/job.log" 2>&1; then
		echo "guest-init: copying the repository failed" >>"$out/job.log"
		status=1
	else
		echo "guest-init: copied in $((SECONDS - start)) s; running guest-job.sh with a limit of $job_timeout s" >>"$out/job.log"

		# timeout puts the job in its own process group and signals the whole
		# group. It exits with 124 when it stopped the job, or 137 when the
		# job also needed the KILL signal. A job killed for another reason can
		# exit 137 too, so the elapsed time decides whether the limit was hit.
		start=$SECONDS
		timeout --kill-after=30 "$job_timeout" \
			"$repo/.ci/vm/guest-job.sh" "$repo" "$user" </dev/null >>"$out/job.log" 2>&1
		status=$?

		if [ "$status" -eq 124 ] || { [ "$status" -eq 137 ] && [ $((SECONDS - start)) -ge "$job_timeout" ]; }; then
			echo "guest-init: the job hit the time limit of $job_timeout s" >>"$out/job.log"
			status=124
		fi
	fi

	sleep 2
	kill "$tail_pid" 2>/dev/null

	# A temporary name and a rename, so that the host never reads a partial
	# file.
	echo "$status" >"$out/exit-code.tmp" && mv "$out/exit-code.tmp" "$out/exit-code"
	say "job finished with exit status $status; powering off"
	power_off
}

main; exit
