//! Scanning a JSON request body: every string value (not object keys) is unescaped and scanned,
//! each finding carries its path in the document (`messages[2].content[0].text`), and a redaction
//! re-encodes only the string tokens it changes, every other byte of the body left as it was.
//!
//! Opaque binary is skipped: strings starting with `data:` (data URLs) and the string values of
//! keys `data`, `file_data`, `signature` and `encrypted_content`. A body without findings costs
//! one walk, a copy of its strings' text and one prefilter pass over all of them (a string with
//! no keyword and no required bytes of a rule cannot hold a finding): only strings with a hit
//! are scanned, and paths are rendered (a second walk) only when something is found.

use jiter::{Jiter, Peek};

use super::scanner::{Scanner, Scratch, BLOCK, REDACT};
use super::Finding;
use crate::error::ScanError;

/// Keys whose string values are opaque binary (base64 files, audio, signatures, encrypted state).
const OPAQUE_KEYS: [&[u8]; 4] = [b"data", b"file_data", b"signature", b"encrypted_content"];

/// Bound on the nesting of arrays and objects.
const MAX_DEPTH: usize = 256;

/// A finding in a JSON body: its rule, the path of its string, and its span in the unescaped string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonFinding {
    /// Index of the rule in the scanner.
    pub rule: usize,
    /// Path of the string value, e.g. `messages[1].tool_calls[0].function.arguments`
    /// (`""` for a document that is one string).
    pub path: String,
    /// Byte offset of the secret in the unescaped string.
    pub start: usize,
    /// Byte offset just past the secret in the unescaped string.
    pub end: usize,
}

/// The result of [`scan_json`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JsonScan {
    /// Every finding, in document order.
    pub findings: Vec<JsonFinding>,
    /// The redacted body, when some finding is redact and none is block.
    pub body: Option<Vec<u8>>,
}

/// Scans every string value of the JSON document `body` with the rules of `actions`.
///
/// Findings are those of the strings as they are; a redacted string is redacted again until no
/// finding is left ([`Scanner::redact_again`]).
///
/// ```
/// use _core::scan::{scan_json, Category, RuleDef, Scanner};
/// let mut rule = RuleDef::new("demo-token", Category::Secret, r"demo_[a-z0-9]{8}");
/// rule.keywords = vec!["demo_".to_owned()];
/// let scanner = Scanner::new(vec![rule]).unwrap();
/// let body = br#"{"messages": [{"role": "user", "content": "use demo_a1b2c3d4"}]}"#;
/// let scan = scan_json(&scanner, body, &[2]).unwrap();
/// assert_eq!(scan.findings[0].path, "messages[0].content");
/// assert_eq!(
///     scan.body.as_deref(),
///     Some(&br#"{"messages": [{"role": "user", "content": "use [REDACTED:demo-token]"}]}"#[..])
/// );
/// ```
pub fn scan_json(scanner: &Scanner, body: &[u8], actions: &[u8]) -> Result<JsonScan, ScanError> {
    let mut walker = Walker::new(body, None);
    walker.run()?;
    let Walker { strings, text, .. } = walker;
    let ends: Vec<usize> = strings.iter().map(|s| s.text_end).collect();
    let mut scratch = Scratch::default();
    let mut marks = Vec::new();
    scanner.mark_segments(&text, &ends, actions, &mut scratch, &mut marks);
    let value_of = |index: usize| {
        let from = if index == 0 {
            0
        } else {
            strings[index - 1].text_end
        };
        &text[from..strings[index].text_end - 1]
    };
    let mut found: Vec<(usize, Vec<Finding>)> = Vec::new();
    for index in (0..strings.len()).filter(|&i| marks[i]) {
        let mut findings = Vec::new();
        scanner.find_with(value_of(index), actions, &mut scratch, &mut findings);
        if !findings.is_empty() {
            found.push((index, findings));
        }
    }
    if found.is_empty() {
        return Ok(JsonScan::default());
    }
    let wanted: Vec<usize> = found.iter().map(|(index, _)| *index).collect();
    let mut paths = Walker::new(body, Some(&wanted));
    paths.run()?;
    let blocked = found
        .iter()
        .flat_map(|(_, list)| list)
        .any(|f| actions.get(f.rule) == Some(&BLOCK));
    let mut findings = Vec::new();
    let mut edits = Vec::new();
    for ((index, list), path) in found.iter().zip(paths.paths) {
        findings.extend(list.iter().map(|f| JsonFinding {
            rule: f.rule,
            path: path.clone(),
            start: f.start,
            end: f.end,
        }));
        let redact = list
            .iter()
            .any(|f| actions.get(f.rule).copied().unwrap_or(0) >= REDACT);
        if !blocked && redact {
            let once = scanner.redact(value_of(*index), list, actions);
            let text = scanner.redact_again(once, actions, &mut scratch);
            let string = strings[*index];
            edits.push(Edit {
                start: string.start,
                end: string.end,
                text,
            });
        }
    }
    let body = (!edits.is_empty()).then(|| splice(body, &edits));
    Ok(JsonScan { findings, body })
}

