/*
 * Echo: every byte a TCP peer sends comes back; every UDP datagram goes
 * back to its sender.
 *
 * TCP backpressure. Received data is queued on the connection (chain by
 * chain) and written back as send buffer space allows; the receive window is
 * opened only for bytes that were written back (tcp_recved), so a peer that
 * sends faster than it reads is slowed by TCP itself and the queue stays within
 * one window. A connection's state is freed when both directions are closed, or
 * when lwIP reports an error (the pcb is then already gone).
 *
 * What it does not do: anything but echo. Not for production traffic.
 */
#include "services/netcore/echo.h"
#include "services/common/log.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "lwip/tcp.h"
#include "lwip/udp.h"

struct nc_echo {
	struct tcp_pcb *listener;
	struct udp_pcb *udp;
};

/* A received chain waiting to be written back. Chains are kept apart:
 * lwIP's chain lengths are 16-bit, so they cannot be concatenated. */
struct chunk {
	struct pbuf *chain;
	struct chunk *next;
};

struct conn {
	struct tcp_pcb *pcb;
	struct chunk *head, *tail; /* received, not yet written back */
	struct pbuf *seg;          /* the pbuf of head->chain being written */
	uint16_t seg_off;          /* bytes of seg already written */
	bool peer_closed;
};

static void conn_free(struct conn *c)
{
	while (c->head) {
		struct chunk *k = c->head;
		c->head = k->next;
		pbuf_free(k->chain);
		free(k);
	}
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

/* Moves to the next pbuf to write, freeing a chain once all of it went. */
static void advance_segment(struct conn *c)
{
	c->seg_off = 0;
	c->seg = c->seg->next;
	if (c->seg != NULL)
		return;
	struct chunk *k = c->head;
	c->head = k->next;
	if (c->head == NULL)
		c->tail = NULL;
	pbuf_free(k->chain);
	free(k);
	c->seg = c->head ? c->head->chain : NULL;
}

/* Writes back as much pending data as the send buffer takes; opens the
 * receive window by exactly what was written. */
static void write_back(struct conn *c)
{
	bool wrote = false;
	while (c->seg != NULL) {
		uint16_t left = (uint16_t)(c->seg->len - c->seg_off);
		uint16_t room = (uint16_t)LWIP_MIN(tcp_sndbuf(c->pcb), 0xffff);
		uint16_t n = LWIP_MIN(left, room);
		if (n == 0 && left != 0)
			break;
		if (n > 0 &&
		    tcp_write(c->pcb, (char *)c->seg->payload + c->seg_off, n,
		              TCP_WRITE_FLAG_COPY) != ERR_OK)
			break; /* out of segments: the sent callback retries */
		if (n > 0) {
			tcp_recved(c->pcb, n);
			wrote = true;
		}
		c->seg_off = (uint16_t)(c->seg_off + n);
		if (c->seg_off == c->seg->len)
			advance_segment(c);
	}
	if (wrote)
		tcp_output(c->pcb);
}

static void maybe_finish(struct conn *c)
{
	if (c->peer_closed && c->head == NULL)
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
	struct chunk *k = malloc(sizeof(*k));
	if (k == NULL)
		return ERR_MEM; /* lwIP keeps the data and offers it again */
	k->chain = p;
	k->next = NULL;
	if (c->tail)
		c->tail->next = k;
	else
		c->head = k;
	c->tail = k;
	if (c->seg == NULL)
		c->seg = p;
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
		nc_log(NC_LOG_ERROR, "echo: cannot listen on port %u", port);
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
