/* harness: see harness.h. */
#include "tests/fault/harness.h"

#include <errno.h>
#include <string.h>

#include "tests/fault/data_server.h"

static volatile sig_atomic_t *signal_flag;

static void on_signal(int sig)
{
	(void)sig;
	if (signal_flag != NULL)
		*signal_flag = 1;
}

void ff_harness_signals(volatile sig_atomic_t *flag)
{
	signal_flag = flag;
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

int ff_harness_up(struct ff_harness *h, const char *tag,
                  struct ff_driver_cfg *cfg)
{
	memset(h, 0, sizeof(*h));
	int err = nc_testbed_start_sockets(&h->tb, tag, 7, NULL);
	if (err)
		return err;
	h->tb_up = true;
	err = nc_testbed_enter(&h->tb);
	if (!err) {
		h->server = ff_server_start(NC_TB_KERNEL4, NC_TB_KERNEL6,
		                            cfg->wl.server_port, NC_TB_STACK4);
		err = h->server < 0 ? (int)h->server : 0;
	}
	if (err) {
		h->server = 0;
		ff_harness_down(h);
		return err;
	}
	cfg->wl.broker_socket = h->tb.broker_socket;
	cfg->wl.server4 = NC_TB_KERNEL4;
	cfg->wl.server6 = NC_TB_KERNEL6;
	cfg->ops = ff_testbed_ops(&h->tb);
	return 0;
}

void ff_harness_down(struct ff_harness *h)
{
	if (h->server > 0)
		ff_server_stop(h->server);
	h->server = 0;
	if (h->tb_up)
		nc_testbed_stop(&h->tb);
	h->tb_up = false;
}
