//! UVE JSON as the analytics API shows it.
//!
//! * Raw ([`raw_json`], `GET /analytics/uves/<type>/<name>`): per struct type, every attribute
//!   is a list of `[value, "source:node_type:module:instance_id"]` pairs, one per generator,
//!   where the value keeps the XML shape the way `xmltodict` renders it (attributes as `@type`,
//!   `@identifier`, `@<annotation>`, text as `#text`, struct values under their type name,
//!   containers under `list`/`set`/`map` with `element` items); `__T` likewise with
//!   `{"@type": "u64", "#text": "<µs>"}`.
//! * Flat ([`flat_json`], `?flat`): typed JSON values (integers, floats, booleans, strings,
//!   objects, arrays), aggregated across generators — `aggtype="sum"` summed (member-wise in
//!   structs), `"union"` merged, `"append"` concatenated; otherwise a single value when every
//!   generator agrees, else a list of `[value, generator]` pairs — and `__T` the latest
//!   timestamp of the struct.
//! * Filters ([`UveFilter`], the reference API's `sfilt`, `mfilt`, `cfilt`, `kfilt`): keep
//!   the attributes of one generator source, of one module, of some struct types (and of
//!   some of their attributes), of some object names; a filtered answer is always flat.

use crate::model::{UveField, UveValue};
use crate::store::{StoredAttr, TS_ATTR};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Groups stored attributes: struct type → attribute → [(generator, attr)].
fn group(attrs: &[StoredAttr]) -> BTreeMap<&str, BTreeMap<&str, Vec<&StoredAttr>>> {
    let mut out: BTreeMap<&str, BTreeMap<&str, Vec<&StoredAttr>>> = BTreeMap::new();
    for a in attrs {
        out.entry(&a.struct_type).or_default().entry(&a.attr).or_default().push(a);
    }
    out
}

fn xml_value(v: &UveValue) -> Value {
    match v {
        UveValue::Scalar { text, .. } => Value::String(text.clone()),
        UveValue::Struct { name, fields } => {
            let mut inner = Map::new();
            for f in fields {
                inner.insert(f.name.clone(), xml_field(f));
            }
            json!({ name.clone(): Value::Object(inner) })
        }
        UveValue::List { kind, elem_ty, items } => {
            let mut inner = Map::new();
            inner.insert("@type".into(), json!(elem_ty));
            inner.insert("@size".into(), json!(items.len().to_string()));
            let mut by_name: BTreeMap<String, Vec<Value>> = BTreeMap::new();
            for it in items {
                match it {
                    UveValue::Struct { name, .. } => {
                        let v = xml_value(it);
                        by_name.entry(name.clone()).or_default().push(v[name].clone());
                    }
                    other => by_name.entry("element".into()).or_default().push(xml_value(other)),
                }
            }
            for (k, mut vs) in by_name {
                inner.insert(k, if vs.len() == 1 { vs.pop().expect("one") } else { Value::Array(vs) });
            }
            json!({ kind.clone(): Value::Object(inner) })
        }
        UveValue::Map { key_ty, value_ty, entries } => {
            let mut inner = Map::new();
            inner.insert("@key".into(), json!(key_ty));
            inner.insert("@value".into(), json!(value_ty));
            inner.insert("@size".into(), json!(entries.len().to_string()));
            let mut elems = Vec::new();
            for (k, v) in entries {
                elems.push(xml_value(k));
                elems.push(xml_value(v));
            }
            inner.insert("element".into(), Value::Array(elems));
            json!({ "map": Value::Object(inner) })
        }
    }
}

fn xml_field(f: &UveField) -> Value {
    let mut m = Map::new();
    m.insert("@type".into(), json!(f.sandesh_type));
    m.insert("@identifier".into(), json!(f.identifier.to_string()));
    for (k, v) in &f.annotations {
        m.insert(format!("@{k}"), json!(v));
    }
    match xml_value(&f.value) {
        Value::String(s) => {
            if !s.is_empty() {
                m.insert("#text".into(), Value::String(s));
            }
        }
        Value::Object(o) => m.extend(o),
        other => {
            m.insert("#text".into(), other);
        }
    }
    Value::Object(m)
}

