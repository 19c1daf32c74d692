//! Line numbers and TOML paths for error messages, from `toml_edit` spans.
//!
//! The configuration text is parsed once more with `toml_edit`, which keeps the byte span
//! of every table header, key and value. Two lookups are built on it:
//!
//! - [`Spans::key_line`]: the line where a key of the table a TOML path names is written
//!   (`vif[2]` + `mtu`, `eal` + `memory_mb`, `network_policy[0].rule[1]` + `uuid`), for
//!   validation errors;
//! - [`error_location`]: the TOML path of the table a parse error lies in, and the key when
//!   it points at a value, for [`super::ConfigError::parse`].
//!
//! TOML paths are written as in error messages: keys joined by `.`, array entries as
//! `name[i]`. Path segments are schema field names (no `.`, `[` or quotes in them).

use std::ops::Range;
use toml_edit::{ImDocument, Item, Table, TableLike, Value};

/// 1-based line number of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Byte offset where the line holding `offset` starts.
fn line_start(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].rfind('\n').map_or(0, |i| i + 1)
}

/// A configuration text and its `toml_edit` document, parsed once.
pub(crate) struct Spans<'t> {
    text: &'t str,
    /// `None` when the text is not valid TOML (then no key has a known line).
    doc: Option<ImDocument<&'t str>>,
}

impl<'t> Spans<'t> {
    /// Parses `text` (once) for span lookups.
    pub(crate) fn new(text: &'t str) -> Self {
        Spans { text, doc: ImDocument::parse(text).ok() }
    }

    /// 1-based line of a byte offset in the text.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        line_of(self.text, offset)
    }

    /// The line where `key` is written in the table (or inline table, or array entry) that
    /// `path` names: `eal`, `vif[2]`, `network_policy[0].rule[1]`. `None` when the table
    /// or the key is not in the text.
    pub(crate) fn key_line(&self, path: &str, key: &str) -> Option<usize> {
        let table = table_at(self.doc.as_ref()?.as_table(), path)?;
        let (k, _) = table.get_key_value(key)?;
        Some(self.line_of(k.span()?.start))
    }
}

/// The table `path` names in `root`: each `.`-separated segment is a key, `name[i]` the
/// entry `i` of an `[[name]]` array of tables or of an array of inline tables; the empty
/// path is the top level.
fn table_at<'d>(root: &'d Table, path: &str) -> Option<&'d dyn TableLike> {
    let mut table: &dyn TableLike = root;
    if path.is_empty() {
        return Some(table);
    }
    for segment in path.split('.') {
        let (name, index) = match segment.strip_suffix(']').and_then(|s| s.split_once('[')) {
            Some((name, index)) => (name, Some(index.parse::<usize>().ok()?)),
            None => (segment, None),
        };
        let item = table.get(name)?;
        table = match index {
            None => item.as_table_like()?,
            Some(i) => match item {
                Item::ArrayOfTables(entries) => entries.get(i)?,
                Item::Value(Value::Array(values)) => values.get(i)?.as_inline_table()?,
                _ => return None,
            },
        };
    }
    Some(table)
}

/// A `[name]` or `[[name]]` table written in the text.
pub(crate) struct Section<'d> {
    /// TOML path: `vif[1]`, `eal`, or for a table nested in an array entry
    /// `network_policy[0].rule[2]` (counted within its parent entry).
    pub(crate) path: String,
    /// For an `[[array]]` entry: the array's path (`vif`, `network_policy[0].rule`).
    pub(crate) array: Option<String>,
    /// The header line (including its newline).
    pub(crate) header: Range<usize>,
    /// End of the section: the next header or the end of the text.
    pub(crate) end: usize,
    /// The table.
    pub(crate) table: &'d Table,
}

