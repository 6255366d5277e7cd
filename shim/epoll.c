/*
 * epoll.c: epoll over a mix of kernel descriptors and netcore sockets.
 *
 * The epoll instance is the kernel's. Kernel descriptors are added to it
 * as usual; a netcore socket cannot be (its placeholder never becomes
 * ready), so the shim keeps, per epoll descriptor, the interest list of
 * its netcore sockets (struct ep: descriptor number, entry, events, data)
 * and adds libclient's doorbell to the kernel set once, tagged with
 * BELL_TAG. epoll_wait then:
 *
 *   loop: look at the netcore interests (nc_poll, timeout 0);
 *         some ready, or time is up: take what the kernel has (timeout 0)
 *         into the remaining room and return both;
 *         else sleep in epoll_pwait (at most NCI_WAIT_CAP_MS, see wait.c);
 *         kernel events other than the doorbell: return them (a doorbell
 *         left unread keeps the set readable for the next call);
 *         only the doorbell: loop.
 *
 * EPOLLET is emulated: a socket is reported when a condition appears that
 * was not there at its last report, or when the program has met EAGAIN on
 * it since (a drained socket that fills again is a new edge; one that
 * never drained is not). EPOLLONESHOT disables the interest after one
 * report until EPOLL_CTL_MOD.
 *
 * Ownership. An interest holds a reference on the socket's entry. It ends
 * at EPOLL_CTL_DEL, or when the program closes that descriptor number
 * (found at the next wait: the number no longer names the entry), or when
 * the epoll descriptor is closed (nci_epoll_forget).
 *
 * What it does not do: follow a dup of the epoll descriptor (the netcore
 * interests are the original number's), EPOLLEXCLUSIVE/EPOLLWAKEUP on
 * netcore sockets (ignored), epoll_pwait2, or closing an epoll descriptor
 * while another thread waits on it.
 */
#include "shim/nci_enter.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT          __attribute__((visibility("default")))
#define NCI_WAIT_CAP_MS 100
#define BELL_TAG        0x6e63626c6c746167ull /* "nctagbll" */

struct ep_item {
	int fd;
	struct nci_sock *p;
	uint32_t events;
	epoll_data_t data;
	unsigned int last_seq;
	short last_rev;
	bool disabled;
};

struct ep {
	int epfd;
	pthread_mutex_t lock;
	struct ep_item *items;
	size_t n, cap;
	struct ep *next;
};

static pthread_mutex_t eps_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ep *eps;
static _Atomic int eps_count;

static struct ep *ep_find(int epfd)
{
	if (atomic_load(&eps_count) == 0)
		return NULL;
	pthread_mutex_lock(&eps_lock);
	struct ep *e = eps;
	while (e != NULL && e->epfd != epfd)
		e = e->next;
	pthread_mutex_unlock(&eps_lock);
	return e;
}

static struct ep *ep_make(int epfd)
{
	struct ep *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	e->epfd = epfd;
	pthread_mutex_init(&e->lock, NULL);
	pthread_mutex_lock(&eps_lock);
	e->next = eps;
	eps = e;
	atomic_fetch_add(&eps_count, 1);
	pthread_mutex_unlock(&eps_lock);
	return e;
}

void nci_epoll_forget(int fd)
{
	if (atomic_load(&eps_count) == 0 || !nci_owner())
		return;
	pthread_mutex_lock(&eps_lock);
	struct ep **at = &eps;
	while (*at != NULL && (*at)->epfd != fd)
		at = &(*at)->next;
	struct ep *e = *at;
	if (e != NULL) {
		*at = e->next;
		atomic_fetch_sub(&eps_count, 1);
	}
	pthread_mutex_unlock(&eps_lock);
	if (e == NULL)
		return;
	for (size_t i = 0; i < e->n; i++)
		nci_put(e->items[i].p);
	free(e->items);
	pthread_mutex_destroy(&e->lock);
	free(e);
}

/* ------------------------------------------------------------- ctl */

static struct ep_item *item_find(struct ep *e, int fd)
{
	for (size_t i = 0; i < e->n; i++)
		if (e->items[i].fd == fd)
			return &e->items[i];
	return NULL;
}

