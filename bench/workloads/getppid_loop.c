/* SPDX-License-Identifier: Apache-2.0 */
/*
 * getppid-loop COUNT: make COUNT raw getppid syscalls and report how long
 * they took.
 *
 * Protocol with bench/run, one line each on standard output:
 *   "ready PID SYS_getppid"   printed at start (SYS_getppid is this ABI's
 *                             number, for tools that report numbers)
 *   then one byte on standard input opens the gate, so that a tracer's
 *   start-up stays outside the timed loop
 *   "done COUNT ELAPSED_NS"   printed after the loop (CLOCK_MONOTONIC)
 *
 * syscall(SYS_getppid) bypasses any caching in libc, so each iteration
 * enters the kernel once.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "gate.h"

int main(int argc, char **argv)
{
	struct timespec start, end;
	long long elapsed;
	long count, i;

	if (argc != 2 || parse_count(argv[1], &count)) {
		fprintf(stderr, "usage: getppid-loop COUNT (a whole number of syscalls, 0 or more)\n");
		return 2;
	}

	printf("ready %d %d\n", (int)getpid(), (int)SYS_getppid);
	fflush(stdout);
	if (wait_for_gate())
		return 1;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (i = 0; i < count; i++)
		syscall(SYS_getppid);
	clock_gettime(CLOCK_MONOTONIC, &end);

	elapsed = (end.tv_sec - start.tv_sec) * 1000000000LL + (end.tv_nsec - start.tv_nsec);
	printf("done %ld %lld\n", count, elapsed);
	return 0;
}
