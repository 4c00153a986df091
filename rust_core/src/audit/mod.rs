//! The audit trail's record hash: SHA-256 over the canonical JSON of a record's fields.
//!
//! The canonical encoding is one JSON object with its keys sorted (`action`, `actor`, `created_at`,
//! `data`, `event_id`, `kind`, `prev_hash`, `seq`, `target`, `team_id`), no whitespace, strings escaped
//! as JSON requires (`"`, `\` and control characters; everything else, non-ASCII included, as UTF-8),
//! `data` embedded verbatim (the stored JSON text), and `target`/`team_id` as `null` when absent. It is
//! byte for byte what the Python reference (`ferrogate.store.audit`, orjson with sorted keys) writes, so
//! chains written by either verify with either (tested on both sides).
//!
//! Data-plane records are stored in blocks, one row per batch ([`chain_block`]): each record of a block has
//! the same hash as the row it replaces, so one chain runs through rows and blocks alike.

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

/// Whether any byte of `bytes` must be escaped in a JSON string (`"`, `\\`, a control character): eight bytes
/// at a time (the usual text, ids and hashes, has none and is copied whole).
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // a byte below 0x20 (x - 0x20 borrows into its high bit, unless the byte is >= 0x80), `"` or `\\`
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGHS;
        if control
            | has_zero(x ^ (ONES * u64::from(b'"')))
            | has_zero(x ^ (ONES * u64::from(b'\\')))
            != 0
        {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

fn string(out: &mut Vec<u8>, value: &str) {
    // what JSON requires and orjson does: `"`, `\`, \b \t \n \f \r, other controls as \u00XX (lower-case
    // hex); every other character (DEL, non-ASCII) as its UTF-8. Byte-wise is safe: no byte of a multi-byte
    // UTF-8 sequence is below 0x80.
    out.push(b'"');
    let bytes = value.as_bytes();
    if !needs_escape(bytes) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
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

/// A value of a canonical object: a JSON string (`null` when absent), or JSON text written verbatim.
#[derive(Clone, Copy)]
enum Value<'a> {
    Text(Option<&'a str>),
    Raw(&'a str),
}

/// Writes `{"key":value,...}`: the caller gives the fields in sorted key order.
fn object(out: &mut Vec<u8>, fields: &[(&str, Value<'_>)]) {
    for (i, (key, value)) in fields.iter().enumerate() {
        out.push(if i == 0 { b'{' } else { b',' });
        out.push(b'"'); // keys are our own names: nothing in them to escape
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        match value {
            Value::Text(Some(text)) => string(out, text),
            Value::Text(None) => out.extend_from_slice(b"null"),
            Value::Raw(raw) => out.extend_from_slice(raw.as_bytes()),
        }
    }
    out.push(b'}');
}

/// Writes the values of `fields` alone as a JSON array, `[value,...]` (their keys left out).
fn array(out: &mut Vec<u8>, fields: &[(&str, Value<'_>)]) {
    out.push(b'[');
    for (i, (_, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match value {
            Value::Text(Some(text)) => string(out, text),
            Value::Text(None) => out.extend_from_slice(b"null"),
            Value::Raw(raw) => out.extend_from_slice(raw.as_bytes()),
        }
    }
    out.push(b']');
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
    let mut out = Vec::with_capacity(record.data.len() + 256);
    canonical_into(&mut out, record);
    out
}

/// Appends [`canonical_bytes`] of `record` to `out`.
fn canonical_into(out: &mut Vec<u8>, record: &Record<'_>) {
    let mut seq = itoa::Buffer::new();
    object(
        out,
        &[
            ("action", Value::Text(Some(record.action))),
            ("actor", Value::Text(Some(record.actor))),
            ("created_at", Value::Text(Some(record.created_at))),
            ("data", Value::Raw(record.data)),
            ("event_id", Value::Text(Some(record.event_id))),
            ("kind", Value::Text(Some(record.kind))),
            ("prev_hash", Value::Text(Some(record.prev_hash))),
            ("seq", Value::Raw(seq.format(record.seq))),
            ("target", Value::Text(record.target)),
            ("team_id", Value::Text(record.team_id)),
        ],
    );
}

/// SHA-256 of [`canonical_bytes`] as 64 lower-case hex digits.
pub fn record_hash(record: &Record<'_>) -> String {
    let hex = hash_with(&mut Vec::new(), record);
    String::from_utf8(hex.to_vec()).unwrap_or_default()
}

/// [`record_hash`] as bytes, encoding the record into `scratch` (cleared first: one buffer serves a block).
fn hash_with(scratch: &mut Vec<u8>, record: &Record<'_>) -> [u8; 64] {
    scratch.clear();
    canonical_into(scratch, record);
    let digest = Sha256::digest(&scratch[..]);
    let mut hex = [0u8; 64];
    for (i, byte) in digest.into_iter().enumerate() {
        hex[2 * i] = HEX[usize::from(byte >> 4)];
        hex[2 * i + 1] = HEX[usize::from(byte & 0x0f)];
    }
    hex
}

/// One record of a block: the fields of a [`Record`] but `seq`, `kind` and `prev_hash`, which the block
/// gives (consecutive numbers, `request`, the hash of the record before).
#[derive(Debug, Clone, Copy)]
pub struct BlockEntry<'a> {
    /// The event's unique id (the request id).
    pub event_id: &'a str,
    /// The fixed-width UTC stamp.
    pub created_at: &'a str,
    /// The virtual key's id (`anonymous` without one).
    pub actor: &'a str,
    /// The data-plane action, e.g. `chat.completions`.
    pub action: &'a str,
    /// The model requested.
    pub target: Option<&'a str>,
    /// The key's team.
    pub team_id: Option<&'a str>,
    /// The canonical JSON text of the event's data (embedded verbatim).
    pub data: &'a str,
    /// The values of `data` as a JSON array in [`REQUEST_DATA_KEYS`] order, when `data` is a request's
    /// ([`request_data_values`]): the record is then stored compact (see [`chain_block`]).
    pub values: Option<&'a str>,
}

/// The `kind` of every record of a block.
pub const BLOCK_KIND: &str = "request";

/// Chains `entries` after a record whose hash is `prev_hash`, numbering them from `first_seq`: the block's
/// text, a JSON array with one object per record (sorted keys: `action`, `actor`, `created_at`, `data`,
/// `event_id`, `hash`, `seq`, `target`, `team_id`; `kind` and `prev_hash` are left out, the block implies
/// them), and the hash of its last record (`prev_hash` itself when `entries` is empty). Each record's hash is
/// [`record_hash`] of its [`Record`], exactly as if it were stored as a row.
///
/// ```
/// use _core::audit::{chain_block, record_hash, BlockEntry, Record};
/// let e = BlockEntry { event_id: "r1", created_at: "2025-01-01T00:00:00.000000Z", actor: "k",
///                      action: "chat.completions", target: Some("m"), team_id: None, data: "{}", values: None };
/// let (text, last) = chain_block(7, "00", &[e]);
/// let hash = record_hash(&Record { seq: 7, event_id: "r1", created_at: e.created_at, kind: "request",
///     actor: "k", action: e.action, target: Some("m"), team_id: None, data: "{}", prev_hash: "00" });
/// assert_eq!(last, hash);
/// assert!(String::from_utf8(text).unwrap().contains(&format!(r#""hash":"{hash}","seq":7,"#)));
/// ```
pub fn chain_block(
    first_seq: i64,
    prev_hash: &str,
    entries: &[BlockEntry<'_>],
) -> (Vec<u8>, String) {
    let size: usize = entries.iter().map(|e| e.data.len() + 256).sum();
    let mut out = Vec::with_capacity(size + 2);
    out.push(b'[');
    let mut scratch = Vec::with_capacity(1024);
    let mut prev: [u8; 64];
    let mut prev_text = prev_hash;
    let mut number = itoa::Buffer::new();
    for (i, entry) in entries.iter().enumerate() {
        let seq = first_seq + i64::try_from(i).unwrap_or(i64::MAX - first_seq);
        let record = Record {
            seq,
            event_id: entry.event_id,
            created_at: entry.created_at,
            kind: BLOCK_KIND,
            actor: entry.actor,
            action: entry.action,
            target: entry.target,
            team_id: entry.team_id,
            data: entry.data,
            prev_hash: prev_text,
        };
        let hash = hash_with(&mut scratch, &record);
        if i > 0 {
            out.push(b',');
        }
        if let Some(values) = entry.values {
            let fields = [
                ("seq", Value::Raw(number.format(seq))),
                ("event_id", Value::Text(Some(entry.event_id))),
                ("created_at", Value::Text(Some(entry.created_at))),
                ("actor", Value::Text(Some(entry.actor))),
                ("action", Value::Text(Some(entry.action))),
                ("target", Value::Text(entry.target)),
                ("team_id", Value::Text(entry.team_id)),
                ("data", Value::Raw(values)),
                (
                    "hash",
                    Value::Text(Some(std::str::from_utf8(&hash).unwrap_or_default())),
                ),
            ];
            array(&mut out, &fields);
            prev = hash;
            prev_text = std::str::from_utf8(&prev).unwrap_or_default();
            continue;
        }
        object(
            &mut out,
            &[
                ("action", Value::Text(Some(entry.action))),
                ("actor", Value::Text(Some(entry.actor))),
                ("created_at", Value::Text(Some(entry.created_at))),
                ("data", Value::Raw(entry.data)),
                ("event_id", Value::Text(Some(entry.event_id))),
                (
                    "hash",
                    Value::Text(Some(std::str::from_utf8(&hash).unwrap_or_default())),
                ),
                ("seq", Value::Raw(number.format(seq))),
                ("target", Value::Text(entry.target)),
                ("team_id", Value::Text(entry.team_id)),
            ],
        );
        prev = hash;
        prev_text = std::str::from_utf8(&prev).unwrap_or_default();
    }
    out.push(b']');
    (out, prev_text.to_owned())
}

/// The facts of one data-plane request that its record's `data` holds (beside the record's own fields:
/// request id, key, model, team), in the order of their keys.
#[derive(Debug, Clone, Copy)]
pub struct RequestData<'a> {
    /// Cached prompt tokens.
    pub cached_tokens: i64,
    /// The client's own `x-request-id`, when it sent one.
    pub client_request_id: Option<&'a str>,
    /// Completion tokens.
    pub completion_tokens: i64,
    /// The request's cost in US dollars (`None`: the model has no price).
    pub cost_usd: Option<f64>,
    /// Whether the gateway counted the tokens itself (the upstream reported none).
    pub counted: bool,
    /// The error code the client received, if any.
    pub error: Option<&'a str>,
    /// Total latency in milliseconds.
    pub latency_ms: f64,
    /// Prompt tokens.
    pub prompt_tokens: i64,
    /// Reasoning tokens.
    pub reasoning_tokens: i64,
    /// The HTTP status of the answer.
    pub status: i64,
    /// Whether the answer was streamed.
    pub stream: bool,
    /// The W3C trace id.
    pub trace_id: Option<&'a str>,
    /// The deployment's upstream.
    pub upstream: Option<&'a str>,
    /// The model the upstream was asked for.
    pub upstream_model: Option<&'a str>,
    /// The key's user, if any.
    pub user_id: Option<&'a str>,
}

/// Writes `data` as canonical JSON (sorted keys, `"content":false` among them): the bytes orjson writes for
/// the same object with `OPT_SORT_KEYS` (integers as itoa writes them, floats as zmij, a non-finite float as
/// `null`), so a record's `data` reads back and re-encodes to the same text.
///
/// ```
/// use _core::audit::{request_data_json, RequestData};
/// let d = RequestData { cached_tokens: 0, client_request_id: None, completion_tokens: 5, cost_usd: Some(0.00001),
///     counted: false, error: None, latency_ms: 12.5, prompt_tokens: 9, reasoning_tokens: 0, status: 200,
///     stream: true, trace_id: Some("ab"), upstream: Some("mock"), upstream_model: None, user_id: None };
/// let mut out = Vec::new();
/// request_data_json(&mut out, &d);
/// assert_eq!(String::from_utf8(out).unwrap(), concat!(
///     r#"{"cached_tokens":0,"client_request_id":null,"completion_tokens":5,"content":false,"cost_usd":0.00001,"#,
///     r#""counted":false,"error":null,"latency_ms":12.5,"prompt_tokens":9,"reasoning_tokens":0,"status":200,"#,
///     r#""stream":true,"trace_id":"ab","upstream":"mock","upstream_model":null,"user_id":null}"#));
/// ```
pub fn request_data_json(out: &mut Vec<u8>, data: &RequestData<'_>) {
    request_data(out, data, true);
}

/// The values of [`request_data_json`]'s object alone, in its key order ([`REQUEST_DATA_KEYS`]), as a JSON
/// array: how a compact block record stores them (the object is rebuilt from the keys to read or verify it).
pub fn request_data_values(out: &mut Vec<u8>, data: &RequestData<'_>) {
    request_data(out, data, false);
}

/// The keys of a request record's `data`, in their (sorted) order.
pub const REQUEST_DATA_KEYS: [&str; 16] = [
    "cached_tokens",
    "client_request_id",
    "completion_tokens",
    "content",
    "cost_usd",
    "counted",
    "error",
    "latency_ms",
    "prompt_tokens",
    "reasoning_tokens",
    "status",
    "stream",
    "trace_id",
    "upstream",
    "upstream_model",
    "user_id",
];

fn request_data(out: &mut Vec<u8>, data: &RequestData<'_>, keys: bool) {
    let mut ints = [
        itoa::Buffer::new(),
        itoa::Buffer::new(),
        itoa::Buffer::new(),
        itoa::Buffer::new(),
    ];
    let [cached, completion, prompt, reasoning] = &mut ints;
    let mut status = itoa::Buffer::new();
    let (mut cost, mut latency) = (zmij::Buffer::new(), zmij::Buffer::new());
    fn float(buffer: &mut zmij::Buffer, value: f64) -> Value<'_> {
        if value.is_finite() {
            Value::Raw(buffer.format_finite(value))
        } else {
            Value::Text(None) // orjson writes NaN and infinities as null
        }
    }
    let cost_value = match data.cost_usd {
        Some(value) => float(&mut cost, value),
        None => Value::Text(None),
    };
    let flag = |value: bool| Value::Raw(if value { "true" } else { "false" });
    let fields = [
        (
            "cached_tokens",
            Value::Raw(cached.format(data.cached_tokens)),
        ),
        ("client_request_id", Value::Text(data.client_request_id)),
        (
            "completion_tokens",
            Value::Raw(completion.format(data.completion_tokens)),
        ),
        ("content", Value::Raw("false")),
        ("cost_usd", cost_value),
        ("counted", flag(data.counted)),
        ("error", Value::Text(data.error)),
        ("latency_ms", float(&mut latency, data.latency_ms)),
        (
            "prompt_tokens",
            Value::Raw(prompt.format(data.prompt_tokens)),
        ),
        (
            "reasoning_tokens",
            Value::Raw(reasoning.format(data.reasoning_tokens)),
        ),
        ("status", Value::Raw(status.format(data.status))),
        ("stream", flag(data.stream)),
        ("trace_id", Value::Text(data.trace_id)),
        ("upstream", Value::Text(data.upstream)),
        ("upstream_model", Value::Text(data.upstream_model)),
        ("user_id", Value::Text(data.user_id)),
    ];
    if keys {
        object(out, &fields);
    } else {
        array(out, &fields);
    }
}

/// A UTC time's fields as the fixed-width stamp (`2025-01-31T12:00:00.123456Z`, what
/// `ferrogate.store.fields.stamp` writes); `None` when a field is out of range.
///
/// ```
/// use _core::audit::stamp;
/// assert_eq!(stamp([2025, 1, 31, 12, 0, 0, 5]).as_deref(), Some("2025-01-31T12:00:00.000005Z"));
/// assert_eq!(stamp([2025, 13, 1, 0, 0, 0, 0]), None);
/// ```
pub fn stamp(fields: [i64; 7]) -> Option<String> {
    let [year, month, day, hour, minute, second, micro] = fields;
    let limits = [
        (year, 1, 9999),
        (month, 1, 12),
        (day, 1, 31),
        (hour, 0, 23),
        (minute, 0, 59),
    ];
    let more = [(second, 0, 59), (micro, 0, 999_999)];
    if !limits
        .iter()
        .chain(&more)
        .all(|&(v, lo, hi)| (lo..=hi).contains(&v))
    {
        return None;
    }
    let mut out = [0u8; 27];
    let mut put = |at: usize, width: usize, mut value: i64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + u8::try_from(value % 10).unwrap_or(0);
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, hour);
    put(14, 2, minute);
    put(17, 2, second);
    put(20, 6, micro);
    for (at, sep) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (26, b'Z'),
    ] {
        out[at] = sep;
    }
    String::from_utf8(out.to_vec()).ok()
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
    fn needs_escape_finds_every_special_byte_anywhere() {
        for len in 0..20 {
            let plain = "a\u{7f}é".repeat(len);
            assert!(!needs_escape(plain.as_bytes()), "{plain:?}");
            for at in 0..=plain.len() {
                for special in ["\"", "\\", "\u{0}", "\u{1f}", "\n"] {
                    if plain.is_char_boundary(at) {
                        let text = format!("{}{special}{}", &plain[..at], &plain[at..]);
                        assert!(needs_escape(text.as_bytes()), "{text:?}");
                    }
                }
            }
        }
        assert!(!needs_escape(" ~\u{80}\u{ff}".as_bytes()));
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
    fn a_block_chains_its_records_as_rows_would_be() {
        let entries = [
            BlockEntry {
                event_id: "r\"1",
                created_at: "2025-01-31T12:00:00.000000Z",
                actor: "key_1",
                action: "chat.completions",
                target: None,
                team_id: Some("t"),
                data: r#"{"a":1}"#,
                values: None,
            },
            BlockEntry {
                event_id: "r2",
                created_at: "2025-01-31T12:00:01.000000Z",
                actor: "key_2",
                action: "chat.completions",
                target: Some("m"),
                team_id: None,
                data: "{}",
                values: Some("[1,null]"),
            },
        ];
        let (text, last) = chain_block(41, "ab", &entries);
        let text = String::from_utf8(text).unwrap();
        let mut prev = "ab".to_owned();
        for (i, e) in entries.iter().enumerate() {
            let seq = 41 + i64::try_from(i).unwrap();
            prev = record_hash(&Record {
                seq,
                event_id: e.event_id,
                created_at: e.created_at,
                kind: "request",
                actor: e.actor,
                action: e.action,
                target: e.target,
                team_id: e.team_id,
                data: e.data,
                prev_hash: &prev,
            });
            let stored = if e.values.is_some() {
                format!(
                    r#"[{seq},"r2","2025-01-31T12:00:01.000000Z","key_2","chat.completions","m",null,[1,null],"{prev}"]"#
                )
            } else {
                format!(r#""hash":"{prev}","seq":{seq},"#)
            };
            assert!(text.contains(&stored), "{text}");
        }
        assert_eq!(last, prev);
        assert!(text.starts_with(r#"[{"action":"chat.completions","actor":"key_1","created_at":"#));
        assert!(
            text.contains(r#""data":{"a":1},"event_id":"r\"1","#),
            "{text}"
        );
        assert!(text.ends_with("\"]]"), "{text}"); // the compact record last
        assert_eq!(chain_block(1, "ab", &[]), (b"[]".to_vec(), "ab".to_owned()));
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
