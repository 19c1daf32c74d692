//! Property tests: encode → decode is the identity for random values of every known message
//! (values generated from the definitions themselves), typed ↔ dynamic conversion is the
//! identity, the decoder never panics on random or mutated input, and anything it accepts
//! re-encodes to exactly the bytes it was given.

use proptest::prelude::*;
use sandesh::messages::{encode_body_typed, MESSAGES};
use sandesh::{
    decode_body_with, decode_message, encode_body, encode_frame, FieldType, FlowLogData, FlowLogDataObject,
    FrameDecoder, MessageDef, SandeshHeader, SandeshStruct, StructDef, StructValue, Value,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Strings with plenty of the characters that need escaping.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(
            prop_oneof![
                Just('&'),
                Just('\''),
                Just('<'),
                Just('>'),
                Just('"'),
                Just(';'),
                Just(' '),
                Just('é'),
                proptest::char::range('a', 'z'),
            ],
            0..24
        )
        .prop_map(|v| v.into_iter().collect()),
    ]
    .boxed()
}

fn ipaddr() -> BoxedStrategy<IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        // Many zero groups, to exercise `::` compression.
        (any::<u16>(), 0usize..8).prop_map(|(g, at)| {
            let mut s = [0u16; 8];
            s[at] = g;
            IpAddr::V6(Ipv6Addr::from(s))
        }),
    ]
    .boxed()
}

/// A random value of `ty`, derived from the definition.
fn value(ty: &'static FieldType) -> BoxedStrategy<Value> {
    match ty {
        FieldType::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        FieldType::Byte => any::<i8>().prop_map(Value::Byte).boxed(),
        FieldType::I16 => any::<i16>().prop_map(Value::I16).boxed(),
        FieldType::I32 => any::<i32>().prop_map(Value::I32).boxed(),
        FieldType::I64 => any::<i64>().prop_map(Value::I64).boxed(),
        FieldType::U16 => any::<u16>().prop_map(Value::U16).boxed(),
        FieldType::U32 => any::<u32>().prop_map(Value::U32).boxed(),
        FieldType::U64 => any::<u64>().prop_map(Value::U64).boxed(),
        FieldType::Ipv4 => any::<u32>().prop_map(|n| Value::Ipv4(n.into())).boxed(),
        FieldType::IpAddr => ipaddr().prop_map(Value::IpAddr).boxed(),
        FieldType::Double => (-1e12f64..1e12).prop_map(Value::Double).boxed(),
        FieldType::String => text().prop_map(Value::String).boxed(),
        FieldType::Xml => text().prop_filter("no CDATA end", |s| !s.contains("]]>")).prop_map(Value::Xml).boxed(),
        FieldType::Uuid => any::<[u8; 16]>().prop_map(Value::Uuid).boxed(),
        FieldType::Struct(def) => struct_value(def).prop_map(Value::Struct).boxed(),
        FieldType::List(e) => proptest::collection::vec(value(e), 0..4).prop_map(Value::List).boxed(),
        FieldType::Set(e) => proptest::collection::vec(value(e), 0..4).prop_map(Value::Set).boxed(),
        FieldType::Map(k, v) => proptest::collection::vec((value(k), value(v)), 0..4).prop_map(Value::Map).boxed(),
    }
}

fn struct_value(def: &'static StructDef) -> BoxedStrategy<StructValue> {
    let slots: Vec<BoxedStrategy<Option<Value>>> =
        def.fields
            .iter()
            .map(|f| {
                if f.optional {
                    proptest::option::of(value(&f.ty)).boxed()
                } else {
                    value(&f.ty).prop_map(Some).boxed()
                }
            })
            .collect();
    slots.prop_map(move |fields| StructValue { def, fields }).boxed()
}

/// A random header carrying `def`'s Type, and a random body of `def`.
fn message(def: &'static MessageDef) -> BoxedStrategy<(StructValue, StructValue)> {
    (struct_value(&SandeshHeader::STRUCT), struct_value(def.body))
        .prop_map(move |(mut h, b)| {
            let i = SandeshHeader::STRUCT.field_index("Type").unwrap();
            h.fields[i] = Some(Value::I32(def.kind.code()));
            (h, b)
        })
        .boxed()
}

fn any_message() -> BoxedStrategy<(&'static MessageDef, StructValue, StructValue)> {
    let per: Vec<BoxedStrategy<_>> = MESSAGES
        .iter()
        .map(|d| {
            let d: &'static MessageDef = d;
            message(d).prop_map(move |(h, b)| (d, h, b)).boxed()
        })
        .collect();
    proptest::strategy::Union::new(per).boxed()
}

