//! The strict decoder rejects every deviation from what a conforming writer produces, with a
//! typed error: whitespace, attribute order, type names, identifiers, lengths, container sizes,
//! element wrappers, field order, unknown and missing fields, entities, trailing data.

use sandesh::{
    decode_message, encode_message_frame, DecodeErrorKind, FlowLogData, FlowLogDataObject, FrameDecoder, FrameError,
    GeneratorId, SandeshCtrlClientToServer, SandeshType, OPEN_TAG_LEN,
};

fn gen() -> GeneratorId {
    GeneratorId {
        source: "host1".into(),
        module: "contrail-vrouter-agent".into(),
        node_type: "Compute".into(),
        instance_id: "0".into(),
    }
}

fn flow_frame() -> String {
    let mut f = FlowLogData::new(
        "u1".into(),
        1,
        "vn-a".into(),
        "10.0.0.1".parse().unwrap(),
        "vn-b".into(),
        "10.0.0.2".parse().unwrap(),
        17,
        1000,
        53,
    );
    f.bytes = Some(100);
    f.analyzer_name = Some("an".into());
    let msg = FlowLogDataObject { flowdata: vec![f] };
    let h = gen().header::<FlowLogDataObject>(1, 2, 6, 0);
    String::from_utf8(encode_message_frame(&h, &msg).unwrap()).unwrap()
}

fn ctrl_frame() -> String {
    let hello = SandeshCtrlClientToServer {
        source: "host1".into(),
        module_name: "m".into(),
        sucessful_connections: 1,
        uve_types: vec!["A".into(), "B".into()],
        pid: 1,
        http_port: 8085,
        node_type_name: "Compute".into(),
        instance_id_name: "0".into(),
    };
    let h = gen().header::<SandeshCtrlClientToServer>(1, 0, sandesh::CTRL_LEVEL, 0);
    String::from_utf8(encode_message_frame(&h, &hello).unwrap()).unwrap()
}

fn body(frame: &str) -> &str {
    &frame[OPEN_TAG_LEN..frame.len() - 10]
}

/// Decodes `body` after applying `edit` (which must change it) and returns the error kind.
fn reject(frame: &str, from: &str, to: &str) -> DecodeErrorKind {
    let b = body(frame);
    assert!(b.contains(from), "test edit `{from}` not found");
    let edited = b.replacen(from, to, 1);
    match decode_message(edited.as_bytes()) {
        Ok(d) => panic!("accepted edit `{from}` -> `{to}`: {d:?}"),
        Err(e) => {
            // Offsets point into the body.
            assert!(e.offset <= edited.len());
            e.kind
        }
    }
}

#[test]
fn valid_frames_decode() {
    decode_message(body(&flow_frame()).as_bytes()).unwrap();
    decode_message(body(&ctrl_frame()).as_bytes()).unwrap();
}

