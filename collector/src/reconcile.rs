//! Mirror reconciliation from the stored flow records: `GET /analytics/mirror/reconcile`.
//!
//! Per vRouter and analyzer (and per vRouter, rule and analyzer), the flows whose records
//! name the analyzer (`analyzer_name` or `sec_analyzer_name`) in the time window, summed
//! into the same [`Balance`] `mirror --reconcile` shows on the vRouter: packets and bytes of
//! the flows, copies sent, copies lost, packets before the rule and packets dropped while
//! held, and what that leaves unexplained. Each record carries all of these as cumulative
//! values of one moment, so the identity holds on the stored records whatever sampling left
//! out. Next to it, from the vRouter's UVE (`VrouterStatsAgent.mirror_analyzers`, while the
//! vRouter is connected): the analyzer entry's lost copies by reason and its own counters,
//! and what export sampling left out of its flows (`sampled_out_*`): the records plus that
//! are what the vRouter counted when it last scanned the flows.

use crate::query::{compile, Match, MatchOp, QueryContext, QueryError, QueryRequest};
use crate::store::{Backend, StoreError};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use vrouter_abi::mirror::{Balance, FlowShare};

/// One stored flow record's reconciliation columns.
struct Row {
    vrouter: String,
    analyzers: [Option<String>; 2],
    rule: Option<String>,
    packets: i64,
    bytes: i64,
    sent: [(Option<i64>, Option<i64>); 2],
    lost: [Option<i64>; 2],
    before: Option<i64>,
    held: Option<i64>,
}

impl Row {
    fn share(&self, k: usize) -> FlowShare {
        let n = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
        FlowShare {
            packets: n(Some(self.packets)),
            bytes: n(Some(self.bytes)),
            sent_packets: n(self.sent[k].0),
            sent_bytes: n(self.sent[k].1),
            lost_packets: n(self.lost[k]),
            before_mirror_packets: n(self.before),
            held_dropped_packets: n(self.held),
        }
    }
}

/// The FlowRecordTable fields a row is read from, in [`Row::of`]'s order.
const FIELDS: [&str; 15] = [
    "UuidKey",
    "vrouter",
    "analyzer_name",
    "sec_analyzer_name",
    "nw_ace_uuid",
    "sg_rule_uuid",
    "agg-packets",
    "agg-bytes",
    "agg-mir-packets",
    "agg-mir-bytes",
    "agg-sec-mir-packets",
    "agg-sec-mir-bytes",
    "agg-mir-lost-packets",
    "agg-sec-mir-lost-packets",
    "before-mirror-packets",
];

impl Row {
    /// A row of [`FIELDS`] plus `held-dropped-packets`.
    fn of(v: &[Value]) -> Row {
        let s = |k: usize| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let i = |k: usize| v.get(k).and_then(Value::as_i64);
        Row {
            vrouter: s(1).unwrap_or_default(),
            analyzers: [s(2), s(3)],
            rule: s(4).or_else(|| s(5)),
            packets: i(6).unwrap_or(0),
            bytes: i(7).unwrap_or(0),
            sent: [(i(8), i(9)), (i(10), i(11))],
            lost: [i(12), i(13)],
            before: i(14),
            held: i(15),
        }
    }
}

/// The mirrored flows' records in the window, through the same query compiler as
/// `POST /analytics/query` (FlowRecordTable: the merged record of each flow, whatever the
/// backend).
fn rows(
    store: &dyn Backend,
    ctx: &QueryContext,
    start_us: i64,
    end_us: i64,
    vrouter: Option<&str>,
) -> Result<Vec<Row>, QueryError> {
    let time = |t: i64| t.clamp(0, i64::MAX).to_string();
    let where_ = match vrouter {
        Some(v) => vec![vec![Match { name: "vrouter".into(), op: MatchOp::Equal, value: json!(v), value2: None }]],
        None => vec![],
    };
    let req = QueryRequest {
        table: "FlowRecordTable".into(),
        start_time: time(start_us),
        end_time: time(end_us.min(ctx.now_us as i64)),
        select_fields: FIELDS.iter().map(|f| (*f).to_owned()).chain(["held-dropped-packets".to_owned()]).collect(),
        where_,
        filter: vec![],
        sort_fields: vec!["UuidKey".into()],
        descending: false,
        limit: None,
        dir: None,
    };
    // Every mirrored flow of the window counts: no row limit.
    let q = compile(&req, &QueryContext { max_rows: usize::MAX, ..*ctx }, store.dialect())?;
    let out = store.fetch(&q)?;
    Ok(out.iter().map(|v| Row::of(v)).filter(|r| r.analyzers.iter().any(Option::is_some)).collect())
}

/// The analyzers of a vRouter's UVE, by name (flat form).
fn uve_analyzers(store: &dyn Backend, vrouter: &str) -> Result<BTreeMap<String, Value>, StoreError> {
    let attrs = store.uve_attrs("ObjectVRouter", vrouter)?;
    let flat = crate::uve::flat_json(&attrs);
    let list = match &flat["VrouterStatsAgent"]["mirror_analyzers"] {
        Value::Array(a) => a.clone(),
        _ => Vec::new(),
    };
    Ok(list.into_iter().filter_map(|a| Some((a["name"].as_str()?.to_owned(), a))).collect())
}

