/* The syscall loops `cargo xtask bench` times under each tracer.
 *
 *   memloop mmap N        N mmap(4096, anonymous)+munmap pairs
 *   memloop brk N         N brk(cur+4096)+brk(cur) pairs
 *   memloop getpid N      N getpid calls (a syscall no tracer attaches to)
 *     -> "ns_per_iter=W cpu_ns_per_iter=C iters=N" (after an untimed
 *        warm-up of N/10): W is wall time, C this process's CPU time,
 *        which is what a tracer's in-kernel work adds to and which other
 *        load on a shared machine does not inflate by waiting
 *   memloop mmap-for SECS
 *     mmap+munmap pairs for SECS seconds, flat out
 *     -> "pairs=N secs=S cpu_secs=C"
 *
 * Every pair is two syscalls, so two memmon events. Nothing is touched,
 * so no page faults: only the syscall paths (and their tracepoints) run.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double clock_s(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double now(void)
{
	return clock_s(CLOCK_MONOTONIC);
}

static void mmap_pair(void)
{
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	if (munmap(p, 4096)) {
		perror("munmap");
		exit(1);
	}
}

static unsigned long brk_base;

static void brk_pair(void)
{
	if ((unsigned long)syscall(SYS_brk, brk_base + 4096) != brk_base + 4096) {
		fprintf(stderr, "brk: could not grow\n");
		exit(1);
	}
	syscall(SYS_brk, brk_base);
}

static void getpid_call(void)
{
	syscall(SYS_getpid);
}

static void timed(void (*pair)(void), long n)
{
	for (long i = 0; i < n / 10; i++)
		pair();
	double t0 = now(), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
	for (long i = 0; i < n; i++)
		pair();
	double t1 = now(), c1 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
	printf("ns_per_iter=%.1f cpu_ns_per_iter=%.1f iters=%ld\n",
	       (t1 - t0) * 1e9 / n, (c1 - c0) * 1e9 / n, n);
}

int main(int argc, char **argv)
{
	if (argc >= 3 && !strcmp(argv[1], "mmap")) {
		timed(mmap_pair, atol(argv[2]));
	} else if (argc >= 3 && !strcmp(argv[1], "brk")) {
		brk_base = syscall(SYS_brk, 0);
		timed(brk_pair, atol(argv[2]));
	} else if (argc >= 3 && !strcmp(argv[1], "getpid")) {
		timed(getpid_call, atol(argv[2]));
	} else if (argc >= 3 && !strcmp(argv[1], "mmap-for")) {
		double secs = atof(argv[2]);
		double t0 = now(), t = t0;
		long pairs = 0;
		while (t - t0 < secs) {
			for (int i = 0; i < 256; i++)
				mmap_pair();
			pairs += 256;
			t = now();
		}
		printf("pairs=%ld secs=%.3f cpu_secs=%.3f\n", pairs, t - t0,
		       clock_s(CLOCK_PROCESS_CPUTIME_ID));
	} else {
		fprintf(stderr, "usage: memloop mmap|brk|getpid N | mmap-for SECS\n");
		return 2;
	}
	return 0;
}
