#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_ethdev.h>
#include "shim.h"

int shim_rte_errno(void) { return rte_errno; }
unsigned shim_rte_lcore_id(void) { return rte_lcore_id(); }
uint64_t shim_rss_ip_l4(void) { return RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP | RTE_ETH_RSS_TCP; }
