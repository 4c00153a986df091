//! The audit trail's record hash: SHA-256 over the canonical JSON of a record's fields.
//!
//! The canonical encoding is one JSON object with its keys sorted (`action`, `actor`, `created_at`,
//! `data`, `event_id`, `kind`, `prev_hash`, `seq`, `target`, `team_id`), no whitespace, strings escaped
//! as JSON requires (`"`, `\` and control characters; everything else, non-ASCII included, as UTF-8),
//! `data` embedded verbatim (the stored JSON text), and `target`/`team_id` as `null` when absent. It is
//! byte for byte what the Python reference (`ferrogate.store.audit`, orjson with sorted keys) writes, so
//! chains written by either verify with either (tested on both sides).

use sha2::{Digest, Sha256};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The fields of one audit record that its hash covers (`created_at` as the fixed-width UTC stamp).
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The record's place in the chain (1, 2, 3, ...).
    pub seq: i64,
    /// The event's unique id.
    pub event_id: &'a str,
    /// The fixed-width UTC stamp, e.g. `2025-01-31T12:00:00.000000Z`.
    pub created_at: &'a str,
    /// `admin` or `request`.
    pub kind: &'a str,
    /// Who acted: a key id, `master`, `cli`...
    pub actor: &'a str,
    /// What was done, e.g. `team.create` or `chat.completions`.
    pub action: &'a str,
    /// The object acted on, if any.
    pub target: Option<&'a str>,
    /// The team it belongs to, if any.
    pub team_id: Option<&'a str>,
    /// The stored JSON text of the event's data (embedded verbatim).
    pub data: &'a str,
    /// The hash of the record before (64 zeros for the first).
    pub prev_hash: &'a str,
}

fn string(out: &mut Vec<u8>, value: &str) {
    // what JSON requires and orjson does: `"`, `\`, \b \t \n \f \r, other controls as \u00XX (lower-case
    // hex); every other character (DEL, non-ASCII) as its UTF-8. Byte-wise is safe: no byte of a multi-byte
    // UTF-8 sequence is below 0x80.
    out.push(b'"');
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let short: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0x0f)]);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The canonical JSON bytes of `record` (what [`record_hash`] hashes).
///
/// ```
/// use _core::audit::{canonical_bytes, Record};
/// let r = Record { seq: 1, event_id: "e", created_at: "2025-01-01T00:00:00.000000Z", kind: "admin",
///                  actor: "a", action: "x", target: None, team_id: None, data: "{}", prev_hash: "0" };
/// assert_eq!(String::from_utf8(canonical_bytes(&r)).unwrap(),
///     r#"{"action":"x","actor":"a","created_at":"2025-01-01T00:00:00.000000Z","data":{},"event_id":"e","kind":"admin","prev_hash":"0","seq":1,"target":null,"team_id":null}"#);
/// ```
pub fn canonical_bytes(record: &Record<'_>) -> Vec<u8> {
    let seq = record.seq.to_string();
    // (key, value) in sorted key order; `Err` values are written verbatim (JSON already), `Ok` as strings
    let fields: [(&str, Result<Option<&str>, &str>); 10] = [
        ("action", Ok(Some(record.action))),
        ("actor", Ok(Some(record.actor))),
        ("created_at", Ok(Some(record.created_at))),
        ("data", Err(record.data)),
        ("event_id", Ok(Some(record.event_id))),
        ("kind", Ok(Some(record.kind))),
        ("prev_hash", Ok(Some(record.prev_hash))),
        ("seq", Err(&seq)),
        ("target", Ok(record.target)),
        ("team_id", Ok(record.team_id)),
    ];
    let mut out = Vec::with_capacity(record.data.len() + 256);
    for (i, (key, value)) in fields.into_iter().enumerate() {
        out.push(if i == 0 { b'{' } else { b',' });
        string(&mut out, key);
        out.push(b':');
        match value {
            Ok(Some(text)) => string(&mut out, text),
            Ok(None) => out.extend_from_slice(b"null"),
            Err(raw) => out.extend_from_slice(raw.as_bytes()),
        }
    }
    out.push(b'}');
    out
}

/// SHA-256 of [`canonical_bytes`] as 64 lower-case hex digits.
pub fn record_hash(record: &Record<'_>) -> String {
    let digest = Sha256::digest(canonical_bytes(record));
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(HEX[usize::from(byte >> 4)] as char);
        hex.push(HEX[usize::from(byte & 0x0f)] as char);
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(event_id: &'a str, target: Option<&'a str>) -> Record<'a> {
        Record {
            seq: 12,
            event_id,
            created_at: "2025-01-31T12:00:00.000000Z",
            kind: "request",
            actor: "key_1",
            action: "chat.completions",
            target,
            team_id: None,
            data: r#"{"a":1}"#,
            prev_hash: "0000",
        }
    }

    #[test]
    fn escapes_like_json() {
        let text = String::from_utf8(canonical_bytes(&record(
            "e\"\\\u{1}\n\u{7f}é\u{2028}",
            Some("m"),
        )))
        .unwrap();
        assert!(text.contains(r#""event_id":"e\"\\\u0001\n"#), "{text}");
        assert!(text.contains("\u{7f}é\u{2028}\""), "{text}");
        assert!(text.contains(r#""target":"m","team_id":null}"#), "{text}");
    }

    #[test]
    fn hash_is_sha256_hex_of_the_canonical_bytes() {
        let r = record("e", None);
        let hash = record_hash(&r);
        assert_eq!(hash.len(), 64);
        assert!(hash
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(hash, record_hash(&record("f", None)));
    }
}
