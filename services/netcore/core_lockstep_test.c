/*
 * Two cores in two processes, joined back to back by an in-memory link and
 * stepped in lockstep on one virtual clock, complete a 4 MiB TCP transfer
 * through loss and reordering -- identically on every run.
 *
 * The parent plays the link: it is the phy of both cores' regions. Each
 * step it tells core A and then core B to advance their clocks to the same
 * time and run until idle, then carries the packets each transmitted to the
 * other, dropping some and holding others back a few steps, by a seeded
 * generator. Core A runs a small lwIP client that sends a byte pattern to
 * core B's echo service and verifies what comes back. Nothing depends on
 * real time or on the scheduler, so two runs must see the same packets at
 * the same steps: the test hashes every delivered packet with its step and
 * compares the two runs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* core.h first: it includes <netinet/in.h>, which must come before lwIP's
 * own byte-order macros. */
#include "services/netcore/core.h"

#include "lwip/tcp.h"
#include "services/netcore/lwip/nc_lwip_port.h"

#define TOTAL     (4u << 20)
#define STEP_MS   5u
#define MAX_STEPS 200000u
#define ECHO_PORT 7
#define HELD_MAX  64
#define LOSS_PPM  20000u /* 2% of packets vanish */
#define DELAY_PPM 50000u /* 5% arrive 1-3 steps late */

enum { CMD_STEP = 1, CMD_START = 2, CMD_QUIT = 3 };

struct command {
	uint32_t cmd;
	uint32_t now_ms;
};

struct report {
	uint64_t verified;
	uint32_t done;
	uint32_t failed;
};

/* ------------------------------------------------- inside a core process */

static struct nc_lwip_vclock vclock;
static uint64_t rand_state;

static uint32_t seeded_rand(void *ctx)
{
	(void)ctx;
	rand_state =
	    rand_state * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(rand_state >> 33);
}

static uint8_t pattern(uint64_t i)
{
	return (uint8_t)((i * 131) ^ (i >> 9));
}

struct client {
	struct tcp_pcb *pcb;
	uint64_t sent, verified;
	bool failed;
};

static struct client client;

static void client_push(struct client *c)
{
	uint8_t buf[4096];
	while (c->sent < TOTAL) {
		uint32_t n = (uint32_t)LWIP_MIN(sizeof(buf), TOTAL - c->sent);
		n = LWIP_MIN(n, tcp_sndbuf(c->pcb));
		if (n == 0)
			break;
		for (uint32_t i = 0; i < n; i++)
			buf[i] = pattern(c->sent + i);
		if (tcp_write(c->pcb, buf, (u16_t)n, TCP_WRITE_FLAG_COPY) !=
		    ERR_OK)
			break;
		c->sent += n;
	}
	tcp_output(c->pcb);
}

static err_t client_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p,
                         err_t err)
{
	struct client *c = arg;
	if (p == NULL || err != ERR_OK) {
		c->failed = c->verified < TOTAL;
		return ERR_OK;
	}
	for (struct pbuf *q = p; q != NULL; q = q->next) {
		const uint8_t *b = q->payload;
		for (u16_t i = 0; i < q->len; i++)
			if (b[i] != pattern(c->verified + i))
				c->failed = true;
		c->verified += q->len;
	}
	tcp_recved(pcb, p->tot_len);
	pbuf_free(p);
	return ERR_OK;
}

static err_t client_sent(void *arg, struct tcp_pcb *pcb, u16_t len)
{
	(void)pcb;
	(void)len;
	client_push(arg);
	return ERR_OK;
}

static void client_error(void *arg, err_t err)
{
	(void)err;
	((struct client *)arg)->failed = true;
}

static err_t client_connected(void *arg, struct tcp_pcb *pcb, err_t err)
{
	(void)pcb;
	if (err != ERR_OK)
		return err;
	client_push(arg);
	return ERR_OK;
}

static void client_start(const char *peer)
{
	ip_addr_t addr;
	ipaddr_aton(peer, &addr);
	client.pcb = tcp_new_ip_type(IPADDR_TYPE_V4);
	tcp_arg(client.pcb, &client);
	tcp_recv(client.pcb, client_recv);
	tcp_sent(client.pcb, client_sent);
	tcp_err(client.pcb, client_error);
	tcp_connect(client.pcb, &addr, ECHO_PORT, client_connected);
}

static void settle(struct nc_core *core)
{
	for (int i = 0; i < 100000 && nc_core_poll(core).again; i++)
		;
}

