//! Fuzzing the audit encoder (client-influenced strings: model names, client request ids, error
//! codes): any text gives valid canonical JSON, escaped exactly as serde_json (and orjson)
//! escape it, that reads back to the same values; blocks chain their records as rows would; the
//! stamp refuses out-of-range fields instead of panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use _core::audit::{
    canonical_bytes, chain_block, record_hash, request_data_json, request_data_values, stamp,
    BlockEntry, Record, RequestData, REQUEST_DATA_KEYS,
};
use common::{arb_json, arb_text, config};
use proptest::prelude::*;
use serde_json::value::RawValue;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Any text: the hostile samples, and any Unicode (controls, DEL, U+2028, astral planes).
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        arb_text(),
        any::<String>(),
        "[\\x00-\\x1f\"\\\\\\x7f]{0,16}"
    ]
}

#[derive(Debug, Clone)]
struct Fields {
    seq: i64,
    event_id: String,
    created_at: String,
    kind: String,
    actor: String,
    action: String,
    target: Option<String>,
    team_id: Option<String>,
    data: String,
    prev_hash: String,
}

fn arb_fields() -> impl Strategy<Value = Fields> {
    (
        any::<i64>(),
        (any_text(), any_text(), any_text(), any_text(), any_text()),
        (prop::option::of(any_text()), prop::option::of(any_text())),
        arb_json(3),
        any_text(),
    )
        .prop_map(
            |(
                seq,
                (event_id, created_at, kind, actor, action),
                (target, team_id),
                data,
                prev_hash,
            )| Fields {
                seq,
                event_id,
                created_at,
                kind,
                actor,
                action,
                target,
                team_id,
                data: data.to_string(),
                prev_hash,
            },
        )
}