/// The raw (non-flat) form of one UVE object.
pub fn raw_json(attrs: &[StoredAttr]) -> Value {
    let mut out = Map::new();
    for (st, by_attr) in group(attrs) {
        let mut s = Map::new();
        for (attr, entries) in by_attr {
            let list: Vec<Value> = entries
                .iter()
                .map(|a| {
                    let v = match &a.field {
                        Some(f) => xml_field(f),
                        None => json!({"@type": "u64", "#text": a.ts.to_string()}),
                    };
                    json!([v, a.generator])
                })
                .collect();
            s.insert(attr.to_owned(), Value::Array(list));
        }
        out.insert(st.to_owned(), Value::Object(s));
    }
    Value::Object(out)
}

/// A typed JSON value of a UVE value.
pub fn typed_value(v: &UveValue) -> Value {
    match v {
        UveValue::Scalar { ty, text } => match ty.as_str() {
            "byte" | "i16" | "i32" | "i64" => text.parse::<i64>().map(Value::from).unwrap_or_else(|_| json!(text)),
            "u16" | "u32" | "u64" | "ipv4" => text.parse::<u64>().map(Value::from).unwrap_or_else(|_| json!(text)),
            "double" => text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .unwrap_or_else(|| json!(text)),
            "bool" => match text.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => json!(text),
            },
            _ => json!(text),
        },
        UveValue::Struct { fields, .. } => {
            let mut m = Map::new();
            for f in fields {
                m.insert(f.name.clone(), typed_value(&f.value));
            }
            Value::Object(m)
        }
        UveValue::List { items, .. } => Value::Array(items.iter().map(typed_value).collect()),
        UveValue::Map { entries, .. } => {
            let mut m = Map::new();
            for (k, v) in entries {
                let key = match typed_value(k) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                m.insert(key, typed_value(v));
            }
            Value::Object(m)
        }
    }
}

/// Member-wise sum of two typed values (numbers added, objects merged key by key); `None`
/// when the shapes do not add up.
fn sum(a: &Value, b: &Value) -> Option<Value> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                return x.checked_add(y).map(Value::from);
            }
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                return x.checked_add(y).map(Value::from);
            }
            serde_json::Number::from_f64(x.as_f64()? + y.as_f64()?).map(Value::Number)
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut m = x.clone();
            for (k, v) in y {
                let merged = match m.get(k) {
                    Some(old) => sum(old, v)?,
                    None => v.clone(),
                };
                m.insert(k.clone(), merged);
            }
            Some(Value::Object(m))
        }
        _ => None,
    }
}

fn union(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            let mut out = x.clone();
            for v in y {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Value::Array(out)
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut m = x.clone();
            for (k, v) in y {
                m.insert(k.clone(), v.clone());
            }
            Value::Object(m)
        }
        _ => b.clone(),
    }
}

fn aggregate(entries: &[&StoredAttr]) -> Value {
    let fields: Vec<(&UveField, &str)> =
        entries.iter().filter_map(|a| a.field.as_ref().map(|f| (f, a.generator.as_str()))).collect();
    let Some((first, _)) = fields.first() else {
        return Value::Null;
    };
    let values: Vec<Value> = fields.iter().map(|(f, _)| typed_value(&f.value)).collect();
    if values.len() == 1 {
        return values.into_iter().next().expect("one");
    }
    match first.annotation("aggtype") {
        Some("sum") => {
            if let Some(total) = values[1..].iter().try_fold(values[0].clone(), |acc, v| sum(&acc, v)) {
                return total;
            }
        }
        Some("union") => return values[1..].iter().fold(values[0].clone(), |acc, v| union(&acc, v)),
        Some("append") => {
            let mut out = Vec::new();
            for v in values {
                match v {
                    Value::Array(a) => out.extend(a),
                    other => out.push(other),
                }
            }
            return Value::Array(out);
        }
        _ => {}
    }
    if values.iter().all(|v| *v == values[0]) {
        return values[0].clone();
    }
    Value::Array(fields.iter().zip(values).map(|((_, g), v)| json!([v, g])).collect())
}