/// The tables of a document that have a header, in text order.
pub(crate) fn sections<'d>(doc: &'d ImDocument<&str>) -> Vec<Section<'d>> {
    fn push<'d>(text: &str, out: &mut Vec<Section<'d>>, path: String, array: Option<String>, t: &'d Table) {
        // Implicit (`a` of `[a.b]`) and dotted (`a.b = 1`) tables have no header.
        let Some(span) = t.span().filter(|_| !t.is_implicit() && !t.is_dotted()) else { return };
        if !text[span.start..].starts_with('[') {
            return;
        }
        let header_end = text[span.start..].find('\n').map_or(text.len(), |n| span.start + n + 1);
        out.push(Section { path, array, header: span.start..header_end, end: text.len(), table: t });
    }
    fn walk<'d>(text: &str, table: &'d Table, path: &str, out: &mut Vec<Section<'d>>) {
        for (name, item) in table.iter() {
            let p = if path.is_empty() { name.to_string() } else { format!("{path}.{name}") };
            match item {
                Item::Table(t) => {
                    push(text, out, p.clone(), None, t);
                    walk(text, t, &p, out);
                }
                Item::ArrayOfTables(entries) => {
                    for (i, t) in entries.iter().enumerate() {
                        let entry = format!("{p}[{i}]");
                        push(text, out, entry.clone(), Some(p.clone()), t);
                        walk(text, t, &entry, out);
                    }
                }
                _ => {}
            }
        }
    }
    let text = doc.raw();
    let mut out = Vec::new();
    walk(text, doc.as_table(), "", &mut out);
    out.sort_by_key(|s| s.header.start);
    for i in 1..out.len() {
        out[i - 1].end = out[i].header.start;
    }
    out
}

/// Where a parse error with `span` lies: the byte offset to report and the TOML path of the
/// enclosing table (`vif[1]`, `eal`), followed by the key when the error points at a value
/// written on the same line (`vif[0].vrf` for `vrf = "zero"`: toml's message for a wrong
/// type does not name the key). The table is known when the span is in a table's body or
/// is the whole table (a missing field); it is `None` at the top level and for errors in a
/// header itself (an unknown table name).
///
/// When the text is not valid TOML, the part before the error is looked at instead. Entries
/// of an internally tagged enum (`[[nexthop]]`) lose their span in serde: the error then
/// spans the whole array, and the failing entry is found by parsing each on its own.
pub(crate) fn error_location(text: &str, span: Range<usize>, message: &str) -> (usize, Option<String>) {
    let at = span.start.min(text.len());
    let doc = ImDocument::parse(text)
        .or_else(|_| ImDocument::parse(&text[..at]))
        .or_else(|_| ImDocument::parse(&text[..line_start(text, at)]));
    let Ok(doc) = doc else { return (span.start, None) };
    let sections = sections(&doc);
    let (offset, table, keys) = match sections.iter().rev().find(|s| s.header.start <= span.start) {
        None => (span.start, None, Some(doc.as_table())),
        Some(s) if span.start >= s.header.end => (span.start, Some(s.path.clone()), Some(s.table)),
        Some(s) if span.start != s.header.start || span.is_empty() => (span.start, None, None),
        Some(s) if s.array.is_none() || span.end <= s.end => (span.start, Some(s.path.clone()), Some(s.table)),
        Some(s) => return whole_array(text, &sections, s, span, message),
    };
    let key = keys.and_then(|t| value_key(text, t, offset));
    (offset, with_key(table, key))
}

/// The key of `table` whose `key = value` is written on the line of `offset`, before it.
fn value_key(text: &str, table: &Table, offset: usize) -> Option<String> {
    let line = line_start(text, offset);
    table.iter().find_map(|(name, item)| {
        let Item::Value(_) = item else { return None };
        let key = table.get_key_value(name)?.0.span()?;
        (key.start >= line && key.end <= offset).then(|| name.to_string())
    })
}

/// `table.key`, or just the table when it already ends with the key, or just the key at
/// the top level.
fn with_key(table: Option<String>, key: Option<String>) -> Option<String> {
    let Some(key) = key else { return table };
    Some(match table {
        Some(t) if !t.ends_with(key.as_str()) => format!("{t}.{key}"),
        Some(t) => t,
        None => key,
    })
}