static int item_add(struct ep *e, int fd, struct nci_sock *p,
                    const struct epoll_event *ev)
{
	if (item_find(e, fd) != NULL)
		return nci_fail(EEXIST);
	if (e->n == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 8;
		struct ep_item *m = realloc(e->items, cap * sizeof(*m));
		if (m == NULL)
			return nci_fail(ENOMEM);
		e->items = m;
		e->cap = cap;
	}
	nci_ref(p); /* the interest's own reference */
	e->items[e->n++] = (struct ep_item){
	    .fd = fd, .p = p, .events = ev->events, .data = ev->data};
	return 0;
}

/* Removes item i; its reference is returned to the caller to put. */
static struct nci_sock *item_del(struct ep *e, size_t i)
{
	struct nci_sock *p = e->items[i].p;
	e->items[i] = e->items[--e->n];
	return p;
}

/* The doorbell joins the kernel set once per epoll descriptor; this also
 * checks that epfd is one (EBADF, EINVAL as the kernel says). */
static int add_bell(int epfd)
{
	struct nc_client *c = nci_client();
	if (c == NULL)
		return -1;
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = BELL_TAG};
	int r = nci_r()->epoll_ctl(epfd, EPOLL_CTL_ADD, nc_client_fd(c), &ev);
	return r != 0 && errno == EEXIST ? 0 : r;
}

static int ctl_locked(struct ep *e, int op, int fd, struct nci_sock *p,
                      struct epoll_event *ev, struct nci_sock **drop)
{
	struct ep_item *it = item_find(e, fd);
	if (it != NULL && it->p != p) {
		/* The number was closed and reused: the old interest is
		 * gone, as the kernel would have removed it. */
		*drop = item_del(e, (size_t)(it - e->items));
		it = NULL;
	}
	switch (op) {
	case EPOLL_CTL_ADD:
		return item_add(e, fd, p, ev);
	case EPOLL_CTL_MOD:
		if (it == NULL)
			return nci_fail(ENOENT);
		*it = (struct ep_item){
		    .fd = fd, .p = p, .events = ev->events, .data = ev->data};
		return 0;
	case EPOLL_CTL_DEL:
		if (it == NULL)
			return nci_fail(ENOENT);
		*drop = item_del(e, (size_t)(it - e->items));
		return 0;
	default:
		return nci_fail(EINVAL);
	}
}

static int ctl_sock(int epfd, int op, int fd, struct nci_sock *p,
                    struct epoll_event *ev)
{
	if (op != EPOLL_CTL_DEL && ev == NULL)
		return nci_fail(EFAULT);
	if (add_bell(epfd) != 0)
		return -1;
	struct ep *e = ep_find(epfd);
	if (e == NULL && (e = ep_make(epfd)) == NULL)
		return nci_fail(ENOMEM);
	struct nci_sock *drop = NULL;
	pthread_mutex_lock(&e->lock);
	int r = ctl_locked(e, op, fd, p, ev, &drop);
	pthread_mutex_unlock(&e->lock);
	nci_put(drop);
	return r;
}

EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	NCI_ENTER(fd, p, nci_r()->epoll_ctl(epfd, op, fd, ev));
	int r = ctl_sock(epfd, op, fd, p, ev);
	nci_put(p);
	return r;
}

EXPORT int epoll_create(int size)
{
	return nci_r()->epoll_create(size);
}

EXPORT int epoll_create1(int flags)
{
	return nci_r()->epoll_create1(flags);
}

/* ------------------------------------------------------------ wait */

static int64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Drops interests whose number no longer names their socket (closed,
 * maybe reused); their references go to *drops for the caller to put. */
static void prune_locked(struct ep *e, struct nci_sock **drops, size_t *nd)
{
	for (size_t i = 0; i < e->n;) {
		if (nci_names(e->items[i].fd, e->items[i].p))
			i++;
		else
			drops[(*nd)++] = item_del(e, i);
	}
}

/* Whether an interest that is in state `rev` now is to be reported. */
static short item_report(struct ep_item *it, short rev)
{
	unsigned int seq =
	    __atomic_load_n(&it->p->eagain_seq, __ATOMIC_RELAXED);
	short fresh = rev;
	if (it->events & EPOLLET) {
		if (seq == it->last_seq)
			fresh = rev & ~it->last_rev;
		if (fresh != 0 || rev == 0) {
			it->last_rev = rev;
			it->last_seq = seq;
		}
	}
	if (fresh != 0 && (it->events & EPOLLONESHOT))
		it->disabled = true;
	return fresh != 0 ? rev : 0;
}

