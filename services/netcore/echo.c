/*
 * Echo: every byte a TCP peer sends comes back; every UDP datagram goes
 * back to its sender.
 *
 * TCP backpressure. Received data is queued on the connection and written
 * back as send buffer space allows; the receive window is opened only for
 * bytes that were written back (tcp_recved), so a peer that sends faster
 * than it reads is slowed by TCP itself and the queue stays within one
 * window. A connection's state is freed when both directions are closed, or
 * when lwIP reports an error (the pcb is then already gone).
 *
 * What it does not do: anything but echo. Not for production traffic.
 */
#include "services/netcore/echo.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "lwip/tcp.h"
#include "lwip/udp.h"

struct nc_echo {
	struct tcp_pcb *listener;
	struct udp_pcb *udp;
};

struct conn {
	struct tcp_pcb *pcb;
	struct pbuf *pending; /* received, not yet written back */
	uint16_t pending_off; /* bytes of the first pbuf already written */
	bool peer_closed;
};

static void conn_free(struct conn *c)
{
	if (c->pending)
		pbuf_free(c->pending);
	free(c);
}

static void conn_close(struct conn *c)
{
	struct tcp_pcb *pcb = c->pcb;
	tcp_arg(pcb, NULL);
	tcp_recv(pcb, NULL);
	tcp_sent(pcb, NULL);
	tcp_err(pcb, NULL);
	if (tcp_close(pcb) != ERR_OK)
		tcp_abort(pcb);
	conn_free(c);
}

/* Writes back as much pending data as the send buffer takes. */
static void write_back(struct conn *c)
{
	uint32_t written = 0;
	while (c->pending != NULL) {
		struct pbuf *p = c->pending;
		uint16_t left = (uint16_t)(p->len - c->pending_off);
		uint16_t room = (uint16_t)LWIP_MIN(tcp_sndbuf(c->pcb), 0xffff);
		uint16_t n = LWIP_MIN(left, room);
		if (n == 0)
			break;
		err_t err =
		    tcp_write(c->pcb, (char *)p->payload + c->pending_off, n,
		              TCP_WRITE_FLAG_COPY);
		if (err != ERR_OK)
			break; /* out of segments: the sent callback retries */
		written += n;
		tcp_recved(c->pcb, n);
		c->pending_off = (uint16_t)(c->pending_off + n);
		if (c->pending_off < p->len)
			break;
		c->pending = pbuf_dechain(p);
		c->pending_off = 0;
		pbuf_free(p);
	}
	if (written > 0)
		tcp_output(c->pcb);
}

static void maybe_finish(struct conn *c)
{
	if (c->peer_closed && c->pending == NULL)
		conn_close(c);
}

static err_t on_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
	struct conn *c = arg;
	(void)pcb;
	if (p == NULL || err != ERR_OK) {
		if (p)
			pbuf_free(p);
		c->peer_closed = true;
		maybe_finish(c);
		return ERR_OK;
	}
	if (c->pending == NULL)
		c->pending = p;
	else
		pbuf_cat(c->pending, p);
	write_back(c);
	return ERR_OK;
}

static err_t on_sent(void *arg, struct tcp_pcb *pcb, u16_t len)
{
	struct conn *c = arg;
	(void)pcb;
	(void)len;
	write_back(c);
	maybe_finish(c);
	return ERR_OK;
}

static void on_error(void *arg, err_t err)
{
	(void)err;
	conn_free(arg); /* lwIP has already freed the pcb */
}

static err_t on_accept(void *arg, struct tcp_pcb *pcb, err_t err)
{
	(void)arg;
	if (err != ERR_OK || pcb == NULL)
		return ERR_VAL;
	struct conn *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		tcp_abort(pcb);
		return ERR_ABRT;
	}
	c->pcb = pcb;
	tcp_arg(pcb, c);
	tcp_recv(pcb, on_recv);
	tcp_sent(pcb, on_sent);
	tcp_err(pcb, on_error);
	tcp_nagle_disable(pcb);
	return ERR_OK;
}

static void on_datagram(void *arg, struct udp_pcb *pcb, struct pbuf *p,
                        const ip_addr_t *addr, u16_t port)
{
	(void)arg;
	/* Copy: the received pbuf points into a phy buffer and has no room
	 * in front for new headers. */
	struct pbuf *reply = pbuf_clone(PBUF_TRANSPORT, PBUF_RAM, p);
	pbuf_free(p);
	if (reply == NULL)
		return;
	udp_sendto(pcb, reply, addr, port);
	pbuf_free(reply);
}

struct nc_echo *nc_echo_start(uint16_t port)
{
	struct nc_echo *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	struct tcp_pcb *pcb = tcp_new_ip_type(IPADDR_TYPE_ANY);
	e->udp = udp_new_ip_type(IPADDR_TYPE_ANY);
	if (pcb == NULL || e->udp == NULL ||
	    tcp_bind(pcb, IP_ANY_TYPE, port) != ERR_OK ||
	    udp_bind(e->udp, IP_ANY_TYPE, port) != ERR_OK) {
		fprintf(stderr, "echo: cannot listen on port %u\n", port);
		if (pcb)
			tcp_close(pcb);
		nc_echo_stop(e);
		return NULL;
	}
	e->listener = tcp_listen_with_backlog(pcb, 255);
	tcp_accept(e->listener, on_accept);
	udp_recv(e->udp, on_datagram, e);
	return e;
}

void nc_echo_stop(struct nc_echo *e)
{
	if (e == NULL)
		return;
	if (e->listener)
		tcp_close(e->listener);
	if (e->udp)
		udp_remove(e->udp);
	free(e);
}
