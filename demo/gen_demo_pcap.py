#!/usr/bin/env python3
"""Write the demo traffic: demo/vm1.pcap, demo/vm2.pcap and demo/fabric.pcap.

Standard library only and deterministic (fixed timestamps, no randomness), so the committed
pcaps are byte-identical to what this script writes. Every frame has valid IPv4 header, UDP,
TCP and ICMPv6 checksums and is padded to the 60-byte Ethernet minimum (64 with FCS) like a
real capture.

The addresses match demo/demo.toml:

  vm1 (vif0/1)  02:00:00:00:01:03  192.168.1.3  fd00:1::3
  vm2 (vif0/2)  02:00:00:00:01:04  192.168.1.4  fd00:1::4
  vRouter       00:00:5e:00:01:00 (router_mac, the VMs' gateway MAC)
  fabric vif0/0 02:00:00:00:00:01, router_ip 10.10.0.1
  remote vRouter 02:00:00:00:00:02, 10.10.0.2 (hosts 192.168.2.0/24)

Usage: python3 demo/gen_demo_pcap.py [--out-dir DIR]   (default: the directory of this script)
"""

import argparse
import ipaddress
import os
import struct

ROUTER_MAC = "00:00:5e:00:01:00"
BROADCAST = "ff:ff:ff:ff:ff:ff"
VM1_MAC, VM1_IP, VM1_IP6 = "02:00:00:00:01:03", "192.168.1.3", "fd00:1::3"
VM2_MAC, VM2_IP, VM2_IP6 = "02:00:00:00:01:04", "192.168.1.4", "fd00:1::4"
GATEWAY_IP = "192.168.1.1"
REMOTE_VM_IP = "192.168.2.10"
UNROUTED_IP = "192.168.9.9"
FABRIC_MAC, ROUTER_IP = "02:00:00:00:00:01", "10.10.0.1"
REMOTE_MAC, REMOTE_IP = "02:00:00:00:00:02", "10.10.0.2"
MPLSOUDP_PORT = 6635

ETH_IPV4, ETH_ARP, ETH_IPV6 = 0x0800, 0x0806, 0x86DD
PROTO_TCP, PROTO_UDP, PROTO_ICMPV6 = 6, 17, 58

# pcap: microsecond timestamps, Ethernet link type.
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
BASE_TIME_S = 1_700_000_000


def mac(s):
    return bytes(int(x, 16) for x in s.split(":"))


def ip4(s):
    return bytes(int(x) for x in s.split("."))


def ip6(s):
    return ipaddress.IPv6Address(s).packed


def csum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def eth(dst, src, ethertype, payload):
    frame = mac(dst) + mac(src) + struct.pack("!H", ethertype) + payload
    return frame + b"\0" * max(0, 60 - len(frame))


class Ipv4:
    """IPv4 header builder with a per-source deterministic IP ID."""

    ids = {}

    @classmethod
    def packet(cls, src, dst, proto, l4, ttl=64, df=True):
        ident = cls.ids.get(src, 0x1000)
        cls.ids[src] = ident + 1
        hdr = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), ident, 0x4000 if df else 0,
            ttl, proto, 0, ip4(src), ip4(dst))
        hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
        return hdr + l4


def pseudo4(src, dst, proto, length):
    return ip4(src) + ip4(dst) + struct.pack("!BBH", 0, proto, length)


def pseudo6(src, dst, proto, length):
    return ip6(src) + ip6(dst) + struct.pack("!I3xB", length, proto)


def udp(pseudo, sport, dport, payload):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    c = csum(pseudo(PROTO_UDP, len(seg)) + seg) or 0xFFFF
    return seg[:6] + struct.pack("!H", c) + seg[8:]