/// A parse error spanning several `[[name]]` entries (the whole array `s` starts): the
/// first entry that fails to parse on its own, at the line of the unknown field serde
/// names, else at its header.
fn whole_array(
    text: &str,
    sections: &[Section<'_>],
    s: &Section<'_>,
    span: Range<usize>,
    message: &str,
) -> (usize, Option<String>) {
    let array = s.array.as_deref().unwrap_or_default();
    let entries = sections
        .iter()
        .filter(|t| t.array.as_deref() == Some(array))
        .filter(|t| t.header.start >= span.start && t.header.start < span.end);
    for t in entries {
        let Some(err) = entry_error(array, &text[t.header.start..t.end]) else { continue };
        // Serde names an unknown field in its message; point at the line that sets it.
        let offset = unknown_field(err.message())
            .or_else(|| unknown_field(message))
            .and_then(|key| t.table.get_key_value(key)?.0.span())
            .map_or(t.header.start, |k| k.start);
        return (offset, Some(t.path.clone()));
    }
    (span.start, Some(array.to_string()))
}

/// The error of parsing one `[[name]]` entry of the file on its own, if it fails.
fn entry_error(name: &str, entry: &str) -> Option<toml::de::Error> {
    use super::schema::{
        AnalyzerConfig, BridgeConfig, LabelConfig, NetworkPolicyConfig, NexthopConfig, RouteConfig,
        SecurityGroupConfig, VifConfig, VrfConfig,
    };
    use std::collections::HashMap;
    fn check<T: serde::de::DeserializeOwned>(entry: &str) -> Option<toml::de::Error> {
        toml::from_str::<HashMap<String, Vec<T>>>(entry).err()
    }
    match name {
        "vif" => check::<VifConfig>(entry),
        "vrf" => check::<VrfConfig>(entry),
        "nexthop" => check::<NexthopConfig>(entry),
        "route" => check::<RouteConfig>(entry),
        "bridge" => check::<BridgeConfig>(entry),
        "label" => check::<LabelConfig>(entry),
        "analyzer" => check::<AnalyzerConfig>(entry),
        "network_policy" => check::<NetworkPolicyConfig>(entry),
        "security_group" => check::<SecurityGroupConfig>(entry),
        _ => None,
    }
}

/// The field named by serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next().filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_section_paths() {
        let doc = ImDocument::parse("[[a]]\n[[a.r]]\n[[a.r]]\n[[a]]\n[[a.r]]\n[a.t]\n[b]\n").unwrap();
        let sections = sections(&doc);
        let paths: Vec<&str> = sections.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(paths, ["a[0]", "a[0].r[0]", "a[0].r[1]", "a[1]", "a[1].r[0]", "a[1].t", "b"]);
    }

    #[test]
    fn text_helpers() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
        assert_eq!(Spans::new("[t]\nid = 1\nvif = 2\n").key_line("t", "vif"), Some(3));
        assert_eq!(Spans::new("remote_ip = 1\n").key_line("", "ip"), None);
        assert_eq!(Spans::new("x = 1\nt = { id = 1, vif = 2 }\n").key_line("t", "vif"), Some(2));
        let doc = ImDocument::parse("# x\n[eal]\na = 1\n[[vif]]\n[[vif]] # c\n[vrouter]\n").unwrap();
        let s = sections(&doc);
        let names: Vec<_> = s.iter().map(|s| (s.path.as_str(), s.array.as_deref())).collect();
        assert_eq!(names, [("eal", None), ("vif[0]", Some("vif")), ("vif[1]", Some("vif")), ("vrouter", None)]);
        let headers: Vec<_> = s.iter().map(|s| (s.header.clone(), s.end)).collect();
        assert_eq!(headers, [(4..10, 16), (16..24, 24), (24..36, 36), (36..46, 46)]);
    }

    #[test]
    fn key_line_in_nested_arrays_of_tables() {
        let text = "[[a]]\nk = 1\n[[a.r]]\nk = 2\n[[a.r]]\nx = 0\nk = 3\n[[a]]\n[[a.r]]\n\nk = 4\n[a.t]\nk = 5\n";
        let spans = Spans::new(text);
        assert_eq!(spans.key_line("a[0]", "k"), Some(2));
        assert_eq!(spans.key_line("a[0].r[0]", "k"), Some(4));
        assert_eq!(spans.key_line("a[0].r[1]", "k"), Some(7));
        assert_eq!(spans.key_line("a[1].r[0]", "k"), Some(11));
        assert_eq!(spans.key_line("a[1].t", "k"), Some(13));
        // Keys of nested tables are not keys of their parent entry.
        assert_eq!(spans.key_line("a[1]", "k"), None);
        assert_eq!(spans.key_line("a[2]", "k"), None);
        assert_eq!(spans.key_line("a[0].r[1]", "x"), Some(6));
    }

    #[test]
    fn key_line_in_inline_tables() {
        let text = "t = { a = { b = 1 } }\nu = [\n  { c = 1 },\n  { d = 2 },\n]\n[v]\nw = { e = 3 }\n";
        let spans = Spans::new(text);
        assert_eq!(spans.key_line("t.a", "b"), Some(1));
        assert_eq!(spans.key_line("u[0]", "c"), Some(3));
        assert_eq!(spans.key_line("u[1]", "d"), Some(4));
        assert_eq!(spans.key_line("u[0]", "d"), None);
        assert_eq!(spans.key_line("v.w", "e"), Some(7));
        assert_eq!(spans.key_line("v", "w"), Some(7));
    }

    #[test]
    fn key_line_of_quoted_and_dotted_keys() {
        let text = "a.b.c = 1\n\n[t]\n\"quoted key\" = 1\n'lit' = 2\n\"mtu\" = 3\nx.y = 4\n  x . \"z\" = 5\n";
        let spans = Spans::new(text);
        assert_eq!(spans.key_line("a.b", "c"), Some(1));
        assert_eq!(spans.key_line("", "a"), Some(1));
        assert_eq!(spans.key_line("t", "quoted key"), Some(4));
        assert_eq!(spans.key_line("t", "lit"), Some(5));
        assert_eq!(spans.key_line("t", "mtu"), Some(6));
        assert_eq!(spans.key_line("t.x", "y"), Some(7));
        assert_eq!(spans.key_line("t.x", "z"), Some(8));
        // Not valid TOML: no lines.
        assert_eq!(Spans::new("[t]\nk = \n").key_line("t", "k"), None);
    }

    #[test]
    fn error_locations() {
        // A value on the line of the error names the key; the key itself (unknown field) does not.
        let text = "[eal]\nmain_core = 0\nmemory_mb = \"x\"\n[[vif]]\nid = 1\n[[vif]]\nid = 2\nbad = 3\n";
        let value = text.find("\"x\"").unwrap();
        assert_eq!(error_location(text, value..value + 3, "m"), (value, Some("eal.memory_mb".into())));
        let key = text.find("bad").unwrap();
        assert_eq!(error_location(text, key..key + 3, "m"), (key, Some("vif[1]".into())));
        // A whole table (a missing field) and a header (an unknown table).
        let entry = text.rfind("[[vif]]").unwrap();
        assert_eq!(error_location(text, entry..text.len(), "m"), (entry, Some("vif[1]".into())));
        assert_eq!(error_location(text, entry + 2..entry + 5, "m"), (entry + 2, None));
        // Not valid TOML: the text before the error is looked at.
        let text = "[eal]\nmain_core = 0\n[vrouter]\nrun_dir = \"/run\" x\n";
        let at = text.find(" x").unwrap() + 1;
        assert_eq!(error_location(text, at..at + 1, "m"), (at, Some("vrouter.run_dir".into())));
        // The top level: an inline table's key.
        let text = "eal = { main_core = \"0\" }\n";
        let at = text.find("\"0\"").unwrap();
        assert_eq!(error_location(text, at..at + 3, "m"), (at, Some("eal".into())));
    }
}