/// What the vRouter's UVE says of one analyzer, as the reconciliation row shows it.
fn uve_part(a: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    let n = |k: &str| a[k].as_u64().unwrap_or(0);
    let mut flow_lost = Map::new();
    let mut iface_lost = Map::new();
    for l in a["lost"].as_array().into_iter().flatten() {
        if let Some(reason) = l["reason"].as_str() {
            flow_lost.insert(reason.to_owned(), json!(l["flow_pkts"].as_u64().unwrap_or(0)));
            iface_lost.insert(reason.to_owned(), json!(l["iface_pkts"].as_u64().unwrap_or(0)));
        }
    }
    let flow_lost_total: u64 = flow_lost.values().filter_map(Value::as_u64).sum();
    out.insert("lost".into(), Value::Object(flow_lost));
    out.insert(
        "entry".into(),
        json!({
            "flow_packets": n("flow_pkts"),
            "flow_bytes": n("flow_bytes"),
            "flow_lost_packets": flow_lost_total,
            "interface_packets": n("iface_pkts"),
            "interface_bytes": n("iface_bytes"),
            "interface_lost": Value::Object(iface_lost),
        }),
    );
    out.insert("analyzer_ip".into(), a["analyzer_ip"].clone());
    out.insert("index".into(), a["index"].clone());
    out.insert("sampled_out_packets".into(), json!(n("sampled_out_pkts")));
    out.insert("sampled_out_bytes".into(), json!(n("sampled_out_bytes")));
    out.insert("sampled_out_sent_packets".into(), json!(n("sampled_out_mir_pkts")));
    out
}

/// The reconciliation of the flow records in `[start_us, end_us]` (of one vRouter, or all):
/// `{"analyzers": [...], "rules": [...]}`. Each analyzer row: `vrouter`, `analyzer_name`,
/// the [`Balance`] fields, and from the vRouter's UVE (`null` when it has none: the vRouter
/// is not connected, or does not know the analyzer any more) `lost` (flow-mirroring copies
/// lost by reason), `entry`, `analyzer_ip`, `index`, `sampled_out_packets`/`_bytes`/
/// `_sent_packets`, and `vrouter_packets` (= `packets` + `sampled_out_packets`: what the
/// vRouter counted). Each rule row: `vrouter`, `rule` (`nw_ace_uuid`, else `sg_rule_uuid`,
/// else `-`), `analyzer_name` and the [`Balance`] fields.
pub fn reconcile(
    store: &dyn Backend,
    ctx: &QueryContext,
    start_us: i64,
    end_us: i64,
    vrouter: Option<&str>,
) -> Result<Value, QueryError> {
    let mut analyzers: BTreeMap<(String, String), Balance> = BTreeMap::new();
    let mut rules: BTreeMap<(String, String, String), Balance> = BTreeMap::new();
    for r in rows(store, ctx, start_us, end_us, vrouter)? {
        for (k, name) in r.analyzers.iter().enumerate() {
            let Some(name) = name else { continue };
            let share = r.share(k);
            analyzers.entry((r.vrouter.clone(), name.clone())).or_default().add(&share);
            let rule = r.rule.clone().unwrap_or_else(|| "-".into());
            rules.entry((r.vrouter.clone(), rule, name.clone())).or_default().add(&share);
        }
    }
    let mut uves: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    let mut out = Vec::new();
    for ((vr, name), b) in &analyzers {
        if !uves.contains_key(vr) {
            uves.insert(vr.clone(), uve_analyzers(store, vr)?);
        }
        let mut row = match serde_json::to_value(b).expect("plain data") {
            Value::Object(m) => m,
            _ => unreachable!("a struct serializes to an object"),
        };
        row.insert("vrouter".into(), json!(vr));
        row.insert("analyzer_name".into(), json!(name));
        match uves.get(vr).and_then(|u| u.get(name)) {
            Some(a) => {
                let part = uve_part(a);
                let sampled = part["sampled_out_packets"].as_u64().unwrap_or(0);
                row.extend(part);
                row.insert("vrouter_packets".into(), json!(b.packets + sampled));
            }
            None => {
                for k in ["lost", "entry", "analyzer_ip", "index", "sampled_out_packets", "vrouter_packets"] {
                    row.insert(k.into(), Value::Null);
                }
            }
        }
        out.push(Value::Object(row));
    }
    let rules: Vec<Value> = rules
        .into_iter()
        .map(|((vr, rule, name), b)| {
            let mut v = serde_json::to_value(b).expect("plain data");
            v["vrouter"] = json!(vr);
            v["rule"] = json!(rule);
            v["analyzer_name"] = json!(name);
            v
        })
        .collect();
    Ok(json!({"analyzers": out, "rules": rules}))
}