/// The flat form of one UVE object.
pub fn flat_json(attrs: &[StoredAttr]) -> Value {
    let mut out = Map::new();
    for (st, by_attr) in group(attrs) {
        let mut s = Map::new();
        let mut t = None;
        for (attr, entries) in by_attr {
            for a in &entries {
                t = Some(t.map_or(a.ts, |x: i64| x.max(a.ts)));
            }
            if attr != TS_ATTR {
                s.insert(attr.to_owned(), aggregate(&entries));
            }
        }
        if let Some(t) = t {
            s.insert("__T".into(), json!(t));
        }
        out.insert(st.to_owned(), Value::Object(s));
    }
    Value::Object(out)
}

/// The reference API's UVE filters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UveFilter {
    /// `sfilt`: the generator's source (its host name).
    pub source: Option<String>,
    /// `mfilt`: the generator's module, or `module:instance_id`.
    pub module: Option<String>,
    /// `cfilt`: struct types to keep, each with the attributes to keep (none listed: all).
    pub structs: Vec<(String, Vec<String>)>,
    /// `kfilt`: object names to keep; a trailing `*` matches every name with that prefix.
    pub keys: Vec<String>,
}

impl UveFilter {
    /// Whether no filter is set.
    pub fn is_empty(&self) -> bool {
        self.source.is_none() && self.module.is_none() && self.structs.is_empty() && self.keys.is_empty()
    }

    /// Whether one of `source`, `module`, `structs` is set (the filters on attributes).
    pub fn filters_attrs(&self) -> bool {
        self.source.is_some() || self.module.is_some() || !self.structs.is_empty()
    }

