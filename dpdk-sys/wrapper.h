/* Headers the vRouter binds. Keep this list short: every header adds
 * static-inline functions that wrap_static_fns turns into C wrappers. */
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_cycles.h>
#include <rte_prefetch.h>
#include <rte_version.h>
#include <rte_dev.h>
#include <rte_eth_vhost.h>
#include <rte_pdump.h>
#include "shim.h"
