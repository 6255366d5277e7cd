/*
 * wait_test: waiting on netcore sockets and kernel descriptors in one
 * call, with unmodified python3 under the shim.
 *
 * 1. A client that multiplexes with select.select, then with
 *    select.poll: each time one netcore socket (to a kernel-side echo
 *    server) and one kernel pipe in the same set. It streams 8 MiB, reads
 *    the echo, checks it, and must also have seen the pipe become
 *    readable in the same call family.
 * 2. An epoll server (select.epoll, edge-triggered for connections,
 *    EPOLLOUT on demand) that also watches its stdin, a kernel pipe. The
 *    test connects from the kernel side with several connections at once,
 *    checks every echoed byte, then writes "quit" on the pipe: the server
 *    must notice it in the same epoll_wait that serves netcore sockets.
 */
#include "shim/testing/shimtest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

static struct nc_testbed tb;

static int setup(void **state)
{
	(void)state;
	return st_bed_start(&tb, "shwait", NULL);
}

static int teardown(void **state)
{
	(void)state;
	st_bed_stop(&tb, NULL);
	return 0;
}

static const char mux_client_py[] =
    "import hashlib, os, select, socket, sys\n"
    "host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])\n"
    "data = bytes((i * 7 + 3) & 255 for i in range(65536)) * (n // 65536)\n"
    "def run(kind):\n"
    "    r, w = os.pipe()\n"
    "    os.write(w, b'x')\n"
    "    s = socket.create_connection((host, port))\n"
    "    s.setblocking(False)\n"
    "    sent, got, pipe_seen = 0, bytearray(), False\n"
    "    p = select.poll() if kind == 'poll' else None\n"
    "    while len(got) < n:\n"
    "        if kind == 'select':\n"
    "            rl = [s] + ([] if pipe_seen else [r])\n"
    "            wl = [s] if sent < n else []\n"
    "            rr, ww, _ = select.select(rl, wl, [], 10)\n"
    "            rd, wr, pr = s in rr, s in ww, r in rr\n"
    "            if not rr and not ww:\n"
    "                sys.exit('select timed out')\n"
    "        else:\n"
    "            p.register(s, select.POLLIN | (select.POLLOUT if sent < n "
    "else 0))\n"
    "            if not pipe_seen:\n"
    "                p.register(r, select.POLLIN)\n"
    "            ev = dict(p.poll(10000))\n"
    "            if not ev:\n"
    "                sys.exit('poll timed out')\n"
    "            m = ev.get(s.fileno(), 0)\n"
    "            rd, wr = m & select.POLLIN, m & select.POLLOUT\n"
    "            pr = r in ev\n"
    "            if pr:\n"
    "                p.unregister(r)\n"
    "        if pr:\n"
    "            os.read(r, 1)\n"
    "            pipe_seen = True\n"
    "        if rd:\n"
    "            d = s.recv(65536)\n"
    "            if not d:\n"
    "                break\n"
    "            got += d\n"
    "        if wr:\n"
    "            sent += s.send(data[sent:sent + 65536])\n"
    "    s.close()\n"
    "    print(kind, bytes(got) == data, pipe_seen, len(got), "
    "hashlib.sha256(got).hexdigest(), flush=True)\n"
    "    return bytes(got) == data and pipe_seen\n"
    "ok = run('select') and run('poll')\n"
    "sys.exit(0 if ok else 1)\n";

