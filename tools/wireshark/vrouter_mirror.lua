-- Wireshark dissector for the vRouter's mirror copies with the Juniper header.
--
-- What an analyzer receives from the vRouter (juniper_header = true, the default):
--
--   Ethernet | IPv4 (vRouter -> analyzer) | UDP (-> analyzer port, 8099 by default) |
--   metadata TLVs | the mirrored Ethernet frame (no FCS)
--
-- The metadata is a list of TLVs, type (1 byte), length (1 byte), value, ended by END:
--
--   type  name           value
--   1     CAPTURE_HOST   4 bytes: IPv4 address of the vRouter that made the copy
--   2     FLAGS          4 bytes, big-endian: flow action bitmap, 0x40000000 = ingress
--   3     SOURCE_VN      source virtual-network name (no terminator)
--   4     DEST_VN        destination virtual-network name (no terminator)
--   255   END            length 0
--
-- at most 255 bytes in all, END included. Flow (policy) mirroring sends CAPTURE_HOST, FLAGS,
-- SOURCE_VN, DEST_VN, END; interface mirroring SOURCE_VN, END for a frame the vif received
-- and DEST_VN, END for a frame it transmitted; END alone when nothing is known. The format
-- is vrouter-abi/src/mirror/metadata.rs; copies without the Juniper header are plain VXLAN,
-- which Wireshark decodes itself.
--
-- The metadata fields are under "vrouter_mirror." (display filters and tshark -e):
--   vrouter_mirror.capture_host, .flags, .flags.ingress, .source_vn, .dest_vn,
--   .kind ("flow", "interface-rx", "interface-tx" or "unknown", from the TLVs present),
--   .metadata_length, .tlv.type, .tlv.length, .tlv.value (a TLV of an unknown type)
-- and the mirrored frame follows as Ethernet (eth.*, ip.*, ...; with the outer headers, an
-- ip.src of a copy lists the outer then the inner address).
--
-- Use:
--   tshark -X lua_script:tools/wireshark/vrouter_mirror.lua -r analyzer.pcap -V
--   wireshark -X lua_script:tools/wireshark/vrouter_mirror.lua analyzer.pcap
--   or copy the file to ~/.local/lib/wireshark/plugins/ (loaded at every start).
-- Analyzers on other UDP ports: the "vrouter_mirror.udp_ports" preference
--   (-o vrouter_mirror.udp_ports:8099,9099) or Decode As (-d udp.port==9099,vrouter_mirror).

local proto = Proto("vrouter_mirror", "vRouter mirror copy (Juniper header)")

local TLV_CAPTURE_HOST = 1
local TLV_FLAGS = 2
local TLV_SOURCE_VN = 3
local TLV_DEST_VN = 4
local TLV_END = 255
local MAX_METADATA = 255
local FLAG_INGRESS = 0x40000000

local tlv_names = {
    [TLV_CAPTURE_HOST] = "CAPTURE_HOST",
    [TLV_FLAGS] = "FLAGS",
    [TLV_SOURCE_VN] = "SOURCE_VN",
    [TLV_DEST_VN] = "DEST_VN",
    [TLV_END] = "END",
}

local f = {
    metadata_length = ProtoField.uint16("vrouter_mirror.metadata_length", "Metadata length", base.DEC),
    kind = ProtoField.string("vrouter_mirror.kind", "Mirror kind"),
    tlv = ProtoField.none("vrouter_mirror.tlv", "TLV"),
    tlv_type = ProtoField.uint8("vrouter_mirror.tlv.type", "Type", base.DEC, tlv_names),
    tlv_length = ProtoField.uint8("vrouter_mirror.tlv.length", "Length", base.DEC),
    tlv_value = ProtoField.bytes("vrouter_mirror.tlv.value", "Value"),
    capture_host = ProtoField.ipv4("vrouter_mirror.capture_host", "Capture host"),
    flags = ProtoField.uint32("vrouter_mirror.flags", "Flags", base.HEX),
    flags_ingress = ProtoField.bool("vrouter_mirror.flags.ingress", "Ingress", 32, nil, FLAG_INGRESS),
    source_vn = ProtoField.string("vrouter_mirror.source_vn", "Source VN"),
    dest_vn = ProtoField.string("vrouter_mirror.dest_vn", "Destination VN"),
}
proto.fields = {
    f.metadata_length, f.kind, f.tlv, f.tlv_type, f.tlv_length, f.tlv_value, f.capture_host,
    f.flags, f.flags_ingress, f.source_vn, f.dest_vn,
}

local ef_malformed = ProtoExpert.new("vrouter_mirror.malformed", "Malformed mirror metadata",
    expert.group.MALFORMED, expert.severity.ERROR)
local ef_unknown = ProtoExpert.new("vrouter_mirror.unknown_tlv", "Unknown metadata TLV type",
    expert.group.UNDECODED, expert.severity.WARN)
proto.experts = { ef_malformed, ef_unknown }

