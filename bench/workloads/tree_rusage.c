/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tree-rusage OUTFILE COMMAND [ARG...]: run COMMAND, reap it and every
 * descendant it leaves behind, then write one line to OUTFILE:
 *   "status WAIT_STATUS exit_ns NS user_ns NS system_ns NS"
 * exit_ns is CLOCK_MONOTONIC when COMMAND itself ended. user_ns and
 * system_ns are the CPU time of the whole tree (RUSAGE_CHILDREN).
 *
 * This process is a child subreaper (PR_SET_CHILD_SUBREAPER), so orphans
 * of the tree are reparented to it instead of to init and their CPU time
 * is counted too. Descendants still alive GRACE_SECONDS after COMMAND
 * ended are not waited for, and their time is missing from the line.
 * Exits with COMMAND's exit code, or 1 when it could not run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GRACE_SECONDS 10

static long long now_ns(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec * 1000000000LL + now.tv_nsec;
}

static long long timeval_ns(struct timeval value)
{
	return value.tv_sec * 1000000000LL + value.tv_usec * 1000LL;
}

/* Reap descendants until none is left or the grace period is over. */
static void reap_orphans(void)
{
	long long deadline = now_ns() + GRACE_SECONDS * 1000000000LL;
	struct timespec pause = { 0, 20 * 1000000 };
	pid_t reaped;

	while (now_ns() < deadline) {
		reaped = waitpid(-1, NULL, WNOHANG);
		if (reaped < 0 && errno == ECHILD)
			return;
		if (reaped <= 0)
			nanosleep(&pause, NULL);
	}
	fprintf(stderr, "tree-rusage: descendants still running %d s after the command ended; "
		"their CPU time is not counted\n", GRACE_SECONDS);
}

int main(int argc, char **argv)
{
	long long exit_ns = 0;
	struct rusage usage;
	int status = 0;
	pid_t child, reaped;
	FILE *out;

	if (argc < 3) {
		fprintf(stderr, "usage: tree-rusage OUTFILE COMMAND [ARG...]\n");
		return 2;
	}
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
		fprintf(stderr, "tree-rusage: PR_SET_CHILD_SUBREAPER failed: %s\n", strerror(errno));

	child = fork();
	if (child < 0) {
		fprintf(stderr, "tree-rusage: fork failed: %s\n", strerror(errno));
		return 1;
	}
	if (child == 0) {
		execvp(argv[2], &argv[2]);
		fprintf(stderr, "tree-rusage: cannot run %s: %s\n", argv[2], strerror(errno));
		_exit(127);
	}

	/* Reap whatever ends first until COMMAND itself has ended. */
	for (;;) {
		int reaped_status;

		reaped = waitpid(-1, &reaped_status, 0);
		if (reaped < 0 && errno == EINTR)
			continue;
		if (reaped < 0) {
			fprintf(stderr, "tree-rusage: waitpid failed: %s\n", strerror(errno));
			return 1;
		}
		if (reaped == child) {
			status = reaped_status;
			exit_ns = now_ns();
			break;
		}
	}
	reap_orphans();

	getrusage(RUSAGE_CHILDREN, &usage);
	out = fopen(argv[1], "w");
	if (!out) {
		fprintf(stderr, "tree-rusage: cannot write %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	fprintf(out, "status %d exit_ns %lld user_ns %lld system_ns %lld\n", status, exit_ns,
		timeval_ns(usage.ru_utime), timeval_ns(usage.ru_stime));
	fclose(out);

	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