/// One step of a path: an object key (its raw bytes' span in the body) or an array index.
#[derive(Debug, Clone, Copy)]
enum Step {
    Key(usize, usize),
    Index(usize),
}

/// A string token to replace: its span in the body (quotes included) and its new text.
#[derive(Debug)]
struct Edit {
    start: usize,
    end: usize,
    text: String,
}

/// A string value to scan: its token's span in the body (quotes included) and where its
/// unescaped text ends in the walker's text (each text is followed by a `\n` there).
#[derive(Debug, Clone, Copy)]
struct StringValue {
    start: usize,
    end: usize,
    text_end: usize,
}

/// A walk of a JSON document. Without `wanted` it collects every string value to scan (tokens
/// and unescaped texts); with `wanted` (ascending indexes of those strings) it renders their
/// paths.
struct Walker<'a> {
    jiter: Jiter<'a>,
    body: &'a [u8],
    path: Vec<Step>,
    strings: Vec<StringValue>,
    text: String,
    count: usize,
    wanted: Option<&'a [usize]>,
    paths: Vec<String>,
}

impl<'a> Walker<'a> {
    fn new(body: &'a [u8], wanted: Option<&'a [usize]>) -> Walker<'a> {
        Walker {
            jiter: Jiter::new(body),
            body,
            path: Vec::new(),
            strings: Vec::new(),
            text: String::new(),
            count: 0,
            wanted,
            paths: Vec::new(),
        }
    }

    fn run(&mut self) -> Result<(), ScanError> {
        let invalid = |e: jiter::JiterError| ScanError::InvalidJson(e.to_string());
        let peek = self.jiter.peek().map_err(invalid)?;
        self.value(peek, 0)?;
        self.jiter.finish().map_err(invalid)
    }

    fn value(&mut self, peek: Peek, depth: usize) -> Result<(), ScanError> {
        let invalid = |e: jiter::JiterError| ScanError::InvalidJson(e.to_string());
        if depth > MAX_DEPTH {
            return Err(ScanError::InvalidJson(format!(
                "arrays and objects nested deeper than {MAX_DEPTH}"
            )));
        }
        match peek {
            Peek::String => self.string(),
            Peek::Array => {
                let mut next = self.jiter.known_array().map_err(invalid)?;
                let mut index = 0;
                while let Some(peek) = next {
                    self.path.push(Step::Index(index));
                    self.value(peek, depth + 1)?;
                    self.path.pop();
                    index += 1;
                    next = self.jiter.array_step().map_err(invalid)?;
                }
                Ok(())
            }
            Peek::Object => {
                let base = self.body.as_ptr() as usize;
                let mut key = self
                    .jiter
                    .next_object_bytes()
                    .map_err(invalid)?
                    .map(|k| (k.as_ptr() as usize - base, k.len()));
                while let Some((start, len)) = key {
                    let opaque = OPAQUE_KEYS.contains(&&self.body[start..start + len]);
                    let peek = self.jiter.peek().map_err(invalid)?;
                    self.path.push(Step::Key(start, start + len));
                    if opaque && peek == Peek::String {
                        self.jiter.known_skip(peek).map_err(invalid)?;
                    } else {
                        self.value(peek, depth + 1)?;
                    }
                    self.path.pop();
                    key = self
                        .jiter
                        .next_key_bytes()
                        .map_err(invalid)?
                        .map(|k| (k.as_ptr() as usize - base, k.len()));
                }
                Ok(())
            }
            _ => self.jiter.known_skip(peek).map_err(invalid),
        }
    }

    fn string(&mut self) -> Result<(), ScanError> {
        let start = self.jiter.current_index();
        let value = self
            .jiter
            .known_str()
            .map_err(|e| ScanError::InvalidJson(e.to_string()))?;
        if value.starts_with("data:") {
            return Ok(());
        }
        let index = self.count;
        self.count += 1;
        match self.wanted {
            None => {
                self.text.push_str(value);
                self.text.push('\n');
                let text_end = self.text.len();
                let end = self.jiter.current_index();
                self.strings.push(StringValue {
                    start,
                    end,
                    text_end,
                });
            }
            Some(wanted) => {
                if wanted.binary_search(&index).is_ok() {
                    self.paths.push(render_path(self.body, &self.path));
                }
            }
        }
        Ok(())
    }
}

