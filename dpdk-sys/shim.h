/* The few DPDK things bindgen cannot wrap: thread-local variables and macros. */
#ifndef VROUTER_DPDK_SHIM_H
#define VROUTER_DPDK_SHIM_H
#include <stdint.h>
/* rte_errno is a per-lcore (thread-local) variable behind a macro. */
int shim_rte_errno(void);
/* rte_lcore_id() reads the per-lcore variable _lcore_id. */
unsigned shim_rte_lcore_id(void);
/* RTE_ETH_RSS_* are 64-bit macros built from shifts; expose the IP/UDP/TCP set. */
uint64_t shim_rss_ip_l4(void);
#endif
