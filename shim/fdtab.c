/*
 * fdtab.c: the shim's descriptor table, its client, and fork.
 *
 * Descriptors. Every netcore socket is backed by a placeholder: a real,
 * never connected AF_UNIX socket that the kernel allocates, so the number
 * the program sees is the lowest free one, dup/dup2/dup3 and close-on-exec
 * are the kernel's, and select's FD_SETSIZE applies as always. A table
 * indexed by descriptor number (one pointer each, an anonymous mapping as
 * large as the hard RLIMIT_NOFILE, so untouched pages cost nothing) says
 * which numbers are netcore sockets. Numbers dup'ed from one socket share
 * one struct nci_sock (like an open file description: O_NONBLOCK is
 * shared, FD_CLOEXEC is the placeholder's own).
 *
 * Ownership. An entry is reference counted: one reference per number that
 * names it and one per call in progress, so closing a number while
 * another thread is inside a call on it defers nc_close() to the last
 * reference. The table lock guards the counts and slot changes; a lookup
 * of a number that is not ours is one atomic load and no lock, so the
 * program's kernel descriptors (and libclient's own, which pass through
 * these wrappers too) pay almost nothing. No libclient call is ever made
 * with the lock held (libclient closes and polls its own descriptors
 * through our wrappers).
 *
 * States of the client: none (NETCORE_BROKER unset: every call goes to the
 * kernel), not yet attached, attached (at the first AF_INET/AF_INET6
 * socket call), stale (we are a forked child: the parent's client and
 * sockets must not be driven from here). In a child, the parent's sockets
 * fail with EBADF except close (which only lets go of the placeholder);
 * the first new socket detaches the child's copy of the parent's client
 * (libclient releases memory and descriptors and tells nobody) and
 * attaches anew. The fork handler only bumps a counter and records the
 * pid. A vfork child (no handlers, the parent's memory) leaves the table
 * alone: its dup2/close/close_range change only its own descriptors.
 *
 * What it does not do: carry netcore sockets across exec (a placeholder
 * without FD_CLOEXEC survives as an inert unix socket), or notice numbers
 * closed behind libc's back (a raw close system call).
 */
#include "shim/nci_shim.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ------------------------------------------------- the real functions */

static struct nci_real real;
static pthread_once_t real_once = PTHREAD_ONCE_INIT;

#define RESOLVE(name) real.name = (__typeof__(real.name))dlsym(RTLD_NEXT, #name)

static void resolve_all(void)
{
	RESOLVE(socket);
	RESOLVE(bind);
	RESOLVE(listen);
	RESOLVE(accept);
	RESOLVE(accept4);
	RESOLVE(connect);
	RESOLVE(send);
	RESOLVE(sendto);
	RESOLVE(sendmsg);
	RESOLVE(sendmmsg);
	RESOLVE(recv);
	RESOLVE(recvfrom);
	RESOLVE(recvmsg);
	RESOLVE(recvmmsg);
	RESOLVE(read);
	RESOLVE(write);
	RESOLVE(readv);
	RESOLVE(writev);
	RESOLVE(sendfile);
	RESOLVE(close);
	RESOLVE(shutdown);
	RESOLVE(dup);
	RESOLVE(dup2);
	RESOLVE(dup3);
	RESOLVE(fcntl);
	RESOLVE(ioctl);
	RESOLVE(getsockname);
	RESOLVE(getpeername);
	RESOLVE(getsockopt);
	RESOLVE(setsockopt);
	RESOLVE(poll);
	RESOLVE(ppoll);
	RESOLVE(epoll_create);
	RESOLVE(epoll_create1);
	RESOLVE(epoll_ctl);
	RESOLVE(epoll_pwait);
}

const struct nci_real *nci_r(void)
{
	pthread_once(&real_once, resolve_all);
	return &real;
}

int nci_fail(int err)
{
	errno = err;
	return -1;
}

/* ---------------------------------------------------------- the table */

static struct nci_sock *_Atomic *table;
static size_t table_cap;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;

static void table_init(void)
{
	struct rlimit rl;
	size_t cap = 65536;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_max != RLIM_INFINITY && rl.rlim_max > cap)
		cap = rl.rlim_max;
	if (cap > (1u << 20))
		cap = 1u << 20;
	void *m = mmap(NULL, cap * sizeof(*table), PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED)
		return; /* table_cap stays 0: no netcore sockets at all */
	table = m;
	table_cap = cap;
}

static struct nci_sock *_Atomic *slot(int fd)
{
	pthread_once(&table_once, table_init);
	if (fd < 0 || (size_t)fd >= table_cap)
		return NULL;
	return &table[fd];
}

unsigned int nci_table_cap(void)
{
	pthread_once(&table_once, table_init);
	return (unsigned int)table_cap;
}

bool nci_is_ours(int fd)
{
	struct nci_sock *_Atomic *sl = slot(fd);
	return sl != NULL &&
	       atomic_load_explicit(sl, memory_order_acquire) != NULL;
}