static void select_and_poll_client_mix_netcore_and_pipes(void **state)
{
	(void)state;
	char port[16];
	uint16_t p = st_port(2);
	snprintf(port, sizeof(port), "%u", p);
	static struct st_proc server, client;
	assert_int_equal(st_start_echo(&server, NC_TB_KERNEL4, p), 0);
	char *cli[] = {"/usr/bin/python3",
	               "-c",
	               (char *)mux_client_py,
	               NC_TB_KERNEL4,
	               port,
	               "8388608",
	               NULL};
	struct st_spawn_opts shim = {.shim = true, .broker = tb.broker_socket};
	int64_t t0 = st_now_ms();
	assert_int_equal(st_spawn(&client, &shim, cli), 0);
	int rc = st_finish(&client, st_now_ms() + 120000);
	printf("client: exit %d after %lld ms:\n%s", rc,
	       (long long)(st_now_ms() - t0), client.out);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(client.out, "select True True 8388608"));
	assert_non_null(strstr(client.out, "poll True True 8388608"));
}

static const char epoll_server_py[] =
    "import os, select, socket, sys\n"
    "ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
    "ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "ls.bind((sys.argv[1], int(sys.argv[2])))\n"
    "ls.listen(16)\n"
    "ls.setblocking(False)\n"
    "ep = select.epoll()\n"
    "ep.register(ls.fileno(), select.EPOLLIN)\n"
    "ep.register(0, select.EPOLLIN)\n"
    "conns, pending, eof, served = {}, {}, set(), 0\n"
    "ET = select.EPOLLET\n"
    "def flush(fd):\n"
    "    c = conns[fd]\n"
    "    while pending[fd]:\n"
    "        try:\n"
    "            k = c.send(pending[fd][:65536])\n"
    "        except BlockingIOError:\n"
    "            break\n"
    "        pending[fd] = pending[fd][k:]\n"
    "    if pending[fd]:\n"
    "        ep.modify(fd, select.EPOLLIN | select.EPOLLOUT | ET)\n"
    "    else:\n"
    "        ep.modify(fd, select.EPOLLIN | ET)\n"
    "def drain(fd):\n"
    "    c = conns[fd]\n"
    "    while True:\n"
    "        try:\n"
    "            d = c.recv(65536)\n"
    "        except BlockingIOError:\n"
    "            return\n"
    "        if not d:\n"
    "            eof.add(fd)\n"
    "            return\n"
    "        pending[fd] += d\n"
    "while True:\n"
    "    events = ep.poll(30)\n"
    "    if not events:\n"
    "        sys.exit('epoll timed out')\n"
    "    for fd, ev in events:\n"
    "        if fd == 0:\n"
    "            line = os.read(0, 100)\n"
    "            print('stdin', line.decode().strip(), 'served', served, "
    "flush=True)\n"
    "            sys.exit(0 if line.startswith(b'quit') else 3)\n"
    "        if fd == ls.fileno():\n"
    "            while True:\n"
    "                try:\n"
    "                    c, a = ls.accept()\n"
    "                except BlockingIOError:\n"
    "                    break\n"
    "                c.setblocking(False)\n"
    "                conns[c.fileno()] = c\n"
    "                pending[c.fileno()] = b''\n"
    "                ep.register(c.fileno(), select.EPOLLIN | ET)\n"
    "            continue\n"
    "        if ev & select.EPOLLIN:\n"
    "            drain(fd)\n"
    "        flush(fd)\n"
    "        if fd in eof and not pending[fd]:\n"
    "            ep.unregister(fd)\n"
    "            conns.pop(fd).close()\n"
    "            eof.discard(fd)\n"
    "            served += 1\n";

#define CONNS 4
#define BYTES (4u << 20)

struct conn {
	int fd;
	size_t sent, got;
	bool shut;
};

static uint8_t pat(size_t i, int k)
{
	return (uint8_t)(i * 13 + (size_t)k * 101 + (i >> 16));
}

