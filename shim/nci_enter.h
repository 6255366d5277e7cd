/*
 * nci_enter.h: the opening every interposed call on a descriptor shares
 * (private to shim/).
 *
 * NCI_ENTER(fd, p, kernel_expr): if fd is a live netcore socket, p is its
 * entry with a reference held (the caller puts it); if fd is the kernel's,
 * the call returns kernel_expr (the libc function, unchanged); if it is a
 * parent's socket in a forked child, the call fails with EBADF.
 */
#ifndef NETCORE_SHIM_NCI_ENTER_H
#define NETCORE_SHIM_NCI_ENTER_H

#include "shim/nci_shim.h"

#define NCI_ENTER(fd, p, kernel_expr)                                          \
	bool p##_stale;                                                        \
	struct nci_sock *p = nci_get_live((fd), &p##_stale);                   \
	if (p == NULL)                                                         \
	return p##_stale ? -1 : (kernel_expr)

/* Marks an EAGAIN, so EPOLLET reports the socket's next readiness as a
 * new edge. */
#define NCI_NOTE_EAGAIN(p, r)                                                  \
	do {                                                                   \
		if ((r) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))      \
			__atomic_add_fetch(&(p)->eagain_seq, 1,                \
			                   __ATOMIC_RELAXED);                  \
	} while (0)

#endif
