//! `mpls`: the vRouter's MPLS input label map (tf-vrouter's `mpls --dump` / `--get`,
//! utils/mpls.c), and the requests of `mpls --create` / `--delete`.

use std::fmt::Write as _;

use serde_json::{json, Value};
use vrouter_abi::control::LabelEntry;

use crate::program::to_json;

/// `mpls --dump` / `mpls --get`: the title, the column titles and one `%8d  %8d` line per
/// label.
pub fn render_labels(labels: &[LabelEntry]) -> String {
    let mut s = String::from("MPLS Input Label Map\n\n   Label    NextHop\n-------------------\n");
    for l in labels {
        let _ = writeln!(s, "{:>8}  {:>8}", l.label, l.nexthop);
    }
    s
}

/// `mpls --dump --json`: the `label_dump` entries as an array.
pub fn render_dump_json(labels: &[LabelEntry], pretty: bool) -> String {
    to_json(labels, pretty)
}

/// `mpls --get --json`: the entry as an object.
pub fn render_get_json(label: &LabelEntry, pretty: bool) -> String {
    to_json(label, pretty)
}

/// `label_set` of one label.
pub fn create_request(label: u32, nexthop: u32) -> Value {
    json!({"cmd": "label_set", "label": {"label": label, "nexthop": nexthop}})
}

/// `label_delete` of one label.
pub fn delete_request(label: u32) -> Value {
    json!({"cmd": "label_delete", "label": label})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_like_tf() {
        let out = render_labels(&[LabelEntry { label: 16, nexthop: 9 }, LabelEntry { label: 401003, nexthop: 51 }]);
        assert_eq!(
            out,
            "MPLS Input Label Map\n\n   Label    NextHop\n-------------------\n      16         9\n  401003        51\n"
        );
        assert_eq!(render_labels(&[]), "MPLS Input Label Map\n\n   Label    NextHop\n-------------------\n");
    }

    #[test]
    fn json_and_requests() {
        let l = LabelEntry { label: 16, nexthop: 9 };
        assert_eq!(render_get_json(&l, false), "{\"label\":16,\"nexthop\":9}\n");
        let back: Vec<LabelEntry> = serde_json::from_str(&render_dump_json(std::slice::from_ref(&l), true)).unwrap();
        assert_eq!(back, [l]);
        assert_eq!(create_request(16, 9), json!({"cmd":"label_set","label":{"label":16,"nexthop":9}}));
        assert_eq!(delete_request(16), json!({"cmd":"label_delete","label":16}));
    }
}
