//! Ethernet ports: lookup by device name, configuration (queues, RSS), start/stop/close, stats.

use super::{DpdkError, Mempool, Result};
use std::ffi::{CStr, CString};

/// A DPDK ethdev port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port {
    /// The ethdev port id (`rte_eth_dev_*` calls take it).
    pub id: u16,
}

/// What the driver reports about a port.
#[derive(Debug, Clone)]
pub struct PortInfo {
    /// PMD driver name, e.g. `net_pcap` or `net_ice`.
    pub driver: String,
    /// Most RX queues the device supports.
    pub max_rx_queues: u16,
    /// Most TX queues the device supports.
    pub max_tx_queues: u16,
    /// RSS hash types the device supports (`flow_type_rss_offloads`); RSS asks for IP/UDP/TCP
    /// within them.
    pub rss_offloads: u64,
    /// NUMA socket of the device (0 when unknown); its queues are set up there.
    pub socket: i32,
}

/// How to set a port up.
#[derive(Debug, Clone)]
pub struct PortConfig {
    /// RX queues to set up (more than one turns RSS on where the device has it).
    pub rx_queues: u16,
    /// TX queues to set up (one per forwarding lcore, at most the device's maximum).
    pub tx_queues: u16,
    /// RX descriptors per queue (`eal.rx_desc`).
    pub rx_desc: u16,
    /// TX descriptors per queue (`eal.tx_desc`).
    pub tx_desc: u16,
    /// MTU to set; a device that cannot change it keeps its own.
    pub mtu: Option<u16>,
}

/// Basic port counters (`rte_eth_stats_get`).
#[derive(Debug, Clone, Copy, Default)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Packets the device dropped because no RX descriptor was free (the lcore polled too slowly).
    pub imissed: u64,
    /// Erroneous packets received.
    pub ierrors: u64,
    /// Packets that failed to be sent.
    pub oerrors: u64,
    /// RX mbuf allocation failures.
    pub rx_nombuf: u64,
}

impl Port {
    /// Hot-plugs a device (`rte_dev_probe`), e.g. `net_pcap5,rx_pcap=in.pcap,tx_pcap=out.pcap`
    /// for a virtual device; its port then exists ([`Port::by_name`]).
    pub fn probe(devargs: &str) -> Result<()> {
        let c = CString::new(devargs).map_err(|_| DpdkError::Other("device arguments have NUL".into()))?;
        // SAFETY: c is a valid C string for the call.
        let ret = unsafe { dpdk_sys::rte_dev_probe(c.as_ptr()) };
        if ret < 0 {
            return Err(DpdkError::from_ret("rte_dev_probe", ret));
        }
        Ok(())
    }

    /// Removes a hot-plugged virtual device (`rte_eal_hotplug_remove` on the vdev bus); its
    /// port must be closed.
    pub fn remove_vdev(name: &str) -> Result<()> {
        let c = CString::new(name).map_err(|_| DpdkError::Other("device name has NUL".into()))?;
        // SAFETY: both are valid C strings for the call.
        let ret = unsafe { dpdk_sys::rte_eal_hotplug_remove(c"vdev".as_ptr(), c.as_ptr()) };
        if ret < 0 {
            return Err(DpdkError::from_ret("rte_eal_hotplug_remove", ret));
        }
        Ok(())
    }

    /// The port of a device (`net_pcap0`, a PCI address, ...).
    pub fn by_name(name: &str) -> Result<Port> {
        let c = CString::new(name).map_err(|_| DpdkError::Other("device name has NUL".into()))?;
        let mut id = 0u16;
        // SAFETY: c is a valid C string and `id` a valid out-pointer for the call.
        let ret = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
        if ret < 0 {
            return Err(DpdkError::Other(format!("no DPDK port for device {name:?} (is it in eal.vdevs or eal.pci?)")));
        }
        Ok(Port { id })
    }

