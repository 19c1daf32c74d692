/* The few DPDK things bindgen cannot wrap: thread-local variables and macros, plus the
 * vhost-user data path (one call per burst). */
#ifndef VROUTER_DPDK_SHIM_H
#define VROUTER_DPDK_SHIM_H
#include <stdint.h>
struct rte_mbuf;
struct rte_mempool;
/* rte_errno is a per-lcore (thread-local) variable behind a macro. */
int shim_rte_errno(void);
/* rte_lcore_id() reads the per-lcore variable _lcore_id. */
unsigned shim_rte_lcore_id(void);
/* RTE_ETH_RSS_* are 64-bit macros built from shifts; expose the IP/UDP/TCP set. */
uint64_t shim_rss_ip_l4(void);
/* RX burst of a vhost-user port's queue `queue` straight from librte_vhost
 * (rte_vhost_dequeue_burst of the guest's TX ring of device `vid`, mbufs from `pool`),
 * without the net_vhost PMD's per-packet statistics. With `sw_csum` (the guest negotiated
 * VIRTIO_NET_F_CSUM), the L4 checksums the guest left partial are completed, as the PMD
 * does. mbuf->port is left as allocated (RTE_MBUF_PORT_INVALID; the PMD sets it, nothing
 * in the vRouter reads it). The PMD path (rte_eth_rx_burst) when vid < 0 or a capture
 * callback is registered on the queue. The caller guarantees that device `vid` is not
 * destroyed during the call. */
uint16_t shim_vhost_rx_burst(uint16_t port, uint16_t queue, int vid, int sw_csum, struct rte_mempool *pool,
			     struct rte_mbuf **pkts, uint16_t n);
/* TX burst on queue `queue` of a vhost-user port straight to librte_vhost
 * (rte_vhost_enqueue_burst on the guest's RX ring of device `vid`); the enqueued mbufs
 * (the first returned count) are freed, the rest stay the caller's. The PMD path
 * (rte_eth_tx_burst) when vid < 0 or a capture callback is registered on the queue. Same
 * contract on `vid` as shim_vhost_rx_burst. */
uint16_t shim_vhost_tx_burst(uint16_t port, uint16_t queue, int vid, struct rte_mbuf **pkts, uint16_t n);
#endif
