/*
 * tcp_guard: drops TCP segments that lwIP 2.1.3 cannot survive.
 *
 * When a segment starts before rcv_nxt, tcp_receive() trims the part the
 * stack already has, assuming the overlap fits 16 bits. Its test for
 * "does this segment reach rcv_nxt" is a range [seqno + 1, seqno + len - 1]
 * that is empty for a segment of sequence length 1 (one byte, or a bare
 * SYN or FIN); the unsigned comparison then wraps and lets any such segment
 * through, and one that starts 64 KiB or more behind rcv_nxt reaches
 * LWIP_ASSERT("insane offset!"), which aborts the core. Any peer can send
 * one. Such a segment is an ancient duplicate or an attack, and lwIP would
 * ignore it even if the test were right, so it is dropped here.
 *
 * Found by //services/netcore/fuzz:packet_fuzz.
 */
#include "lwip/priv/tcp_priv.h"
#include "lwip/tcp.h"

int nc_lwip_tcp_inpacket(struct tcp_pcb *pcb, struct tcp_hdr *hdr,
                         struct pbuf *p)
{
	/* Listening and unsynchronised pcbs have no rcv_nxt to trim to (and
	 * a listening pcb is a smaller struct: read nothing else of it). */
	if (pcb->state == LISTEN || pcb->state == CLOSED ||
	    pcb->state == SYN_SENT)
		return ERR_OK;
	u8_t flags = TCPH_FLAGS(hdr);
	u32_t len = p->tot_len + ((flags & (TCP_FIN | TCP_SYN)) ? 1u : 0u);
	/* tcp_input has already turned the header to host order. */
	u32_t behind = pcb->rcv_nxt - hdr->seqno;
	if (len <= 1 && behind >= 0xffffu && behind <= 0x80000000u)
		return ERR_VAL;
	return ERR_OK;
}
