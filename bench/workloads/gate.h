/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the benchmark workloads. */
#ifndef BENCH_GATE_H
#define BENCH_GATE_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Parse a whole number of 0 or more; return 0 on success, -1 otherwise. */
static int parse_count(const char *text, long *value)
{
	char *end;

	errno = 0;
	*value = strtol(text, &end, 10);
	if (errno || end == text || *end || *value < 0)
		return -1;
	return 0;
}

/*
 * Block until one byte arrives on standard input: the gate that bench/run
 * opens once the tracer under test is attached. Returns -1, with a message,
 * when standard input closes first.
 */
static int wait_for_gate(void)
{
	char byte;
	ssize_t got;

	do
		got = read(STDIN_FILENO, &byte, 1);
	while (got < 0 && errno == EINTR);

	if (got != 1) {
		fprintf(stderr, "workload: standard input closed before the gate byte arrived\n");
		return -1;
	}
	return 0;
}

#endif /* BENCH_GATE_H */
