/*
 * sandbox: a forked child that runs the way a sandboxed program does,
 * with no network of its own.
 *
 * The child dies with its parent (PR_SET_PDEATHSIG), ignores SIGINT (the
 * parent decides when it ends: a Ctrl-C reaches the whole process group),
 * unshares into a new, empty network namespace, and checks that the
 * kernel side of the testbed is unreachable from there with its own
 * kernel (exit 90 if it is not) before it runs its body. Whatever the
 * body moves can only have gone through netcore.
 *
 * The parent holds a pidfd, so it can wait for the child in poll beside
 * other things, and every wait is bounded: a child still there at the
 * deadline is SIGKILLed and reaped by its pid.
 *
 * What it does not do: drop privileges or restrict system calls. The
 * empty namespace is the part of a sandbox that matters here.
 */
#ifndef NETCORE_TESTS_FAULT_SANDBOX_H
#define NETCORE_TESTS_FAULT_SANDBOX_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct ff_child {
	pid_t pid;  /* 0: none, or reaped */
	int pidfd;  /* readable once the child has exited; -1: none */
	int status; /* exit code, 128 + signal, or -ETIMEDOUT once reaped */
};

/* Call while the parent has no other threads. 0 or -errno. */
int ff_child_start(struct ff_child *c, int (*body)(void *arg), void *arg);

/* True once the child has exited (or was never started). */
bool ff_child_exited(const struct ff_child *c);

/* Waits until deadline_ms (ff_now_ms clock), then SIGKILLs. Reaps and
 * returns c->status. Idempotent. */
int ff_child_finish(struct ff_child *c, int64_t deadline_ms);

#endif
