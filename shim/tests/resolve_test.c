/*
 * resolve_test: name resolution inside the sandbox, by unmodified
 * programs under the shim.
 *
 * The kernel side runs a tiny DNS responder (python3, UDP 10.77.0.1:53):
 * dns.sandbox.test is a CNAME to real.sandbox.test (compressed names),
 * which has A 10.77.0.1 and AAAA fd77::1; every other name is NXDOMAIN.
 * The shim is pointed at it with NETCORE_DNS and at a hosts file of the
 * test's own with NETCORE_HOSTS (web.sandbox.test).
 *
 * 1. python3 resolves through getaddrinfo (both families and each one),
 *    gethostbyname (getaddrinfo in CPython) and gethostbyname_ex
 *    (gethostbyname_r), and sees NXDOMAIN as EAI_NONAME.
 * 2. curl fetches http://dns.sandbox.test:PORT/ and
 *    http://web.sandbox.test:PORT/ from a kernel-side http.server.
 */
#include "shim/testing/shimtest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static struct nc_testbed tb;
static char dir[64], hosts_env[160];
static const char *const extra_env[] = {"NETCORE_DNS=" NC_TB_KERNEL4, hosts_env,
                                        NULL};
static struct st_proc dns;

static const char dns_server_py[] =
    "import socket, struct\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.bind(('10.77.0.1', 53))\n"
    "print('ready', flush=True)\n"
    "def qname(m):\n"
    "    i, parts = 12, []\n"
    "    while m[i]:\n"
    "        parts.append(m[i + 1:i + 1 + m[i]].decode())\n"
    "        i += 1 + m[i]\n"
    "    return '.'.join(parts).lower(), i + 1\n"
    "while True:\n"
    "    m, peer = s.recvfrom(1500)\n"
    "    name, end = qname(m)\n"
    "    qtype = struct.unpack('>H', m[end:end + 2])[0]\n"
    "    q = m[12:end + 4]\n"
    "    ans = b''\n"
    "    n = 0\n"
    "    rcode = 0\n"
    "    if name == 'dns.sandbox.test':\n"
    "        target = b'\\x04real\\xc0\\x10'\n"
    "        ans += b'\\xc0\\x0c' + struct.pack('>HHIH', 5, 1, 60, "
    "len(target)) + target\n"
    "        n = 1\n"
    "        off = 12 + len(q) + 12\n"
    "        ptr = struct.pack('>H', 0xc000 | off)\n"
    "        if qtype == 1:\n"
    "            ans += ptr + struct.pack('>HHIH', 1, 1, 60, 4) + "
    "socket.inet_pton(socket.AF_INET, '10.77.0.1')\n"
    "            n += 1\n"
    "        if qtype == 28:\n"
    "            ans += ptr + struct.pack('>HHIH', 28, 1, 60, 16) + "
    "socket.inet_pton(socket.AF_INET6, 'fd77::1')\n"
    "            n += 1\n"
    "    else:\n"
    "        rcode = 3\n"
    "    print('query', name, qtype, flush=True)\n"
    "    hdr = m[:2] + struct.pack('>HHHHH', 0x8180 | rcode, 1, n, 0, 0)\n"
    "    s.sendto(hdr + q + ans, peer)\n";

static int setup_steps(void **state)
{
	(void)state;
	if (st_bed_start(&tb, "shres", dir) != 0)
		return -1;
	char hosts[128];
	snprintf(hosts, sizeof(hosts), "%s/hosts", dir);
	snprintf(hosts_env, sizeof(hosts_env), "NETCORE_HOSTS=%s", hosts);
	FILE *f = fopen(hosts, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "# the test's own hosts file\n127.0.0.1 localhost\n"
	           "10.77.0.1 web.sandbox.test web # kernel side\n");
	fclose(f);
	char *cmd[] = {"/usr/bin/python3", "-c", (char *)dns_server_py, NULL};
	struct st_spawn_opts plain = {.shim = false};
	if (st_spawn(&dns, &plain, cmd) != 0)
		return -1;
	return st_wait_output(&dns, "ready", st_now_ms() + 20000);
}

static int teardown(void **state)
{
	(void)state;
	st_bed_stop(&tb, dir);
	return 0;
}

/* A setup that fails half-way leaves nothing behind either. */
static int setup(void **state)
{
	if (setup_steps(state) == 0)
		return 0;
	teardown(state);
	return -1;
}