fn encode(def: &'static MessageDef, h: &StructValue, b: &StructValue) -> String {
    let mut s = String::new();
    encode_body(&mut s, h, def, b).unwrap();
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn encode_decode_is_identity((def, h, b) in any_message()) {
        let body = encode(def, &h, &b);
        // Through the framing, split at an arbitrary point.
        let frame = encode_frame(body.as_bytes()).unwrap();
        let mut d = FrameDecoder::new();
        let cut = frame.len() / 3;
        d.push(&frame[..cut]);
        prop_assert_eq!(d.next_frame().unwrap(), None);
        d.push(&frame[cut..]);
        let got = d.next_frame().unwrap().unwrap();
        prop_assert_eq!(&got, body.as_bytes());
        let dm = decode_body_with(&got, &SandeshHeader::STRUCT, &MESSAGES).unwrap();
        prop_assert_eq!(&dm.header, &h);
        prop_assert_eq!(&dm.body, &b);
        prop_assert_eq!(dm.def, def);
        // The typed decoder agrees, and typed -> dynamic gives the same value back.
        let typed = decode_message(&got).unwrap();
        prop_assert_eq!(typed.header.to_struct_value(), h);
        // The typed fast-path encoder writes exactly the dynamic encoder's bytes.
        let mut fast = String::new();
        let th = &typed.header;
        let again = match &typed.message {
            sandesh::Message::CtrlClientToServer(m) => {
                encode_body_typed(&mut fast, th, m).unwrap();
                m.to_struct_value()
            }
            sandesh::Message::CtrlServerToClient(m) => {
                encode_body_typed(&mut fast, th, m).unwrap();
                m.to_struct_value()
            }
            sandesh::Message::FlowLogDataObject(m) => {
                encode_body_typed(&mut fast, th, m).unwrap();
                m.to_struct_value()
            }
            sandesh::Message::UveVmiStats(m) => {
                encode_body_typed(&mut fast, th, m).unwrap();
                m.to_struct_value()
            }
            sandesh::Message::VrouterStats(m) => {
                encode_body_typed(&mut fast, th, m).unwrap();
                m.to_struct_value()
            }
            sandesh::Message::PacketTraceData(m) => {
                encode_body_typed(&mut fast, th, m).unwrap();
                m.to_struct_value()
            }
        };
        prop_assert_eq!(&fast, &body);
        prop_assert_eq!(again, b);
    }

    #[test]
    fn typed_flow_records_round_trip(v in struct_value(&FlowLogData::STRUCT)) {
        let typed = FlowLogData::from_struct_value(v.clone()).unwrap();
        prop_assert_eq!(typed.to_struct_value(), v);
        let obj = FlowLogDataObject { flowdata: vec![typed.clone(), typed] };
        let back = FlowLogDataObject::from_struct_value(obj.to_struct_value()).unwrap();
        prop_assert_eq!(back, obj);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_message(&bytes);
        let mut d = FrameDecoder::new();
        d.push(&bytes);
        while let Ok(Some(body)) = d.next_frame() {
            let _ = decode_message(&body);
        }
    }

    #[test]
    fn xml_like_garbage_never_panics(parts in proptest::collection::vec(prop_oneof![
        Just("<".to_owned()), Just(">".to_owned()), Just("</".to_owned()), Just("\"".to_owned()),
        Just("<SandeshHeader>".to_owned()), Just(" type=\"".to_owned()), Just("identifier=\"1\"".to_owned()),
        Just("<list type=\"struct\" size=\"".to_owned()), Just("<element>".to_owned()),
        Just("<![CDATA[".to_owned()), Just("&amp;".to_owned()), Just("&".to_owned()),
        "[a-zA-Z0-9_]{0,6}",
    ], 0..64)) {
        let s: String = parts.concat();
        let _ = decode_message(s.as_bytes());
    }

    /// Mutate a valid body (replace, insert or delete one byte, or swap two ranges): the decoder
    /// never panics, and whatever it still accepts re-encodes to the mutated bytes exactly.
    #[test]
    fn mutated_frames_never_panic_and_accepted_input_is_canonical(
        (def, h, b) in any_message(),
        edits in proptest::collection::vec((0usize..1 << 16, any::<u8>(), 0u8..3), 1..4),
    ) {
        let mut body = encode(def, &h, &b).into_bytes();
        for (pos, byte, op) in edits {
            let at = pos % (body.len() + 1);
            match op {
                0 if at < body.len() => body[at] = byte,
                1 => body.insert(at, byte),
                _ if at < body.len() => { body.remove(at); }
                _ => {}
            }
        }
        if let Ok(dm) = decode_body_with(&body, &SandeshHeader::STRUCT, &MESSAGES) {
            let again = encode(dm.def, &dm.header, &dm.body);
            prop_assert_eq!(again.as_bytes(), &body[..]);
        }
    }
}