def tcp(pseudo, sport, dport, seq, ack, flags, payload=b""):
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 64240, 0, 0) + payload
    c = csum(pseudo(PROTO_TCP, len(seg)) + seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def udp4(src, dst, sport, dport, payload):
    return Ipv4.packet(src, dst, PROTO_UDP,
                       udp(lambda p, n: pseudo4(src, dst, p, n), sport, dport, payload))


def tcp4(src, dst, sport, dport, seq, ack, flags, payload=b""):
    return Ipv4.packet(src, dst, PROTO_TCP,
                       tcp(lambda p, n: pseudo4(src, dst, p, n), sport, dport, seq, ack, flags, payload))


def ipv6(src, dst, nxt, payload, hlim=64):
    return struct.pack("!IHBB", 6 << 28, len(payload), nxt, hlim) + ip6(src) + ip6(dst) + payload


def udp6(src, dst, sport, dport, payload):
    return ipv6(src, dst, PROTO_UDP,
                udp(lambda p, n: pseudo6(src, dst, p, n), sport, dport, payload))


def neighbor_solicitation(src_mac, src, target):
    """ICMPv6 NS for `target`, sent to its solicited-node multicast group."""
    t = ip6(target)
    group = "ff02::1:ff%02x:%02x%02x" % (t[13], t[14], t[15])
    body = struct.pack("!BBHI", 135, 0, 0, 0) + t + struct.pack("!BB", 1, 1) + mac(src_mac)
    c = csum(pseudo6(src, group, PROTO_ICMPV6, len(body)) + body)
    body = body[:2] + struct.pack("!H", c) + body[4:]
    dst_mac = "33:33:ff:%02x:%02x:%02x" % (t[13], t[14], t[15])
    return eth(dst_mac, src_mac, ETH_IPV6, ipv6(src, group, PROTO_ICMPV6, body, hlim=255))


def arp_request(src_mac, src_ip, target_ip):
    body = struct.pack("!HHBBH6s4s6s4s", 1, ETH_IPV4, 6, 4, 1,
                       mac(src_mac), ip4(src_ip), b"\0" * 6, ip4(target_ip))
    return eth(BROADCAST, src_mac, ETH_ARP, body)


def mplsoudp(label, inner_ip, sport):
    """Fabric frame from the remote vRouter: Eth / IPv4 / UDP 6635 / MPLS(label, S=1) / inner IP."""
    mpls = struct.pack("!I", (label << 12) | (1 << 8) | 64)
    outer = udp4(REMOTE_IP, ROUTER_IP, sport, MPLSOUDP_PORT, mpls + inner_ip)
    return eth(FABRIC_MAC, REMOTE_MAC, ETH_IPV4, outer)


def payload(tag, n=18):
    return (tag.encode() * n)[:n]


def vm1_frames():
    f = []
    # Address resolution: the gateway, then vm2 (answered by the vRouter's proxy ARP).
    f.append(arp_request(VM1_MAC, VM1_IP, GATEWAY_IP))
    f.append(arp_request(VM1_MAC, VM1_IP, VM2_IP))
    f.append(neighbor_solicitation(VM1_MAC, VM1_IP6, VM2_IP6))
    # Local east-west: 3 UDP flows to vm2, 3 packets each.
    for rnd in range(3):
        for flow in range(3):
            ip = udp4(VM1_IP, VM2_IP, 10000 + flow, 5001, payload(f"vm1-vm2 udp {flow}.{rnd} "))
            f.append(eth(ROUTER_MAC, VM1_MAC, ETH_IPV4, ip))
    # One TCP connection to vm2:80 (vm1's half: SYN, ACK, request).
    isn = 0x01020304
    f.append(eth(ROUTER_MAC, VM1_MAC, ETH_IPV4, tcp4(VM1_IP, VM2_IP, 40000, 80, isn, 0, 0x02)))
    f.append(eth(ROUTER_MAC, VM1_MAC, ETH_IPV4, tcp4(VM1_IP, VM2_IP, 40000, 80, isn + 1, 0x0A0B0C0E, 0x10)))
    req = b"GET / HTTP/1.0\r\n\r\n"
    f.append(eth(ROUTER_MAC, VM1_MAC, ETH_IPV4,
                 tcp4(VM1_IP, VM2_IP, 40000, 80, isn + 1, 0x0A0B0C0E, 0x18, req)))
    # Overlay: 2 UDP flows to a VM behind the remote vRouter (MPLSoUDP label 40 on the fabric).
    for rnd in range(2):
        for flow in range(2):
            ip = udp4(VM1_IP, REMOTE_VM_IP, 20000 + flow, 9000, payload(f"vm1-remote {flow}.{rnd} "))
            f.append(eth(ROUTER_MAC, VM1_MAC, ETH_IPV4, ip))
    # IPv6 east-west: one UDP flow, 3 packets.
    for rnd in range(3):
        ip = udp6(VM1_IP6, VM2_IP6, 30000, 5001, payload(f"vm1-vm2 v6 {rnd} "))
        f.append(eth(ROUTER_MAC, VM1_MAC, ETH_IPV6, ip))
    return f


def vm2_frames():
    f = []
    # Replies to vm1's UDP flows and TCP SYN.
    for flow in range(3):
        ip = udp4(VM2_IP, VM1_IP, 5001, 10000 + flow, payload(f"vm2-vm1 udp {flow} "))
        f.append(eth(ROUTER_MAC, VM2_MAC, ETH_IPV4, ip))
    f.append(eth(ROUTER_MAC, VM2_MAC, ETH_IPV4,
                 tcp4(VM2_IP, VM1_IP, 80, 40000, 0x0A0B0C0D, 0x01020305, 0x12)))
    ip = udp6(VM2_IP6, VM1_IP6, 5001, 30000, payload("vm2-vm1 v6 "))
    f.append(eth(ROUTER_MAC, VM2_MAC, ETH_IPV6, ip))
    # No route in the VRF for this destination: dropped, shows up in dropstats.
    ip = udp4(VM2_IP, UNROUTED_IP, 5002, 5002, payload("no route "))
    f.append(eth(ROUTER_MAC, VM2_MAC, ETH_IPV4, ip))
    return f


def fabric_frames():
    f = []
    # Remote VM 192.168.2.10 answering vm1's flows: label 17 -> vm1 (nexthop 1).
    for rnd in range(2):
        for flow in range(2):
            inner = udp4(REMOTE_VM_IP, VM1_IP, 9000, 20000 + flow, payload(f"remote-vm1 {flow}.{rnd} "))
            f.append(mplsoudp(17, inner, 49152 + flow))
    # Label 18 -> vm2 (nexthop 2).
    inner = udp4(REMOTE_VM_IP, VM2_IP, 9000, 20100, payload("remote-vm2 "))
    f.append(mplsoudp(18, inner, 49160))
    # Unknown label: dropped as "Invalid Label".
    inner = udp4(REMOTE_VM_IP, VM1_IP, 9000, 20200, payload("bad label "))
    f.append(mplsoudp(99, inner, 49161))
    return f


def write_pcap(path, frames):
    out = bytearray(PCAP_HEADER)
    for i, frame in enumerate(frames):
        usec = i * 1000
        out += struct.pack("<IIII", BASE_TIME_S + usec // 1_000_000, usec % 1_000_000,
                           len(frame), len(frame))
        out += frame
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(out)
    os.replace(tmp, path)
    print(f"wrote {path}: {len(frames)} packets, {len(out)} bytes")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default=os.path.dirname(os.path.abspath(__file__)))
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    # Each file gets its own IP ID sequence, so regenerating one file never changes another.
    for name, gen in (("vm1.pcap", vm1_frames), ("vm2.pcap", vm2_frames), ("fabric.pcap", fabric_frames)):
        Ipv4.ids = {}
        write_pcap(os.path.join(args.out_dir, name), gen())


if __name__ == "__main__":
    main()