/* Runs one core: A (the client) or B (the echo server), as told. */
static int core_main(bool is_a, struct nc_region *region, int cmd_fd,
                     int report_fd)
{
	rand_state = is_a ? 0xa : 0xb;
	vclock.now_ms = 0;
	nc_lwip_clock_set(nc_lwip_vclock_read, &vclock);
	nc_lwip_rand_set(seeded_rand, NULL);
	struct nc_core_config cfg;
	nc_core_config_default(&cfg);
	nc_core_config_set_ipv4(&cfg, is_a ? "10.88.0.1/24" : "10.88.0.2/24");
	memset(&cfg.ipv6, 0, sizeof(cfg.ipv6));
	cfg.echo_port = is_a ? 0 : ECHO_PORT;
	struct nc_doorbell core_bell, phy_bell;
	if (nc_doorbell_create(&core_bell) || nc_doorbell_create(&phy_bell))
		return 1;
	struct nc_core *core =
	    nc_core_create(&cfg, region, &core_bell, &phy_bell);
	if (core == NULL)
		return 1;
	struct command cmd;
	while (read(cmd_fd, &cmd, sizeof(cmd)) == sizeof(cmd) &&
	       cmd.cmd != CMD_QUIT) {
		vclock.now_ms = cmd.now_ms;
		if (cmd.cmd == CMD_START)
			client_start("10.88.0.2");
		settle(core);
		struct report r = {.verified = client.verified,
		                   .done = client.verified == TOTAL,
		                   .failed = client.failed};
		if (write(report_fd, &r, sizeof(r)) != sizeof(r))
			return 1;
	}
	nc_core_destroy(core);
	return 0;
}

/* ------------------------------------------------------ the link (parent) */

struct side {
	char name[2]; /* "a" or "b": part of the trace */
	struct nc_region region;
	struct nc_doorbell phy_bell, core_bell; /* unused: nobody sleeps */
	struct nc_phy_dev phy;
	pid_t pid;
	int cmd_fd, report_fd;
	struct report last;
};

/* A packet the link holds back, to deliver at a later step. */
struct held {
	uint32_t due_step;
	struct side *to;
	uint32_t len;
	uint8_t bytes[2048];
};

struct link {
	struct held held[HELD_MAX];
	uint32_t held_count;
	uint64_t rng;
	uint64_t trace; /* FNV-1a over (step, direction, bytes) delivered */
	uint64_t delivered, lost, delayed, overrun;
	uint32_t step;
};

static uint32_t link_rand_ppm(struct link *l)
{
	l->rng ^= l->rng << 13;
	l->rng ^= l->rng >> 7;
	l->rng ^= l->rng << 17;
	return (uint32_t)(l->rng % 1000000u);
}

static void trace_bytes(struct link *l, const void *data, size_t len)
{
	const uint8_t *b = data;
	for (size_t i = 0; i < len; i++) {
		l->trace ^= b[i];
		l->trace *= 0x100000001b3ull;
	}
}

static void deliver(struct link *l, struct side *to, const void *pkt,
                    uint32_t len)
{
	struct nc_desc d;
	void *buf = nc_phy_dev_rx_buffer(&to->phy, &d);
	trace_bytes(l, &l->step, sizeof(l->step));
	if (buf == NULL) {
		/* The receiver has no buffer free, as a NIC would drop. */
		l->overrun++;
		trace_bytes(l, "overrun", 7);
		return;
	}
	memcpy(buf, pkt, len);
	nc_phy_dev_rx_commit(&to->phy, &d, len);
	trace_bytes(l, to->name, 1);
	trace_bytes(l, pkt, len);
	l->delivered++;
}

/* Carries what `from` transmitted to `to`, losing and delaying some. */
static void carry(struct link *l, struct side *from, struct side *to)
{
	struct nc_desc batch[NC_PHY_BATCH];
	int n;
	while ((n = nc_phy_dev_tx(&from->phy, batch, NC_PHY_BATCH)) > 0) {
		for (int i = 0; i < n; i++) {
			const void *pkt =
			    nc_phy_dev_data(&from->phy, &batch[i]);
			uint32_t len = batch[i].length;
			uint32_t dice = link_rand_ppm(l);
			if (dice < LOSS_PPM) {
				l->lost++;
			} else if (dice < LOSS_PPM + DELAY_PPM &&
			           l->held_count < HELD_MAX &&
			           len <= sizeof(l->held[0].bytes)) {
				struct held *h = &l->held[l->held_count++];
				h->due_step = l->step + 1 + dice % 3;
				h->to = to;
				h->len = len;
				memcpy(h->bytes, pkt, len);
				l->delayed++;
			} else {
				deliver(l, to, pkt, len);
			}
			nc_phy_dev_tx_done(&from->phy, &batch[i]);
		}
		assert_int_equal(nc_phy_dev_flush(&from->phy), 0);
	}
}

static void release_due(struct link *l)
{
	uint32_t kept = 0;
	for (uint32_t i = 0; i < l->held_count; i++) {
		struct held *h = &l->held[i];
		if (h->due_step <= l->step)
			deliver(l, h->to, h->bytes, h->len);
		else
			l->held[kept++] = *h;
	}
	l->held_count = kept;
}