-- Fixed value lengths; the VN names are 1..253 bytes.
local fixed_length = { [TLV_CAPTURE_HOST] = 4, [TLV_FLAGS] = 4, [TLV_END] = 0 }

local DEFAULT_PORTS = "8099"
proto.prefs.udp_ports = Pref.range("UDP ports", DEFAULT_PORTS,
    "UDP ports the analyzers receive mirror copies with the Juniper header on", 65535)

local eth = Dissector.get("eth_withoutfcs")

function proto.dissector(tvb, pinfo, tree)
    local len = tvb:len()
    if len < 2 then
        return 0
    end
    pinfo.cols.protocol:set("vRouter mirror")
    local root = tree:add(proto, tvb())
    -- Marks the copy malformed (nothing after the metadata is decoded).
    local function malformed(item, msg)
        item:add_proto_expert_info(ef_malformed, msg)
        pinfo.cols.info:set("Malformed mirror metadata: " .. msg)
        return len
    end
    local off = 0
    local seen = {}
    local ended = false
    local texts = {}
    while off < len do
        if off + 2 > len then
            return malformed(root, "TLV header truncated at byte " .. off)
        end
        local t = tvb(off, 1):uint()
        local l = tvb(off + 1, 1):uint()
        if off + 2 + l > len or off + 2 + l > MAX_METADATA then
            return malformed(root, string.format("TLV type %d at byte %d: length %d runs past the %s", t, off, l,
                off + 2 + l > len and "packet" or "255-byte metadata limit"))
        end
        local name = tlv_names[t] or ("type " .. t)
        local item = root:add(f.tlv, tvb(off, 2 + l))
        item:set_text(name)
        item:add(f.tlv_type, tvb(off, 1))
        item:add(f.tlv_length, tvb(off + 1, 1))
        local value = tvb(off + 2, l)
        if fixed_length[t] ~= nil and fixed_length[t] ~= l then
            return malformed(item, string.format("%s at byte %d has length %d, expected %d", name, off, l,
                fixed_length[t]))
        elseif t == TLV_CAPTURE_HOST then
            item:add(f.capture_host, value)
            item:set_text("Capture host: " .. tostring(value:ipv4()))
            table.insert(texts, "host " .. tostring(value:ipv4()))
        elseif t == TLV_FLAGS then
            local v = item:add(f.flags, value)
            v:add(f.flags_ingress, value)
            item:set_text(string.format("Flags: 0x%08x%s", value:uint(),
                bit32.band(value:uint(), FLAG_INGRESS) ~= 0 and " (ingress)" or ""))
            if bit32.band(value:uint(), FLAG_INGRESS) ~= 0 then
                table.insert(texts, "ingress")
            end
        elseif t == TLV_SOURCE_VN or t == TLV_DEST_VN then
            local field = t == TLV_SOURCE_VN and f.source_vn or f.dest_vn
            if l == 0 then
                return malformed(item, name .. " at byte " .. off .. " is empty")
            else
                item:add(field, value)
                local vn = value:string()
                item:set_text((t == TLV_SOURCE_VN and "Source VN: " or "Destination VN: ") .. vn)
                table.insert(texts, (t == TLV_SOURCE_VN and "from " or "to ") .. vn)
            end
        elseif t == TLV_END then
            item:set_text("End of metadata")
        else
            if l > 0 then
                item:add(f.tlv_value, value)
            end
            item:add_proto_expert_info(ef_unknown, "Unknown TLV type " .. t)
        end
        seen[t] = true
        off = off + 2 + l
        if t == TLV_END then
            ended = true
            break
        end
    end
    if not ended then
        return malformed(root, "no END TLV")
    end

    local kind
    if seen[TLV_CAPTURE_HOST] or seen[TLV_FLAGS] then
        kind = "flow"
    elseif seen[TLV_SOURCE_VN] and not seen[TLV_DEST_VN] then
        kind = "interface-rx"
    elseif seen[TLV_DEST_VN] and not seen[TLV_SOURCE_VN] then
        kind = "interface-tx"
    else
        kind = "unknown"
    end
    root:add(f.metadata_length, off):set_generated()
    root:add(f.kind, kind):set_generated()
    root:set_len(off)
    root:append_text(string.format(", %s copy, %d bytes of metadata", kind, off))

    if off < len then
        eth:call(tvb(off):tvb(), pinfo, tree)
    end
    -- After the inner frame's dissectors, which set the columns to its protocols.
    pinfo.cols.info:prepend(string.format("[mirror %s%s] ", kind,
        #texts > 0 and (" " .. table.concat(texts, ", ")) or ""))
    return len
end

local udp_port = DissectorTable.get("udp.port")
local registered = DEFAULT_PORTS
udp_port:add(registered, proto)
udp_port:add_for_decode_as(proto)

function proto.prefs_changed()
    if proto.prefs.udp_ports ~= registered then
        udp_port:remove(registered, proto)
        registered = proto.prefs.udp_ports
        udp_port:add(registered, proto)
    end
end
