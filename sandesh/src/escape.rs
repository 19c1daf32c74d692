//! XML text escaping as the Sandesh XML protocol does it.
//!
//! Writers replace exactly four characters in string values: `&` → `&amp;`, `'` → `&apos;`,
//! `<` → `&lt;`, `>` → `&gt;`. The double quote is **not** escaped (string values are element
//! text, never attribute values). Readers undo exactly these four entities and leave every other
//! `&…;` sequence as literal text (the reference decoder keeps `&quot;` as the six characters).
//!
//! [`unescape`] reproduces that lenient reader; [`unescape_strict`] is for our own collector and
//! tests, which accept only what a conforming writer produces and reject any other entity.

use std::borrow::Cow;
use thiserror::Error;

/// The four entities, as (character, entity) pairs.
const ENTITIES: [(char, &str); 4] = [('&', "&amp;"), ('\'', "&apos;"), ('<', "&lt;"), ('>', "&gt;")];

/// Longest entity name we look at when searching for the terminating `;` (for error reports).
const MAX_ENTITY_SCAN: usize = 32;

/// Why [`unescape_strict`] rejected a string.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UnescapeError {
    /// An `&…;` entity other than `&amp; &apos; &lt; &gt;` (this includes `&quot;` and numeric
    /// character references, which Sandesh writers never produce).
    #[error("unknown XML entity `{entity}` at byte {offset} (only &amp; &apos; &lt; &gt; are allowed)")]
    UnknownEntity {
        /// Byte offset of the `&`.
        offset: usize,
        /// The entity text, `&` through `;`.
        entity: String,
    },
    /// An `&` with no `;` close enough behind it to form an entity.
    #[error("unterminated `&` at byte {offset}")]
    Unterminated {
        /// Byte offset of the `&`.
        offset: usize,
    },
}

/// Escapes a string value for Sandesh XML text; borrows when nothing needs escaping.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.contains(['&', '\'', '<', '>']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    escape_into(&mut out, s);
    Cow::Owned(out)
}

/// Appends the escaped form of `s` to `out` (for writers building a message in one buffer).
pub fn escape_into(out: &mut String, s: &str) {
    let mut rest = s;
    while let Some(pos) = rest.find(['&', '\'', '<', '>']) {
        out.push_str(&rest[..pos]);
        // All four characters are one byte long.
        let entity = match rest.as_bytes()[pos] {
            b'&' => "&amp;",
            b'\'' => "&apos;",
            b'<' => "&lt;",
            _ => "&gt;",
        };
        out.push_str(entity);
        rest = &rest[pos + 1..];
    }
    out.push_str(rest);
}

/// If `s` (starting at an `&`) begins with one of the four entities, returns its character and
/// length.
fn known_entity(s: &str) -> Option<(char, usize)> {
    ENTITIES.iter().find(|(_, e)| s.starts_with(e)).map(|(c, e)| (*c, e.len()))
}

/// Lenient unescape, matching the reference readers: the four entities become their
/// characters, in a single left-to-right pass (so `&amp;lt;` becomes `&lt;`); anything else,
/// including unknown entities and stray `&`, is kept as it is.
pub fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        match known_entity(rest) {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Strict unescape: like [`unescape`], but any `&` that does not start one of the four
/// entities is an error.
pub fn unescape_strict(s: &str) -> Result<Cow<'_, str>, UnescapeError> {
    if !s.contains('&') {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        let offset = s.len() - rest.len() + pos;
        rest = &rest[pos..];
        let Some((c, len)) = known_entity(rest) else {
            // Report the whole `&name;` when there is a `;` nearby, else the bare `&`.
            let window = rest.char_indices().take_while(|(i, _)| *i <= MAX_ENTITY_SCAN);
            return Err(match window.filter(|(_, ch)| *ch == ';').map(|(i, _)| i).next() {
                Some(end) => UnescapeError::UnknownEntity { offset, entity: rest[..=end].to_owned() },
                None => UnescapeError::Unterminated { offset },
            });
        };
        out.push(c);
        rest = &rest[len..];
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_exactly_four_characters() {
        assert_eq!(escape(r#"a&b'c<d>e"f"#), r#"a&amp;b&apos;c&lt;d&gt;e"f"#);
        assert_eq!(escape("&&"), "&amp;&amp;");
        assert_eq!(escape("pass|mirror"), "pass|mirror");
        assert!(matches!(escape("default-domain:demo:net"), Cow::Borrowed(_)));
        // Non-ASCII passes through untouched (byte length is what the framing counts).
        assert_eq!(escape("vn-é<"), "vn-é&lt;");
    }

    #[test]
    fn escape_into_appends() {
        let mut out = String::from("<name>");
        escape_into(&mut out, "a<b");
        out.push_str("</name>");
        assert_eq!(out, "<name>a&lt;b</name>");
    }

    #[test]
    fn unescape_reverses_escape() {
        for s in ["", "plain", r#"a&b'c<d>e"f"#, "&amp;", "&lt;&gt;", "x&y;z", "é&ü"] {
            let e = escape(s);
            assert_eq!(unescape(&e), s);
            assert_eq!(unescape_strict(&e).unwrap(), s);
        }
    }

    #[test]
    fn unescape_is_single_pass() {
        assert_eq!(unescape("&amp;lt;"), "&lt;");
        assert_eq!(unescape_strict("&amp;lt;").unwrap(), "&lt;");
        assert_eq!(unescape("&amp;amp;"), "&amp;");
    }

    #[test]
    fn lenient_unescape_keeps_other_entities_literal() {
        assert_eq!(unescape("say &quot;hi&quot;"), "say &quot;hi&quot;");
        assert_eq!(unescape("&#39;&apos;"), "&#39;'");
        assert_eq!(unescape("a & b"), "a & b");
        assert_eq!(unescape("&"), "&");
        assert_eq!(unescape("&am"), "&am");
        assert!(matches!(unescape("no entities"), Cow::Borrowed(_)));
    }

    #[test]
    fn strict_unescape_rejects_unknown_entities() {
        assert_eq!(
            unescape_strict("say &quot;hi"),
            Err(UnescapeError::UnknownEntity { offset: 4, entity: "&quot;".into() })
        );
        assert_eq!(
            unescape_strict("&lt;&#39;"),
            Err(UnescapeError::UnknownEntity { offset: 4, entity: "&#39;".into() })
        );
        assert_eq!(unescape_strict("&AMP;"), Err(UnescapeError::UnknownEntity { offset: 0, entity: "&AMP;".into() }));
        assert_eq!(unescape_strict("a & b"), Err(UnescapeError::Unterminated { offset: 2 }));
        assert_eq!(unescape_strict("&amp"), Err(UnescapeError::Unterminated { offset: 0 }));
        assert_eq!(unescape_strict("é&"), Err(UnescapeError::Unterminated { offset: 2 }));
        assert_eq!(
            unescape_strict("&quot;").unwrap_err().to_string(),
            "unknown XML entity `&quot;` at byte 0 (only &amp; &apos; &lt; &gt; are allowed)"
        );
    }

    #[test]
    fn reference_example_string() {
        // A FlowLogData action string and a VN name as they appear in the reference frames:
        // nothing to escape, so the wire text equals the value.
        assert_eq!(escape("pass|mirror"), "pass|mirror");
        assert_eq!(escape("default-domain:demo:net"), "default-domain:demo:net");
        // An XML-looking analyzer name is carried as text.
        assert_eq!(escape("<b>x</b>"), "&lt;b&gt;x&lt;/b&gt;");
    }
}