    /// What the driver reports about the port (`rte_eth_dev_info_get`) and its NUMA socket.
    pub fn info(&self) -> Result<PortInfo> {
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: info is a valid, writable rte_eth_dev_info.
        let ret = unsafe { dpdk_sys::rte_eth_dev_info_get(self.id, &mut info) };
        if ret < 0 {
            return Err(DpdkError::from_ret("rte_eth_dev_info_get", ret));
        }
        let driver = if info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: driver_name points at the driver's static NUL-terminated name.
            unsafe { CStr::from_ptr(info.driver_name) }.to_string_lossy().into_owned()
        };
        // SAFETY: plain getter.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(self.id) }.max(0);
        Ok(PortInfo {
            driver,
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            rss_offloads: info.flow_type_rss_offloads,
            socket,
        })
    }

    /// Configures queues (RSS over IP/UDP/TCP when more than one RX queue) and sets them up
    /// with mbufs from `pool`. The port must be stopped.
    pub fn configure(&self, cfg: &PortConfig, info: &PortInfo, pool: &Mempool) -> Result<()> {
        let mut conf = dpdk_sys::rte_eth_conf::default();
        // SAFETY: shim returns a constant.
        let rss_hf = unsafe { dpdk_sys::shim_rss_ip_l4() } & info.rss_offloads;
        // A device without RSS (vhost-user, virtio_user, pcap, ring) spreads over its queues
        // by itself (the guest picks the queue) or not at all; asking it for RSS is an error.
        if cfg.rx_queues > 1 && rss_hf != 0 {
            conf.rxmode.mq_mode = dpdk_sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
        }
        // SAFETY: conf is a valid configuration for the duration of the call.
        let ret = unsafe { dpdk_sys::rte_eth_dev_configure(self.id, cfg.rx_queues, cfg.tx_queues, &conf) };
        if ret < 0 {
            return Err(DpdkError::from_ret("rte_eth_dev_configure", ret));
        }
        if let Some(mtu) = cfg.mtu {
            // SAFETY: plain call on a configured port.
            let ret = unsafe { dpdk_sys::rte_eth_dev_set_mtu(self.id, mtu) };
            // Virtual devices may not support MTU changes; that is not fatal.
            if ret < 0 && ret != -libc::ENOTSUP {
                return Err(DpdkError::from_ret("rte_eth_dev_set_mtu", ret));
            }
        }
        let socket = info.socket as u32;
        for q in 0..cfg.rx_queues {
            // SAFETY: NULL rx_conf selects the driver default; pool is a live mempool.
            let ret = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(self.id, q, cfg.rx_desc, socket, std::ptr::null(), pool.as_ptr())
            };
            if ret < 0 {
                return Err(DpdkError::from_ret("rte_eth_rx_queue_setup", ret));
            }
        }
        for q in 0..cfg.tx_queues {
            // SAFETY: NULL tx_conf selects the driver default.
            let ret = unsafe { dpdk_sys::rte_eth_tx_queue_setup(self.id, q, cfg.tx_desc, socket, std::ptr::null()) };
            if ret < 0 {
                return Err(DpdkError::from_ret("rte_eth_tx_queue_setup", ret));
            }
        }
        Ok(())
    }

    /// Starts the port, then enables promiscuous mode where the device allows it.
    pub fn start(&self) -> Result<()> {
        // SAFETY: plain call on a configured port.
        let ret = unsafe { dpdk_sys::rte_eth_dev_start(self.id) };
        if ret < 0 {
            return Err(DpdkError::from_ret("rte_eth_dev_start", ret));
        }
        // Best effort: virtual devices may refuse promiscuous mode.
        // SAFETY: plain call.
        unsafe { dpdk_sys::rte_eth_promiscuous_enable(self.id) };
        Ok(())
    }

    /// Stops the port; no lcore may be polling it any more.
    pub fn stop(&self) -> Result<()> {
        // SAFETY: plain call; no lcore may be polling the port any more (caller contract).
        let ret = unsafe { dpdk_sys::rte_eth_dev_stop(self.id) };
        if ret < 0 {
            return Err(DpdkError::from_ret("rte_eth_dev_stop", ret));
        }
        Ok(())
    }

    /// Closes the port (the pcap PMD flushes and closes its capture files here).
    pub fn close(&self) -> Result<()> {
        // SAFETY: plain call on a stopped port.
        let ret = unsafe { dpdk_sys::rte_eth_dev_close(self.id) };
        if ret < 0 {
            return Err(DpdkError::from_ret("rte_eth_dev_close", ret));
        }
        Ok(())
    }

    /// The port's basic counters (`rte_eth_stats_get`).
    pub fn stats(&self) -> Result<PortStats> {
        let mut s = dpdk_sys::rte_eth_stats::default();
        // SAFETY: s is a valid out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_stats_get(self.id, &mut s) };
        if ret < 0 {
            return Err(DpdkError::from_ret("rte_eth_stats_get", ret));
        }
        Ok(PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }
}