    /// Adds `cfilt` entries: `StructType` or `StructType:attr` (the same struct may come
    /// several times, each naming an attribute).
    pub fn add_structs<'a>(&mut self, items: impl IntoIterator<Item = &'a str>) {
        for item in items.into_iter().map(str::trim).filter(|i| !i.is_empty()) {
            let (st, attr) = match item.split_once(':') {
                Some((st, a)) => (st, Some(a)),
                None => (item, None),
            };
            let pos = match self.structs.iter().position(|(s, _)| s == st) {
                Some(p) => p,
                None => {
                    self.structs.push((st.to_owned(), Vec::new()));
                    self.structs.len() - 1
                }
            };
            if let Some(a) = attr {
                self.structs[pos].1.push(a.to_owned());
            }
        }
    }

    /// Adds `kfilt` entries.
    pub fn add_keys<'a>(&mut self, items: impl IntoIterator<Item = &'a str>) {
        self.keys.extend(items.into_iter().map(str::trim).filter(|i| !i.is_empty()).map(str::to_owned));
    }

    /// Whether object `name` passes `kfilt`.
    pub fn keeps_key(&self, name: &str) -> bool {
        self.keys.is_empty()
            || self.keys.iter().any(|k| match k.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == k,
            })
    }

    fn keeps_generator(&self, generator: &str) -> bool {
        // source:node_type:module:instance_id (the source itself may not contain ':').
        let mut parts = generator.splitn(4, ':');
        let (source, _node_type, module, instance) = (parts.next(), parts.next(), parts.next(), parts.next());
        let source_ok = self.source.as_deref().is_none_or(|s| Some(s) == source);
        let module_ok = self.module.as_deref().is_none_or(|m| match m.split_once(':') {
            Some((m, i)) => Some(m) == module && Some(i) == instance,
            None => Some(m) == module,
        });
        source_ok && module_ok
    }

    fn keeps_attr(&self, struct_type: &str, attr: &str) -> bool {
        self.structs.is_empty()
            || self.structs.iter().any(|(st, attrs)| {
                st == struct_type && (attrs.is_empty() || attr == TS_ATTR || attrs.iter().any(|a| a == attr))
            })
    }

    /// The attributes that pass `sfilt`, `mfilt` and `cfilt`.
    pub fn apply(&self, attrs: Vec<StoredAttr>) -> Vec<StoredAttr> {
        attrs
            .into_iter()
            .filter(|a| self.keeps_generator(&a.generator) && self.keeps_attr(&a.struct_type, &a.attr))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(inp: u64, mir: u64) -> UveValue {
        let f = |n: &str, id: i32, v: u64| UveField {
            name: n.into(),
            sandesh_type: "u64".into(),
            identifier: id,
            annotations: vec![],
            value: UveValue::scalar("u64", v.to_string()),
        };
        UveValue::Struct { name: "VmInterfaceStats".into(), fields: vec![f("in_pkts", 1, inp), f("mir_pkts", 5, mir)] }
    }

    fn attr(generator: &str, name: &str, ann: &[(&str, &str)], value: UveValue, ts: i64) -> StoredAttr {
        StoredAttr {
            generator: generator.into(),
            struct_type: "VMIStats".into(),
            attr: name.into(),
            field: Some(UveField {
                name: name.into(),
                sandesh_type: match &value {
                    UveValue::Scalar { ty, .. } => ty.clone(),
                    UveValue::Struct { .. } => "struct".into(),
                    UveValue::List { kind, .. } => kind.clone(),
                    UveValue::Map { .. } => "map".into(),
                },
                identifier: 9,
                annotations: ann.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
                value,
            }),
            ts,
        }
    }

    fn ts(generator: &str, ts: i64) -> StoredAttr {
        StoredAttr {
            generator: generator.into(),
            struct_type: "VMIStats".into(),
            attr: TS_ATTR.into(),
            field: None,
            ts,
        }
    }

    #[test]
    fn flat_single_generator() {
        let attrs = vec![
            ts("g1", 100),
            attr("g1", "raw_if_stats", &[("metric", "agg")], stats(3, 2), 100),
            attr("g1", "vm_name", &[], UveValue::scalar("string", "vm1"), 90),
        ];
        let v = flat_json(&attrs);
        assert_eq!(
            v,
            json!({"VMIStats": {"raw_if_stats": {"in_pkts": 3, "mir_pkts": 2}, "vm_name": "vm1", "__T": 100}})
        );
    }

    #[test]
    fn flat_aggregation_across_generators() {
        let attrs = vec![
            attr("g1", "a", &[("aggtype", "sum")], stats(3, 2), 100),
            attr("g2", "a", &[("aggtype", "sum")], stats(4, 1), 200),
            attr("g1", "same", &[], UveValue::scalar("string", "x"), 100),
            attr("g2", "same", &[], UveValue::scalar("string", "x"), 200),
            attr("g1", "differ", &[], UveValue::scalar("i32", "-1"), 100),
            attr("g2", "differ", &[], UveValue::scalar("i32", "2"), 200),
            ts("g1", 100),
            ts("g2", 200),
        ];
        let v = flat_json(&attrs);
        assert_eq!(v["VMIStats"]["a"], json!({"in_pkts": 7, "mir_pkts": 3}));
        assert_eq!(v["VMIStats"]["same"], json!("x"));
        assert_eq!(v["VMIStats"]["differ"], json!([[-1, "g1"], [2, "g2"]]));
        assert_eq!(v["VMIStats"]["__T"], json!(200));
    }

    #[test]
    fn raw_keeps_xml_shape() {
        let attrs = vec![ts("g1", 100), attr("g1", "raw_if_stats", &[("metric", "agg")], stats(3, 2), 100)];
        let v = raw_json(&attrs);
        assert_eq!(
            v["VMIStats"]["raw_if_stats"],
            json!([[{"@type": "struct", "@identifier": "9", "@metric": "agg",
                     "VmInterfaceStats": {
                        "in_pkts": {"@type": "u64", "@identifier": "1", "#text": "3"},
                        "mir_pkts": {"@type": "u64", "@identifier": "5", "#text": "2"}}}, "g1"]])
        );
        assert_eq!(v["VMIStats"]["__T"], json!([[{"@type": "u64", "#text": "100"}, "g1"]]));
    }

    #[test]
    fn typed_scalars_and_containers() {
        assert_eq!(typed_value(&UveValue::scalar("bool", "true")), json!(true));
        assert_eq!(typed_value(&UveValue::scalar("i16", "-31743")), json!(-31743));
        assert_eq!(typed_value(&UveValue::scalar("u64", "18446744073709551615")), json!(u64::MAX));
        assert_eq!(typed_value(&UveValue::scalar("double", "1.5")), json!(1.5));
        assert_eq!(typed_value(&UveValue::scalar("string", "12")), json!("12"));
        let l = UveValue::List {
            kind: "list".into(),
            elem_ty: "string".into(),
            items: vec![UveValue::scalar("string", "a"), UveValue::scalar("string", "b")],
        };
        assert_eq!(typed_value(&l), json!(["a", "b"]));
        let m = UveValue::Map {
            key_ty: "string".into(),
            value_ty: "i32".into(),
            entries: vec![(UveValue::scalar("string", "k"), UveValue::scalar("i32", "20"))],
        };
        assert_eq!(typed_value(&m), json!({"k": 20}));
    }

    #[test]
    fn filters_keep_source_module_structs_and_keys() {
        let mk = |generator: &str, st: &str, attr: &str| StoredAttr {
            generator: generator.into(),
            struct_type: st.into(),
            attr: attr.into(),
            field: None,
            ts: 1,
        };
        let attrs = vec![
            mk("host1:Compute:contrail-vrouter-agent:0", "VMIStats", "__T"),
            mk("host1:Compute:contrail-vrouter-agent:0", "VMIStats", "raw_if_stats"),
            mk("host1:Compute:contrail-vrouter-agent:0", "VMIStats", "vm_name"),
            mk("host2:Compute:contrail-vrouter-agent:1", "VMIStats", "vm_name"),
            mk("host2:Compute:other:0", "UveVMInterfaceAgent", "active"),
        ];
        let keep = |f: &UveFilter| {
            f.apply(attrs.clone())
                .iter()
                .map(|a| format!("{}/{}/{}", &a.generator[..5], a.struct_type, a.attr))
                .collect::<Vec<_>>()
        };
        let f = UveFilter { source: Some("host2".into()), ..UveFilter::default() };
        assert_eq!(keep(&f), ["host2/VMIStats/vm_name", "host2/UveVMInterfaceAgent/active"]);
        let f = UveFilter { module: Some("contrail-vrouter-agent:1".into()), ..UveFilter::default() };
        assert_eq!(keep(&f), ["host2/VMIStats/vm_name"]);
        let f = UveFilter { module: Some("other".into()), ..UveFilter::default() };
        assert_eq!(keep(&f), ["host2/UveVMInterfaceAgent/active"]);
        let mut f = UveFilter::default();
        f.add_structs(["VMIStats:vm_name", " "]);
        assert_eq!(keep(&f), ["host1/VMIStats/__T", "host1/VMIStats/vm_name", "host2/VMIStats/vm_name"]);
        f.add_structs(["UveVMInterfaceAgent"]);
        assert_eq!(f.structs.len(), 2);
        assert_eq!(keep(&f).len(), 4);
        let mut f = UveFilter::default();
        assert!(f.is_empty() && f.keeps_key("anything"));
        f.add_keys(["vmi-1", "default-domain:*"]);
        assert!(f.keeps_key("vmi-1") && f.keeps_key("default-domain:demo:x"));
        assert!(!f.keeps_key("vmi-10") && !f.filters_attrs());
    }
}