/// The body with each edit's token replaced by its text, JSON-encoded.
fn splice(body: &[u8], edits: &[Edit]) -> Vec<u8> {
    let extra: usize = edits.iter().map(|e| e.text.len() + 2).sum();
    let mut out = Vec::with_capacity(body.len() + extra);
    let mut at = 0;
    for edit in edits {
        out.extend_from_slice(&body[at..edit.start]);
        encode_string(&edit.text, &mut out);
        at = edit.end;
    }
    out.extend_from_slice(&body[at..]);
    out
}

/// Appends `text` as a JSON string (quotes, `"` `\\` and control characters escaped).
fn encode_string(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let mut at = 0;
    for (i, byte) in text.bytes().enumerate() {
        let escape: Option<&[u8]> = match byte {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&text.as_bytes()[at..i]);
        match escape {
            Some(sequence) => out.extend_from_slice(sequence),
            None => out.extend_from_slice(format!("\\u{byte:04x}").as_bytes()),
        }
        at = i + 1;
    }
    out.extend_from_slice(&text.as_bytes()[at..]);
    out.push(b'"');
}

/// The path of `steps`: keys joined by `.`, indexes as `[i]`; a key that is not a plain name
/// (letters, digits, `_`, `-`) is written `["key"]`.
fn render_path(body: &[u8], steps: &[Step]) -> String {
    let mut path = String::new();
    for step in steps {
        match *step {
            Step::Index(index) => {
                path.push('[');
                path.push_str(&index.to_string());
                path.push(']');
            }
            Step::Key(start, end) => {
                let raw = &body[start..end];
                let key = if raw.contains(&b'\\') {
                    let mut quoted = Vec::with_capacity(raw.len() + 2);
                    quoted.push(b'"');
                    quoted.extend_from_slice(raw);
                    quoted.push(b'"');
                    serde_json::from_slice::<String>(&quoted)
                        .unwrap_or_else(|_| String::from_utf8_lossy(raw).into_owned())
                } else {
                    String::from_utf8_lossy(raw).into_owned()
                };
                let plain = !key.is_empty()
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if plain {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(&key);
                } else {
                    path.push('[');
                    path.push_str(&serde_json::Value::String(key).to_string());
                    path.push(']');
                }
            }
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::encode_string;

    #[test]
    fn encoded_strings_parse_back() {
        for text in [
            "plain",
            "quote \" backslash \\ tab \t nl \n",
            "\u{1}\u{1f} é 😀 </",
        ] {
            let mut out = Vec::new();
            encode_string(text, &mut out);
            assert_eq!(
                serde_json::from_slice::<String>(&out).ok().as_deref(),
                Some(text)
            );
        }
    }
}