#[test]
fn whitespace_is_rejected_everywhere() {
    let f = flow_frame();
    let b = body(&f);
    // Every position between two tags.
    let mut checked = 0;
    for (i, _) in b.match_indices("><") {
        let last_open = b[..=i].rfind('<').unwrap();
        if b.as_bytes()[last_open + 1] != b'/' && b[i + 1..].starts_with("</") {
            // Empty element content: whitespace here is a (valid) string value.
            continue;
        }
        for ws in [" ", "\n", "\t", "\r\n"] {
            let edited = format!("{}{ws}{}", &b[..=i], &b[i + 1..]);
            let err = decode_message(edited.as_bytes()).unwrap_err();
            assert!(
                matches!(err.kind, DecodeErrorKind::Whitespace { .. } | DecodeErrorKind::BadValue { .. }),
                "whitespace after byte {i}: {err}"
            );
            checked += 1;
        }
    }
    assert!(checked > 100);
    // Leading and trailing whitespace, whitespace inside tags.
    assert!(decode_message(format!(" {b}").as_bytes()).is_err());
    assert!(matches!(decode_message(format!("{b}\n").as_bytes()).unwrap_err().kind, DecodeErrorKind::TrailingData(1)));
    assert!(matches!(reject(&f, r#"<sport type="i16""#, r#"<sport  type="i16""#), DecodeErrorKind::Whitespace { .. }));
    assert!(matches!(reject(&f, r#"identifier="8">"#, r#"identifier="8" >"#), DecodeErrorKind::Unexpected { .. }));
    assert!(matches!(reject(&f, "</sport>", "</sport >"), DecodeErrorKind::Whitespace { .. }));
    // Whitespace inside a number.
    assert!(matches!(reject(&f, ">53<", "> 53<"), DecodeErrorKind::BadValue { ty: SandeshType::I16, .. }));
}

#[test]
fn attribute_order_and_values_are_enforced() {
    let f = flow_frame();
    // identifier before type.
    assert!(matches!(
        reject(&f, r#"<sport type="i16" identifier="8">"#, r#"<sport identifier="8" type="i16">"#),
        DecodeErrorKind::Attributes { .. }
    ));
    // The same in the header.
    assert!(matches!(
        reject(&f, r#"<Hints type="i32" identifier="9">"#, r#"<Hints identifier="9" type="i32">"#),
        DecodeErrorKind::Attributes { .. }
    ));
    // Wrong identifier.
    assert!(matches!(
        reject(&f, r#"<sport type="i16" identifier="8">"#, r#"<sport type="i16" identifier="9">"#),
        DecodeErrorKind::Attributes { .. }
    ));
    // Extra attribute.
    assert!(matches!(
        reject(&f, r#"<sport type="i16" identifier="8">"#, r#"<sport type="i16" identifier="8" x="1">"#),
        DecodeErrorKind::Attributes { .. }
    ));
    // Missing attribute.
    assert!(matches!(
        reject(&f, r#"<sport type="i16" identifier="8">"#, r#"<sport type="i16">"#),
        DecodeErrorKind::Attributes { .. }
    ));
    // Single quotes.
    assert!(matches!(reject(&f, r#"<sport type="i16""#, r#"<sport type='i16'"#), DecodeErrorKind::Unexpected { .. }));
    // The message element needs exactly type="sandesh".
    assert!(matches!(
        reject(&f, r#"<FlowLogDataObject type="sandesh">"#, r#"<FlowLogDataObject>"#),
        DecodeErrorKind::Attributes { .. }
    ));
    // List attributes: type then size.
    assert!(matches!(
        reject(&f, r#"<list type="struct" size="1">"#, r#"<list size="1" type="struct">"#),
        DecodeErrorKind::Attributes { .. }
    ));
}

#[test]
fn annotations_must_match_the_definition() {
    use sandesh::{UVEVMIStats, VMIStats};
    let uve = UVEVMIStats {
        data: VMIStats {
            name: "vmi".into(),
            deleted: None,
            vm_name: None,
            vm_uuid: None,
            virtual_network: None,
            raw_if_stats: None,
            if_stats: None,
        },
    };
    let h = gen().header::<UVEVMIStats>(1, 1, 5, 0);
    let f = String::from_utf8(encode_message_frame(&h, &uve).unwrap()).unwrap();
    decode_message(body(&f).as_bytes()).unwrap();
    assert!(matches!(reject(&f, r#" key="ObjectVMITable""#, ""), DecodeErrorKind::Attributes { .. }));
    assert!(matches!(
        reject(&f, r#"key="ObjectVMITable""#, r#"key="ObjectVRouter""#),
        DecodeErrorKind::Attributes { .. }
    ));
}

#[test]
fn type_names_are_enforced() {
    let f = flow_frame();
    for (from, to) in [
        (r#"<sport type="i16""#, r#"<sport type="i32""#),
        (r#"<sport type="i16""#, r#"<sport type="u16""#),
        (r#"<sport type="i16""#, r#"<sport type="int""#),
        (r#"<sourceip type="ipaddr""#, r#"<sourceip type="string""#),
        (r#"<flowuuid type="string""#, r#"<flowuuid type="uuid_t""#),
        (r#"<Timestamp type="i64""#, r#"<Timestamp type="u64""#),
        (r#"<flowdata type="list""#, r#"<flowdata type="set""#),
    ] {
        assert!(matches!(reject(&f, from, to), DecodeErrorKind::Attributes { .. }), "{to}");
    }
    // Container element type.
    assert!(matches!(
        reject(&f, r#"<list type="struct""#, r#"<list type="string""#),
        DecodeErrorKind::Attributes { .. }
    ));
    // Message element with another type name.
    assert!(matches!(reject(&f, r#"type="sandesh""#, r#"type="struct""#), DecodeErrorKind::Attributes { .. }));
}

#[test]
fn bad_lengths_are_rejected() {
    let f = flow_frame();
    let n: usize = f[17..27].parse().unwrap();
    for declared in [0, 38, n - 1, n + 1] {
        let mut stream = format!("<sandesh length=\"{declared:010}\">{}", &f[OPEN_TAG_LEN..]);
        stream.push_str(&f); // a following frame, so n+1 does not just wait for more input
        let mut d = FrameDecoder::new();
        d.push(stream.as_bytes());
        let err = d.next_frame().unwrap_err();
        assert!(matches!(err, FrameError::TooShort { .. } | FrameError::MissingCloseTag { .. }), "{declared}: {err}");
    }
    // 9 and 11 digits.
    let mut d = FrameDecoder::new();
    d.push(format!("<sandesh length=\"{:09}\">", n).as_bytes());
    d.push(&f.as_bytes()[OPEN_TAG_LEN..]);
    assert!(d.next_frame().is_err());
}

#[test]
fn structure_is_enforced() {
    let f = flow_frame();
    // List size larger or smaller than the content.
    assert_eq!(reject(&f, r#"size="1""#, r#"size="2""#), DecodeErrorKind::SizeMismatch { declared: 2, more: false });
    assert_eq!(reject(&f, r#"size="1""#, r#"size="0""#), DecodeErrorKind::SizeMismatch { declared: 0, more: true });
    assert!(matches!(reject(&f, r#"size="1""#, r#"size="01""#), DecodeErrorKind::Attributes { .. }));
    // Field order.
    let c = ctrl_frame();
    let b = body(&c);
    let pid = r#"<pid type="u32" identifier="5">1</pid>"#;
    let port = r#"<http_port type="u32" identifier="6">8085</http_port>"#;
    let swapped = b.replace(&format!("{pid}{port}"), &format!("{port}{pid}"));
    assert_ne!(swapped, b);
    // http_port first: pid, which precedes it, is missing at that point.
    assert!(matches!(
        decode_message(swapped.as_bytes()).unwrap_err().kind,
        DecodeErrorKind::MissingField { field: "pid", .. }
    ));
    // An optional field after a later one is out of order.
    let f2 = flow_frame();
    let bytes_f = r#"<bytes type="i64" identifier="23">100</bytes>"#;
    let an = r#"<analyzer_name type="string" identifier="38">an</analyzer_name>"#;
    let swapped = body(&f2).replace(&format!("{bytes_f}{an}"), &format!("{an}{bytes_f}"));
    assert_ne!(swapped, body(&f2));
    assert!(matches!(
        decode_message(swapped.as_bytes()).unwrap_err().kind,
        DecodeErrorKind::FieldOrder { field: "bytes", .. }
    ));
    // Repeated field.
    let repeated = b.replace(pid, &format!("{pid}{pid}"));
    assert!(matches!(
        decode_message(repeated.as_bytes()).unwrap_err().kind,
        DecodeErrorKind::FieldOrder { field: "pid", .. }
    ));
    // Missing required field.
    assert_eq!(
        decode_message(b.replace(pid, "").as_bytes()).unwrap_err().kind,
        DecodeErrorKind::MissingField { strct: "SandeshCtrlClientToServer", field: "pid" }
    );
    assert!(matches!(
        reject(&c, r#"<Hints type="i32" identifier="9">2</Hints>"#, ""),
        DecodeErrorKind::MissingField { strct: "SandeshHeader", field: "Hints" }
    ));
    // Unknown field.
    assert!(matches!(
        reject(&c, pid, &format!("{pid}<extra type=\"u32\" identifier=\"99\">1</extra>")),
        DecodeErrorKind::UnknownField { .. }
    ));
    // Base-type list elements need <element>, struct elements must not have it.
    assert!(matches!(reject(&c, "<element>A</element>", "A"), DecodeErrorKind::Unexpected { .. }));
    assert!(matches!(reject(&f, "<FlowLogData>", "<element><FlowLogData>"), DecodeErrorKind::WrongElement { .. }));
    // Mismatched close tag.
    assert!(matches!(reject(&f, "</sport>", "</dport>"), DecodeErrorKind::WrongElement { .. }));
    // Unknown message, wrong header Type.
    assert!(matches!(
        reject(&f, "<FlowLogDataObject type", "<FlowLogDataObjectX type"),
        DecodeErrorKind::UnknownMessage(_)
    ));
    assert!(matches!(
        reject(&f, r#"<Type type="i32" identifier="8">8</Type>"#, r#"<Type type="i32" identifier="8">6</Type>"#),
        DecodeErrorKind::HeaderType { expected: 8, found: 6, .. }
    ));
    // Self-closing and CDATA where text belongs.
    assert!(matches!(
        reject(&f, r#"<bytes type="i64" identifier="23">100</bytes>"#, r#"<bytes type="i64" identifier="23"/>"#),
        DecodeErrorKind::Unexpected { .. }
    ));
    assert!(matches!(reject(&f, ">vn-a<", "><![CDATA[vn-a]]><"), DecodeErrorKind::Unexpected { .. }));
    // Trailing data.
    assert!(matches!(
        decode_message(format!("{}<x>", body(&f)).as_bytes()).unwrap_err().kind,
        DecodeErrorKind::TrailingData(3)
    ));
    // Not UTF-8.
    let mut bytes = body(&f).as_bytes().to_vec();
    bytes[100] = 0xff;
    assert_eq!(decode_message(&bytes).unwrap_err().kind, DecodeErrorKind::Utf8);
}

#[test]
fn values_and_entities_are_enforced() {
    let f = flow_frame();
    for (from, to) in [
        (">53<", ">053<"),
        (">53<", ">+53<"),
        (">53<", ">32768<"),
        (">17<", ">128<"),
        (">10.0.0.1<", ">10.0.0.01<"),
        (">10.0.0.1<", ">host<"),
    ] {
        assert!(matches!(reject(&f, from, to), DecodeErrorKind::BadValue { .. }), "{to}");
    }
    assert!(matches!(reject(&f, ">vn-a<", ">vn&quot;a<"), DecodeErrorKind::Escape(_)));
    assert!(matches!(reject(&f, ">vn-a<", ">vn&a<"), DecodeErrorKind::Escape(_)));
    // A raw `>` or `'` in text is not what a writer produces.
    assert!(matches!(reject(&f, ">vn-a<", ">vn>a<"), DecodeErrorKind::Unexpected { .. }));
    assert!(matches!(reject(&f, ">vn-a<", ">vn'a<"), DecodeErrorKind::Unexpected { .. }));
    // Escaped text decodes to the characters.
    let ok = body(&f).replacen(">vn-a<", ">a&lt;b&amp;c&apos;d&gt;\"<", 1);
    let d = decode_message(ok.as_bytes()).unwrap();
    let sandesh::Message::FlowLogDataObject(m) = d.message else { panic!() };
    assert_eq!(m.flowdata[0].sourcevn, "a<b&c'd>\"");
}