static void command(struct side *s, uint32_t cmd, uint32_t now_ms)
{
	struct command c = {.cmd = cmd, .now_ms = now_ms};
	assert_int_equal(write(s->cmd_fd, &c, sizeof(c)), sizeof(c));
	if (cmd == CMD_QUIT)
		return;
	assert_int_equal(read(s->report_fd, &s->last, sizeof(s->last)),
	                 sizeof(s->last));
}

static void side_start(struct side *s, bool is_a)
{
	struct nc_phy_params p = {
	    .ring_slots = 256, .buf_count = 512, .buf_size = 2048, .mtu = 1500};
	assert_int_equal(nc_phy_region_create(&s->region, &p), 0);
	assert_int_equal(nc_doorbell_create(&s->phy_bell), 0);
	assert_int_equal(nc_doorbell_create(&s->core_bell), 0);
	int to_child[2], from_child[2];
	assert_int_equal(pipe(to_child), 0);
	assert_int_equal(pipe(from_child), 0);
	fflush(stdout);
	s->pid = fork();
	assert_true(s->pid >= 0);
	if (s->pid == 0) {
		close(to_child[1]);
		close(from_child[0]);
		_exit(core_main(is_a, &s->region, to_child[0], from_child[1]));
	}
	close(to_child[0]);
	close(from_child[1]);
	s->cmd_fd = to_child[1];
	s->report_fd = from_child[0];
	assert_int_equal(
	    nc_phy_dev_open(&s->phy, &s->region, &s->phy_bell, &s->core_bell),
	    0);
}

static void side_stop(struct side *s)
{
	command(s, CMD_QUIT, 0);
	int status;
	assert_int_equal(waitpid(s->pid, &status, 0), s->pid);
	close(s->cmd_fd);
	close(s->report_fd);
	nc_doorbell_close(&s->phy_bell);
	nc_doorbell_close(&s->core_bell);
	nc_region_close(&s->region);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

struct outcome {
	uint64_t trace, delivered, lost, delayed, overrun;
	uint32_t steps;
	uint64_t verified;
};

static struct outcome run_once(void)
{
	struct side a = {.name = "a"}, b = {.name = "b"};
	struct link l = {.rng = 0x5eed, .trace = 0xcbf29ce484222325ull};
	side_start(&a, true);
	side_start(&b, false);
	/* Attach the link to both cores, then start the client. */
	nc_phy_dev_request(&a.phy);
	nc_phy_dev_request(&b.phy);
	command(&a, CMD_STEP, 0);
	command(&b, CMD_STEP, 0);
	assert_int_equal(nc_phy_dev_granted(&a.phy), 1);
	assert_int_equal(nc_phy_dev_granted(&b.phy), 1);
	command(&a, CMD_START, 0);
	for (l.step = 1; l.step < MAX_STEPS && !a.last.done && !a.last.failed;
	     l.step++) {
		uint32_t now = l.step * STEP_MS;
		command(&a, CMD_STEP, now);
		command(&b, CMD_STEP, now);
		carry(&l, &a, &b);
		carry(&l, &b, &a);
		release_due(&l);
		assert_int_equal(nc_phy_dev_flush(&a.phy), 0);
		assert_int_equal(nc_phy_dev_flush(&b.phy), 0);
	}
	struct outcome o = {.trace = l.trace,
	                    .delivered = l.delivered,
	                    .lost = l.lost,
	                    .delayed = l.delayed,
	                    .steps = l.step,
	                    .verified = a.last.verified};
	side_stop(&a);
	side_stop(&b);
	printf("transfer: %llu bytes verified in %u steps (%u ms virtual); "
	       "%llu packets delivered, %llu lost, %llu delayed, %llu overrun; "
	       "trace %016llx\n",
	       (unsigned long long)o.verified, o.steps, o.steps * STEP_MS,
	       (unsigned long long)o.delivered, (unsigned long long)o.lost,
	       (unsigned long long)o.delayed, (unsigned long long)o.overrun,
	       (unsigned long long)o.trace);
	return o;
}

static void lossy_transfer_completes_identically_every_run(void **state)
{
	(void)state;
	struct outcome first = run_once();
	assert_int_equal(first.verified, TOTAL);
	assert_true(first.lost > 0);
	assert_true(first.delayed > 0);
	struct outcome second = run_once();
	assert_int_equal(second.verified, TOTAL);
	assert_int_equal(second.steps, first.steps);
	assert_int_equal(second.delivered, first.delivered);
	assert_int_equal(second.trace, first.trace);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(lossy_transfer_completes_identically_every_run),
	};
	return cmocka_run_group_tests_name("core_lockstep", tests, NULL, NULL);
}