static const char lookups_py[] =
    "import socket\n"
    "def addrs(name, fam=0):\n"
    "    return sorted({a[4][0] for a in socket.getaddrinfo(name, 80, "
    "fam, socket.SOCK_STREAM)})\n"
    "print('hosts', addrs('web.sandbox.test'))\n"
    "print('dns4', addrs('dns.sandbox.test', socket.AF_INET))\n"
    "print('dns6', addrs('dns.sandbox.test', socket.AF_INET6))\n"
    "print('dnsany', addrs('dns.sandbox.test'))\n"
    "print('ghbn', socket.gethostbyname('dns.sandbox.test'))\n"
    "print('ghbnex', socket.gethostbyname_ex('web.sandbox.test'))\n"
    "try:\n"
    "    socket.getaddrinfo('nope.sandbox.test', 80)\n"
    "    print('nx resolved')\n"
    "except socket.gaierror as e:\n"
    "    print('nx', e.errno == socket.EAI_NONAME)\n";

static void python_resolves_hosts_and_dns(void **state)
{
	(void)state;
	static struct st_proc py;
	char *cmd[] = {"/usr/bin/python3", "-c", (char *)lookups_py, NULL};
	struct st_spawn_opts shim = {
	    .shim = true, .broker = tb.broker_socket, .env = extra_env};
	assert_int_equal(st_spawn(&py, &shim, cmd), 0);
	int rc = st_finish(&py, st_now_ms() + 60000);
	st_pump(&dns);
	printf("python: exit %d:\n%sresponder saw:\n%s", rc, py.out, dns.out);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(py.out, "hosts ['10.77.0.1']"));
	assert_non_null(strstr(py.out, "dns4 ['10.77.0.1']"));
	assert_non_null(strstr(py.out, "dns6 ['fd77::1']"));
	assert_non_null(strstr(py.out, "dnsany ['10.77.0.1', 'fd77::1']"));
	assert_non_null(strstr(py.out, "ghbn 10.77.0.1"));
	assert_non_null(
	    strstr(py.out, "ghbnex ('web.sandbox.test', [], ['10.77.0.1'])"));
	assert_non_null(strstr(py.out, "nx True"));
}

static void curl_fetches_by_name(void **state)
{
	(void)state;
	if (st_sanitized()) {
		printf("skipped: curl cannot run with ASan preloaded\n");
		skip();
	}
	char blob[128], out[128], port[16], url[128];
	snprintf(blob, sizeof(blob), "%s/blob", dir);
	uint16_t p = st_port(4);
	snprintf(port, sizeof(port), "%u", p);
	assert_int_equal(st_write_pattern(blob, 4, 1 << 20), 0);
	static struct st_proc server, curl[2];
	char *srv[] = {"/usr/bin/python3", "-m",          "http.server",
	               "--bind",           NC_TB_KERNEL4, port,
	               "--directory",      dir,           NULL};
	struct st_spawn_opts plain = {.shim = false};
	assert_int_equal(st_spawn(&server, &plain, srv), 0);
	assert_int_equal(
	    st_wait_listening(NC_TB_KERNEL4, p, &server, st_now_ms() + 20000),
	    0);
	const char *names[2] = {"dns.sandbox.test", "web.sandbox.test"};
	for (int i = 0; i < 2; i++) {
		snprintf(url, sizeof(url), "http://%s:%u/blob", names[i], p);
		snprintf(out, sizeof(out), "%s/out%d", dir, i);
		char *cmd[] = {
		    "/usr/bin/curl", "-sS", "--fail", "-o", out, url, NULL};
		struct st_spawn_opts shim = {
		    .shim = true, .broker = tb.broker_socket, .env = extra_env};
		assert_int_equal(st_spawn(&curl[i], &shim, cmd), 0);
		int rc = st_finish(&curl[i], st_now_ms() + 60000);
		printf("curl %s: exit %d %s\n", url, rc, curl[i].out);
		assert_int_equal(rc, 0);
		uint64_t bad;
		assert_int_equal(st_check_pattern(out, 4, 1 << 20, &bad), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(python_resolves_hosts_and_dns),
	    cmocka_unit_test(curl_fetches_by_name),
	};
	return cmocka_run_group_tests_name("shim_resolve", tests, setup,
	                                   teardown);
}