/* Reports what is due; every interest looked at updates its EPOLLET
 * state, reported or not. */
static int emit_locked(struct ep *e, struct nc_pollfd *pf, size_t *at, size_t m,
                       struct epoll_event *out, int max)
{
	int got = 0;
	for (size_t k = 0; k < m && got < max; k++) {
		struct ep_item *it = &e->items[at[k]];
		short rev = item_report(it, pf[k].revents);
		if (rev == 0)
			continue;
		out[got].events = (uint32_t)(unsigned short)rev;
		out[got++].data = it->data;
	}
	return got;
}

/* The netcore interests that are ready, into out (at most max). */
static int collect(struct ep *e, struct nc_client *c, struct epoll_event *out,
                   int max)
{
	pthread_mutex_lock(&e->lock);
	size_t n = e->n;
	struct nci_sock **drops = calloc(n + 1, sizeof(*drops));
	struct nc_pollfd *pf = calloc(n + 1, sizeof(*pf));
	size_t *at = calloc(n + 1, sizeof(*at));
	size_t nd = 0, m = 0;
	int got = -1;
	if (drops != NULL && pf != NULL && at != NULL) {
		prune_locked(e, drops, &nd);
		for (size_t i = 0; i < e->n; i++) {
			struct ep_item *it = &e->items[i];
			if (it->disabled || it->p->gen != nci_gen())
				continue;
			short ev = (short)(it->events &
			                   (EPOLLIN | EPOLLOUT | EPOLLRDHUP));
			pf[m] =
			    (struct nc_pollfd){.sock = it->p->s, .events = ev};
			at[m++] = i;
		}
		got = m == 0 ? 0 : nc_poll(c, pf, m, 0);
		if (got >= 0)
			got = emit_locked(e, pf, at, m, out, max);
	} else {
		errno = ENOMEM;
	}
	pthread_mutex_unlock(&e->lock);
	int saved = errno;
	for (size_t i = 0; i < nd; i++)
		nci_put(drops[i]);
	free(drops);
	free(pf);
	free(at);
	errno = saved;
	return got;
}

/* Removes the doorbell's event from a kernel result; *bell says if it
 * was there. */
static int drop_bell(struct epoll_event *ev, int n, bool *bell)
{
	int k = 0;
	*bell = false;
	for (int i = 0; i < n; i++) {
		if (ev[i].data.u64 == BELL_TAG)
			*bell = true;
		else
			ev[k++] = ev[i];
	}
	return k;
}

static int ms_left(int64_t deadline, int cap)
{
	if (deadline < 0)
		return cap;
	int64_t left = deadline - now_ms();
	if (left < 0)
		left = 0;
	return (int)(left > cap ? cap : left);
}

static int wait_mixed(struct ep *e, struct epoll_event *out, int max,
                      int timeout, const sigset_t *mask)
{
	struct nc_client *c = nci_client();
	if (c == NULL)
		return -1;
	int64_t deadline = timeout < 0 ? -1 : now_ms() + timeout;
	bool bell;
	for (;;) {
		int got = collect(e, c, out, max);
		if (got < 0)
			return -1;
		bool expired = deadline >= 0 && now_ms() >= deadline;
		if (got > 0 || expired) {
			if (got == max)
				return got;
			int k = nci_r()->epoll_pwait(e->epfd, out + got,
			                             max - got, 0, mask);
			if (k < 0)
				return got > 0 ? got : -1;
			return got + drop_bell(out + got, k, &bell);
		}
		int k = nci_r()->epoll_pwait(e->epfd, out, max,
		                             ms_left(deadline, NCI_WAIT_CAP_MS),
		                             mask);
		if (k < 0)
			return -1;
		k = drop_bell(out, k, &bell);
		if (k > 0)
			return k;
	}
}

EXPORT int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout,
                       const sigset_t *mask)
{
	struct ep *e = ep_find(epfd);
	if (e == NULL || max <= 0)
		return nci_r()->epoll_pwait(epfd, ev, max, timeout, mask);
	return wait_mixed(e, ev, max, timeout, mask);
}

EXPORT int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
	return epoll_pwait(epfd, ev, max, timeout, NULL);
}