impl Fields {
    fn record(&self) -> Record<'_> {
        Record {
            seq: self.seq,
            event_id: &self.event_id,
            created_at: &self.created_at,
            kind: &self.kind,
            actor: &self.actor,
            action: &self.action,
            target: self.target.as_deref(),
            team_id: self.team_id.as_deref(),
            data: &self.data,
            prev_hash: &self.prev_hash,
        }
    }

    /// The canonical bytes built independently: sorted keys, serde_json's own string escaping.
    fn expected(&self) -> String {
        let text = |value: &str| serde_json::to_string(value).unwrap();
        let optional = |value: &Option<String>| value.as_deref().map_or("null".to_owned(), text);
        format!(
            r#"{{"action":{},"actor":{},"created_at":{},"data":{},"event_id":{},"kind":{},"prev_hash":{},"seq":{},"target":{},"team_id":{}}}"#,
            text(&self.action),
            text(&self.actor),
            text(&self.created_at),
            self.data,
            text(&self.event_id),
            text(&self.kind),
            text(&self.prev_hash),
            self.seq,
            optional(&self.target),
            optional(&self.team_id),
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Integers, texts, cost, latency and flags of one request's data.
type DataParts = (Vec<i64>, Vec<Option<String>>, Option<f64>, f64, Vec<bool>);

fn arb_request_data() -> impl Strategy<Value = DataParts> {
    (
        prop::collection::vec(any::<i64>(), 5),
        prop::collection::vec(prop::option::of(any_text()), 5),
        prop::option::of(any::<f64>()),
        any::<f64>(),
        prop::collection::vec(any::<bool>(), 2),
    )
}

proptest! {
    #![proptest_config(config(512))]

    /// Any strings: the canonical bytes are exactly serde_json's encoding with sorted keys, read
    /// back to the same values, and the hash is SHA-256 of those bytes.
    #[test]
    fn canonical_bytes_are_json_and_escaped_like_serde(fields in arb_fields()) {
        let record = fields.record();
        let bytes = canonical_bytes(&record);
        let text = String::from_utf8(bytes.clone()).unwrap();
        prop_assert_eq!(&text, &fields.expected());
        let back: BTreeMap<String, Value> = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(back["event_id"].as_str(), Some(fields.event_id.as_str()));
        prop_assert_eq!(back["actor"].as_str(), Some(fields.actor.as_str()));
        prop_assert_eq!(back["target"].as_str(), fields.target.as_deref());
        prop_assert_eq!(record_hash(&record), hex(&Sha256::digest(&bytes)));
    }

    /// A block of records with any strings: valid JSON whose records carry, in order, the hash
    /// each would have as a row, chained from `prev_hash`.
    #[test]
    fn blocks_chain_like_rows(
        entries in prop::collection::vec((arb_fields(), any::<bool>()), 0..6),
        first_seq in 1i64..1_000_000_000_000,
        prev in any_text(),
    ) {
        let values: Vec<Option<String>> = entries
            .iter()
            .map(|(f, compact)| compact.then(|| format!("[{},{}]", serde_json::to_string(&f.actor).unwrap(), f.data)))
            .collect();
        let block: Vec<BlockEntry<'_>> = entries
            .iter()
            .zip(&values)
            .map(|((f, _), values)| BlockEntry {
                event_id: &f.event_id,
                created_at: &f.created_at,
                actor: &f.actor,
                action: &f.action,
                target: f.target.as_deref(),
                team_id: f.team_id.as_deref(),
                data: &f.data,
                values: values.as_deref(),
            })
            .collect();
        let (text, last) = chain_block(first_seq, &prev, &block);
        let rows: Vec<Value> = serde_json::from_slice(&text).unwrap();
        prop_assert_eq!(rows.len(), block.len());
        let mut hash = prev.clone();
        for (i, (entry, row)) in block.iter().zip(&rows).enumerate() {
            let seq = first_seq + i as i64;
            hash = record_hash(&Record {
                seq,
                event_id: entry.event_id,
                created_at: entry.created_at,
                kind: "request",
                actor: entry.actor,
                action: entry.action,
                target: entry.target,
                team_id: entry.team_id,
                data: entry.data,
                prev_hash: &hash,
            });
            let (stored_hash, stored_seq, stored_id) = match row {
                Value::Array(items) => (&items[8], &items[0], &items[1]),
                _ => (&row["hash"], &row["seq"], &row["event_id"]),
            };
            prop_assert_eq!(stored_hash.as_str(), Some(hash.as_str()));
            prop_assert_eq!(stored_seq.as_i64(), Some(seq));
            prop_assert_eq!(stored_id.as_str(), Some(entry.event_id));
        }
        prop_assert_eq!(last, hash);
    }

    /// Request data with any strings and any numbers (NaN, infinities, extremes): valid JSON
    /// with sorted keys that reads back to the same values; the compact values line up with
    /// the keys.
    #[test]
    fn request_data_reads_back((ints, texts, cost, latency, flags) in arb_request_data()) {
        let data = RequestData {
            cached_tokens: ints[0],
            client_request_id: texts[0].as_deref(),
            completion_tokens: ints[1],
            cost_usd: cost,
            counted: flags[0],
            error: texts[1].as_deref(),
            latency_ms: latency,
            prompt_tokens: ints[2],
            reasoning_tokens: ints[3],
            status: ints[4],
            stream: flags[1],
            trace_id: texts[2].as_deref(),
            upstream: texts[3].as_deref(),
            upstream_model: texts[4].as_deref(),
            user_id: None,
        };
        let mut object = Vec::new();
        request_data_json(&mut object, &data);
        let raw: BTreeMap<String, &RawValue> = serde_json::from_slice(&object).unwrap();
        prop_assert_eq!(raw.keys().map(String::as_str).collect::<Vec<_>>(), REQUEST_DATA_KEYS.to_vec());
        let text = |key: &str| serde_json::from_str::<Option<String>>(raw[key].get()).unwrap();
        prop_assert_eq!(text("client_request_id"), data.client_request_id.map(str::to_owned));
        prop_assert_eq!(text("upstream_model"), data.upstream_model.map(str::to_owned));
        prop_assert_eq!(raw["prompt_tokens"].get().parse::<i64>().unwrap(), data.prompt_tokens);
        prop_assert_eq!(raw["status"].get().parse::<i64>().unwrap(), data.status);
        let float = |key: &str, value: f64| -> Result<(), TestCaseError> {
            if value.is_finite() {
                prop_assert_eq!(raw[key].get().parse::<f64>().unwrap(), value);
            } else {
                prop_assert_eq!(raw[key].get(), "null");
            }
            Ok(())
        };
        float("latency_ms", latency)?;
        match cost {
            Some(cost) => float("cost_usd", cost)?,
            None => prop_assert_eq!(raw["cost_usd"].get(), "null"),
        }
        let mut values = Vec::new();
        request_data_values(&mut values, &data);
        let values: Vec<&RawValue> = serde_json::from_slice(&values).unwrap();
        let in_order: Vec<&str> = REQUEST_DATA_KEYS.iter().map(|key| raw[*key].get()).collect();
        prop_assert_eq!(values.iter().map(|v| v.get()).collect::<Vec<_>>(), in_order);
    }

    /// Any seven integers: a 27-byte stamp when every field is in range, else `None`.
    #[test]
    fn stamps_refuse_out_of_range_fields(
        fields in prop_oneof![
            prop::array::uniform7(any::<i64>()),
            (1i64..=9999, 0i64..=13, 0i64..=32, -1i64..=24, -1i64..=60, -1i64..=60, -1i64..=1_000_000)
                .prop_map(|(y, mo, d, h, mi, s, us)| [y, mo, d, h, mi, s, us]),
        ],
    ) {
        let ranges = [(1, 9999), (1, 12), (1, 31), (0, 23), (0, 59), (0, 59), (0, 999_999)];
        let valid = fields.iter().zip(ranges).all(|(v, (lo, hi))| (lo..=hi).contains(v));
        match stamp(fields) {
            Some(text) => {
                prop_assert!(valid);
                let expected = format!(
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                    fields[0], fields[1], fields[2], fields[3], fields[4], fields[5], fields[6]
                );
                prop_assert_eq!(text, expected);
            }
            None => prop_assert!(!valid),
        }
    }
}

#[test]
fn huge_strings_are_encoded_whole() {
    let big = "\u{1}\"é".repeat(200_000);
    let fields = Fields {
        seq: i64::MIN,
        event_id: big.clone(),
        created_at: String::new(),
        kind: "request".to_owned(),
        actor: big,
        action: String::new(),
        target: None,
        team_id: None,
        data: "{}".to_owned(),
        prev_hash: String::new(),
    };
    let bytes = canonical_bytes(&fields.record());
    assert_eq!(String::from_utf8(bytes).unwrap(), fields.expected());
}
