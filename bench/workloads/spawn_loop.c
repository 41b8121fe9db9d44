/* SPDX-License-Identifier: Apache-2.0 */
/*
 * spawn-loop COUNT [SECONDS]: fork, exec /bin/true in the child and wait
 * for it, COUNT times or until SECONDS have passed (0: no time limit), and
 * report how long that took.
 *
 * Protocol with bench/run, one line each on standard output:
 *   "ready PID"                 printed at start
 *   then one byte on standard input opens the gate
 *   "done SPAWNS ELAPSED_NS"    printed after the loop (CLOCK_MONOTONIC)
 *
 * Exits with 1, naming the failure on standard error, when a fork, exec or
 * wait fails or /bin/true does not exit with 0: a benchmark that timed
 * failing spawns would measure the wrong thing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gate.h"

#define PROGRAM "/bin/true"

static long long now_ns(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec * 1000000000LL + now.tv_nsec;
}

static int spawn_once(void)
{
	char *const child_argv[] = { PROGRAM, NULL };
	int status;
	pid_t child;

	child = fork();
	if (child < 0) {
		fprintf(stderr, "spawn-loop: fork failed: %s\n", strerror(errno));
		return -1;
	}
	if (child == 0) {
		execv(PROGRAM, child_argv);
		_exit(127);
	}

	if (waitpid(child, &status, 0) != child) {
		fprintf(stderr, "spawn-loop: waitpid failed: %s\n", strerror(errno));
		return -1;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "spawn-loop: %s did not exit with 0 (wait status 0x%x)\n",
			PROGRAM, status);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	long long start, deadline = 0, end;
	long count, seconds = 0, done;

	if (argc < 2 || argc > 3 || parse_count(argv[1], &count) ||
	    (argc == 3 && parse_count(argv[2], &seconds))) {
		fprintf(stderr, "usage: spawn-loop COUNT [SECONDS] (whole numbers; SECONDS 0 means no limit)\n");
		return 2;
	}

	printf("ready %d\n", (int)getpid());
	fflush(stdout);
	if (wait_for_gate())
		return 1;

	start = now_ns();
	if (seconds)
		deadline = start + seconds * 1000000000LL;
	for (done = 0; done < count; done++) {
		if (deadline && now_ns() >= deadline)
			break;
		if (spawn_once())
			return 1;
	}
	end = now_ns();

	printf("done %ld %lld\n", done, end - start);
	return 0;
}