bool nci_names(int fd, const struct nci_sock *p)
{
	struct nci_sock *_Atomic *sl = slot(fd);
	return sl != NULL && atomic_load(sl) == p;
}

struct nci_sock *nci_get(int fd)
{
	struct nci_sock *_Atomic *sl = slot(fd);
	if (sl == NULL ||
	    atomic_load_explicit(sl, memory_order_acquire) == NULL)
		return NULL;
	pthread_mutex_lock(&table_lock);
	struct nci_sock *p = atomic_load(sl);
	if (p != NULL)
		p->refs++;
	pthread_mutex_unlock(&table_lock);
	return p;
}

struct nci_sock *nci_get_live(int fd, bool *stale)
{
	struct nci_sock *p = nci_get(fd);
	*stale = false;
	if (p != NULL && p->gen != nci_gen()) {
		nci_put(p);
		*stale = true;
		errno = EBADF;
		return NULL;
	}
	return p;
}

void nci_ref(struct nci_sock *p)
{
	pthread_mutex_lock(&table_lock);
	p->refs++;
	pthread_mutex_unlock(&table_lock);
}

void nci_put(struct nci_sock *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&table_lock);
	int left = --p->refs;
	pthread_mutex_unlock(&table_lock);
	if (left > 0)
		return;
	/* A parent's handle must not be touched in a child: libclient freed
	 * it when the child's copy of the client was detached. */
	if (p->gen == nci_gen() && p->s != NULL) {
		int saved = errno;
		nc_close(p->s);
		errno = saved;
	}
	free(p);
}

struct nci_sock *nci_install(int fd, struct nci_sock *p)
{
	struct nci_sock *_Atomic *sl = slot(fd);
	if (sl == NULL || !nci_owner())
		return NULL;
	pthread_mutex_lock(&table_lock);
	if (p != NULL)
		p->refs++;
	struct nci_sock *old = atomic_exchange(sl, p);
	pthread_mutex_unlock(&table_lock);
	return old;
}

struct nci_sock *nci_remove(int fd)
{
	return nci_install(fd, NULL);
}

int nci_placeholder(int flags)
{
	int type = SOCK_STREAM | (flags & SOCK_CLOEXEC);
	return nci_r()->socket(AF_UNIX, type, 0);
}

int nci_adopt(struct nc_sock *s, int domain, int type, int flags)
{
	struct nci_sock *p = calloc(1, sizeof(*p));
	int fd = p != NULL ? nci_placeholder(flags) : -1;
	if (fd >= 0 && slot(fd) == NULL) {
		nci_r()->close(fd);
		fd = -1;
		errno = EMFILE;
	}
	if (fd < 0) {
		int saved = p != NULL ? errno : ENOMEM;
		free(p);
		nc_close(s);
		return nci_fail(saved);
	}
	p->s = s;
	p->gen = nci_gen();
	p->domain = domain;
	p->type = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
	/* A number left behind by close_range or a stale entry: replace. */
	nci_put(nci_install(fd, p));
	return fd;
}

/* --------------------------------------------------- client and fork */

static _Atomic unsigned int fork_gen;
static _Atomic pid_t owner_pid;
static pthread_mutex_t client_lock = PTHREAD_MUTEX_INITIALIZER;
static struct nc_client *client;
static unsigned int client_gen;

static void on_fork_child(void)
{
	atomic_fetch_add(&fork_gen, 1);
	atomic_store(&owner_pid, (pid_t)syscall(SYS_getpid));
}

/*
 * A vfork child (posix_spawn, CPython's subprocess) runs on the parent's
 * memory without fork handlers, and typically dup2s and close_ranges
 * before exec: it must not change the parent's table. Asked only on the
 * paths that change the table, so a system call there is cheap enough.
 */
bool nci_owner(void)
{
	return atomic_load(&owner_pid) == (pid_t)syscall(SYS_getpid);
}

__attribute__((constructor)) static void shim_init(void)
{
	nci_r();
	atomic_store(&owner_pid, (pid_t)syscall(SYS_getpid));
	pthread_atfork(NULL, NULL, on_fork_child);
}

unsigned int nci_gen(void)
{
	return atomic_load_explicit(&fork_gen, memory_order_relaxed);
}

bool nci_enabled(void)
{
	const char *path = getenv("NETCORE_BROKER");
	return path != NULL && path[0] != '\0';
}

struct nc_client *nci_client(void)
{
	pthread_mutex_lock(&client_lock);
	if (client != NULL && client_gen != nci_gen()) {
		/* A parent's client in a child: release our copies only. */
		nc_client_detach(client);
		client = NULL;
	}
	if (client == NULL) {
		const char *path = getenv("NETCORE_BROKER");
		if (path == NULL || path[0] == '\0')
			errno = EAFNOSUPPORT;
		else if (nc_client_attach(path, &client) != 0)
			client = NULL;
		client_gen = nci_gen();
	}
	struct nc_client *c = client;
	pthread_mutex_unlock(&client_lock);
	return c;
}