static int kernel_connect(uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons(port)};
	inet_pton(AF_INET, NC_TB_STACK4, &sa.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		return -1;
	fcntl(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

/* One step of a connection: write what fits, read and check what came. */
static int conn_step(struct conn *c, int k, short rev)
{
	uint8_t buf[65536];
	if ((rev & POLLOUT) && c->sent < BYTES) {
		size_t n = BYTES - c->sent < sizeof(buf) ? BYTES - c->sent
		                                         : sizeof(buf);
		for (size_t i = 0; i < n; i++)
			buf[i] = pat(c->sent + i, k);
		ssize_t w = write(c->fd, buf, n);
		if (w > 0)
			c->sent += (size_t)w;
	}
	if (c->sent == BYTES && !c->shut) {
		shutdown(c->fd, SHUT_WR);
		c->shut = true;
	}
	if (rev & (POLLIN | POLLHUP)) {
		ssize_t r = read(c->fd, buf, sizeof(buf));
		if (r == 0)
			return c->got == BYTES ? 1 : -EPIPE;
		for (ssize_t i = 0; i < r; i++)
			if (buf[i] != pat(c->got + (size_t)i, k))
				return -EBADMSG;
		if (r > 0)
			c->got += (size_t)r;
	}
	return 0;
}

/* CONNS echo connections at once; 0 when all came back intact. */
static int kernel_echo_clients(uint16_t port, int64_t deadline)
{
	struct conn c[CONNS];
	struct pollfd f[CONNS];
	for (int k = 0; k < CONNS; k++) {
		c[k] = (struct conn){.fd = kernel_connect(port)};
		if (c[k].fd < 0)
			return -ECONNREFUSED;
	}
	int done = 0, err = 0;
	while (done < CONNS && err == 0 && st_now_ms() < deadline) {
		for (int k = 0; k < CONNS; k++)
			f[k] = (struct pollfd){
			    .fd = c[k].fd,
			    .events =
			        POLLIN | (c[k].sent < BYTES ? POLLOUT : 0)};
		poll(f, CONNS, 1000);
		for (int k = 0; k < CONNS && err == 0; k++) {
			if (f[k].fd < 0 || f[k].revents == 0)
				continue;
			int r = conn_step(&c[k], k, f[k].revents);
			if (r < 0)
				err = r;
			if (r == 1) {
				close(c[k].fd);
				c[k].fd = -1;
				done++;
			}
		}
		for (int k = 0; k < CONNS; k++)
			f[k].fd = c[k].fd;
	}
	for (int k = 0; k < CONNS; k++)
		if (c[k].fd >= 0)
			close(c[k].fd);
	return err != 0 ? err : done == CONNS ? 0 : -ETIMEDOUT;
}

static void epoll_server_mixes_netcore_and_its_stdin(void **state)
{
	(void)state;
	char port[16];
	uint16_t p = st_port(3);
	snprintf(port, sizeof(port), "%u", p);
	static struct st_proc server;
	char *srv[] = {"/usr/bin/python3", "-c", (char *)epoll_server_py,
	               NC_TB_STACK4,       port, NULL};
	struct st_spawn_opts shim = {
	    .shim = true, .broker = tb.broker_socket, .stdin_pipe = true};
	assert_int_equal(st_spawn(&server, &shim, srv), 0);
	assert_int_equal(
	    st_wait_listening(NC_TB_STACK4, p, &server, st_now_ms() + 20000),
	    0);
	int64_t t0 = st_now_ms();
	int r = kernel_echo_clients(p, st_now_ms() + 60000);
	st_pump(&server);
	printf("echo clients: %d after %lld ms (%d x %u bytes)\n", r,
	       (long long)(st_now_ms() - t0), CONNS, BYTES);
	assert_int_equal(r, 0);
	assert_int_equal(write(server.in_fd, "quit\n", 5), 5);
	int rc = st_finish(&server, st_now_ms() + 20000);
	printf("server: exit %d: %s", rc, server.out);
	assert_int_equal(rc, 0);
	/* The readiness probe's connection counts too. */
	assert_non_null(strstr(server.out, "stdin quit served 5"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(select_and_poll_client_mix_netcore_and_pipes),
	    cmocka_unit_test(epoll_server_mixes_netcore_and_its_stdin),
	};
	return cmocka_run_group_tests_name("shim_wait", tests, setup, teardown);
}
