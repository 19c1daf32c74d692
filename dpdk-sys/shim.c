#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_net.h>
#include <rte_tcp.h>
#include <rte_udp.h>
#include <rte_vhost.h>
#include "shim.h"

int shim_rte_errno(void) { return rte_errno; }
unsigned shim_rte_lcore_id(void) { return rte_lcore_id(); }
uint64_t shim_rss_ip_l4(void) { return RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP | RTE_ETH_RSS_TCP; }

/* Virtio ring ids of a vhost-user queue pair (the guest's RX ring is the host's TX). */
#define VHOST_HOST_TX_RING(q) ((uint16_t)((q) * 2))
#define VHOST_HOST_RX_RING(q) ((uint16_t)((q) * 2 + 1))

/* Completes the L4 checksum of a packet the guest left partial (VIRTIO_NET_HDR_F_NEEDS_CSUM:
 * librte_vhost marks it RTE_MBUF_F_RX_L4_CKSUM_NONE, the pseudo-header sum already in the
 * checksum field), as the net_vhost PMD does when the guest negotiated VIRTIO_NET_F_CSUM and
 * the port did not ask for RX checksum offload (drivers/net/vhost vhost_dev_rx_sw_csum). */
static void vhost_rx_sw_csum(struct rte_mbuf *m)
{
	struct rte_net_hdr_lens lens;
	uint32_t ptype = rte_net_get_ptype(m, &lens, RTE_PTYPE_ALL_MASK);
	uint32_t hdr_len = lens.l2_len + lens.l3_len;
	uint32_t off;
	uint16_t csum = 0;

	switch (ptype & RTE_PTYPE_L4_MASK) {
	case RTE_PTYPE_L4_TCP:
		off = hdr_len + offsetof(struct rte_tcp_hdr, cksum);
		break;
	case RTE_PTYPE_L4_UDP:
		off = hdr_len + offsetof(struct rte_udp_hdr, dgram_cksum);
		break;
	default:
		return;
	}
	if (rte_raw_cksum_mbuf(m, hdr_len, rte_pktmbuf_pkt_len(m) - hdr_len, &csum) < 0)
		return;
	csum = ~csum;
	if ((ptype & RTE_PTYPE_L4_MASK) == RTE_PTYPE_L4_UDP && csum == 0)
		csum = 0xffff;
	if (rte_pktmbuf_data_len(m) >= off + 2)
		*rte_pktmbuf_mtod_offset(m, uint16_t *, off) = csum;
	m->ol_flags &= ~RTE_MBUF_F_RX_L4_CKSUM_MASK;
	m->ol_flags |= RTE_MBUF_F_RX_L4_CKSUM_GOOD;
}

uint16_t shim_vhost_rx_burst(uint16_t port, uint16_t queue, int vid, int sw_csum, struct rte_mempool *pool,
			     struct rte_mbuf **pkts, uint16_t n)
{
	/* Capture callbacks (dpdk-dumpcap) hang on the ethdev queue: the PMD path runs them. */
	if (vid < 0 || unlikely(__atomic_load_n(&rte_eth_fp_ops[port].rxq.clbk[queue], __ATOMIC_RELAXED) != NULL))
		return rte_eth_rx_burst(port, queue, pkts, n);
	uint16_t got = rte_vhost_dequeue_burst(vid, VHOST_HOST_RX_RING(queue), pool, pkts, n);
	if (sw_csum) {
		for (uint16_t i = 0; i < got; i++) {
			struct rte_mbuf *m = pkts[i];
			if ((m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK) == RTE_MBUF_F_RX_L4_CKSUM_NONE)
				vhost_rx_sw_csum(m);
		}
	}
	return got;
}

uint16_t shim_vhost_tx_burst(uint16_t port, uint16_t queue, int vid, struct rte_mbuf **pkts, uint16_t n)
{
	if (vid < 0 || unlikely(__atomic_load_n(&rte_eth_fp_ops[port].txq.clbk[queue], __ATOMIC_RELAXED) != NULL))
		return rte_eth_tx_burst(port, queue, pkts, n);
	uint16_t sent = rte_vhost_enqueue_burst(vid, VHOST_HOST_TX_RING(queue), pkts, n);
	/* The enqueue copied them into the guest's buffers. */
	if (sent > 0)
		rte_pktmbuf_free_bulk(pkts, sent);
	return sent;
}
