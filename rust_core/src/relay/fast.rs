//! Fast paths for the events that make up nearly all of a stream: an OpenAI chunk carrying
//! only text (`content`, `reasoning_content`) or a finish reason, and an Anthropic text,
//! thinking or argument delta.
//!
//! A small strict scanner reads exactly those shapes (any key order and whitespace for OpenAI
//! chunks) and unescapes strings into a reused buffer: no allocation, no generic
//! deserializer. Anything else (tool calls, usage, errors, an unknown key holding an object,
//! invalid JSON) returns `None` and the decoder takes its `serde_json` path, which reads the
//! event the same way (the tests check the two agree).

use super::json::find_stop;

/// A string read by the scanner: a range of the input (no escapes) or of the scratch buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Text {
    Input(usize, usize),
    Scratch(usize, usize),
}

impl Text {
    /// The string, from the scanned `input` or the `scratch` buffer.
    pub(crate) fn get<'a>(self, input: &'a str, scratch: &'a str) -> &'a str {
        match self {
            Self::Input(start, end) => &input[start..end],
            Self::Scratch(start, end) => &scratch[start..end],
        }
    }
}

/// A strict cursor over one JSON text.
struct Cursor<'a> {
    input: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.input.as_bytes()
    }

    fn peek(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes().get(self.at) {
            self.at += 1;
        }
        self.bytes().get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// Exactly `word` (a literal such as `null`, or a key's quoted name).
    fn word(&mut self, word: &[u8]) -> Option<()> {
        self.peek()?;
        let found = self.bytes().get(self.at..self.at + word.len())? == word;
        found.then(|| self.at += word.len())
    }

    /// `"name":`.
    fn key(&mut self, name: &[u8]) -> Option<()> {
        self.eat(b'"')?;
        let found = self.bytes().get(self.at..self.at + name.len())? == name;
        found.then(|| self.at += name.len())?;
        if self.bytes().get(self.at) != Some(&b'"') {
            return None;
        }
        self.at += 1;
        self.eat(b':')
    }

    /// An object key without escapes, and its colon.
    fn any_key(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let end = string_stop(self.bytes(), start)?;
        if self.bytes()[end] != b'"' {
            return None;
        }
        self.at = end + 1;
        self.eat(b':')?;
        Some(&self.input[start..end])
    }

    /// A JSON string; unescaped into `scratch` when it holds escapes.
    fn string(&mut self, scratch: &mut String) -> Option<Text> {
        self.eat(b'"')?;
        let start = self.at;
        let bytes = self.bytes();
        let mut run = start;
        let mut scratch_start = None;
        loop {
            let end = string_stop(bytes, run)?;
            if bytes[end] == b'"' {
                self.at = end + 1;
                return Some(match scratch_start {
                    None => Text::Input(start, end),
                    Some(from) => {
                        scratch.push_str(&self.input[run..end]);
                        Text::Scratch(from, scratch.len())
                    }
                });
            }
            if scratch_start.is_none() {
                scratch_start = Some(scratch.len());
            }
            scratch.push_str(&self.input[run..end]);
            run = end + 1 + unescape(bytes, end + 1, scratch)?;
        }
    }

    /// A string, number, `true`, `false` or `null`, skipped.
    fn scalar(&mut self, scratch: &mut String) -> Option<()> {
        match self.peek()? {
            b'"' => self.string(scratch).map(drop),
            b'n' => self.word(b"null"),
            b't' => self.word(b"true"),
            b'f' => self.word(b"false"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// A JSON number, skipped (strictly: no leading zeros, digits after `.` and `e`).
    fn number(&mut self) -> Option<()> {
        let bytes = self.bytes();
        let mut at = self.at + usize::from(bytes.get(self.at) == Some(&b'-'));
        let digits = |at: usize| {
            bytes[at..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count()
        };
        let int = digits(at);
        if int == 0 || (int > 1 && bytes[at] == b'0') {
            return None;
        }
        at += int;
        if bytes.get(at) == Some(&b'.') {
            let frac = digits(at + 1);
            if frac == 0 {
                return None;
            }
            at += 1 + frac;
        }
        if let Some(b'e' | b'E') = bytes.get(at) {
            at += 1;
            at += usize::from(matches!(bytes.get(at), Some(b'+' | b'-')));
            let exp = digits(at);
            if exp == 0 {
                return None;
            }
            at += exp;
        }
        self.at = at;
        Some(())
    }

    /// A small unsigned integer.
    fn index(&mut self) -> Option<usize> {
        self.peek()?;
        let bytes = &self.bytes()[self.at..];
        let len = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 || len > 9 || (len > 1 && bytes[0] == b'0') {
            return None;
        }
        self.at += len;
        std::str::from_utf8(&bytes[..len]).ok()?.parse().ok()
    }

    /// After `,` or at `}`: whether another member follows.
    fn more(&mut self, close: u8) -> Option<bool> {
        match self.peek()? {
            b',' => {
                self.at += 1;
                Some(true)
            }
            byte if byte == close => {
                self.at += 1;
                Some(false)
            }
            _ => None,
        }
    }

    fn end(&mut self) -> Option<()> {
        self.peek().is_none().then_some(())
    }
}

/// The position of the first `"` or `\` from `at`; `None` at a control character (invalid in a
/// JSON string) or the end of the input.
fn string_stop(bytes: &[u8], at: usize) -> Option<usize> {
    let end = find_stop(bytes, at)?;
    (bytes[end] >= 0x20).then_some(end)
}

/// Unescapes the escape at `bytes[at]` (just after its backslash) into `out`; returns how many
/// bytes follow the backslash.
fn unescape(bytes: &[u8], at: usize, out: &mut String) -> Option<usize> {
    let simple = match *bytes.get(at)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let high = hex4(bytes, at + 1)?;
            let (code, len) = match high {
                0xD800..=0xDBFF => {
                    if bytes.get(at + 5..at + 7)? != b"\\u" {
                        return None;
                    }
                    let low = hex4(bytes, at + 7)?;
                    if !(0xDC00..=0xDFFF).contains(&low) {
                        return None;
                    }
                    (0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00), 11)
                }
                0xDC00..=0xDFFF => return None,
                code => (code, 5),
            };
            out.push(char::from_u32(code)?);
            return Some(len);
        }
        _ => return None,
    };
    out.push(simple);
    Some(1)
}

fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let digits = bytes.get(at..at + 4)?;
    digits.iter().try_fold(0, |value, &b| {
        Some(value * 16 + char::from(b).to_digit(16)?)
    })
}

/// An OpenAI chunk with one choice of text only, as the fast path reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TextChunk<'a> {
    pub(crate) model: Option<Text>,
    pub(crate) index: usize,
    pub(crate) reasoning: Option<Text>,
    pub(crate) content: Option<Text>,
    pub(crate) finish: Option<&'a str>,
}

/// Reads an OpenAI chunk whose only choice carries text, a role or a finish reason (and
/// `usage`/`error` are null or absent); `None` for anything else.
pub(crate) fn openai_text_chunk<'a>(input: &'a str, scratch: &mut String) -> Option<TextChunk<'a>> {
    let mut cursor = Cursor { input, at: 0 };
    let mut chunk = TextChunk::default();
    let mut choices = false;
    cursor.eat(b'{')?;
    if cursor.peek()? != b'}' {
        loop {
            match cursor.any_key()? {
                "choices" => {
                    choices = true;
                    choice(&mut cursor, &mut chunk, scratch)?;
                }
                "model" => chunk.model = Some(cursor.string(scratch)?),
                "usage" | "error" => cursor.word(b"null")?,
                _ => cursor.scalar(scratch)?,
            }
            if !cursor.more(b'}')? {
                break;
            }
        }
    } else {
        cursor.at += 1;
    }
    cursor.end()?;
    choices.then_some(chunk)
}

/// `[{"index":..,"delta":{..},"logprobs":null,"finish_reason":..}]`, one choice.
fn choice<'a>(
    cursor: &mut Cursor<'a>,
    chunk: &mut TextChunk<'a>,
    scratch: &mut String,
) -> Option<()> {
    cursor.eat(b'[')?;
    cursor.eat(b'{')?;
    loop {
        match cursor.any_key()? {
            "index" => chunk.index = cursor.index()?,
            "delta" => delta(cursor, chunk, scratch)?,
            "logprobs" => cursor.word(b"null")?,
            "finish_reason" => {
                chunk.finish = match cursor.peek()? {
                    b'n' => {
                        cursor.word(b"null")?;
                        None
                    }
                    _ => match cursor.string(scratch)? {
                        Text::Input(start, end) => Some(&cursor.input[start..end]),
                        Text::Scratch(..) => return None,
                    },
                }
            }
            _ => return None,
        }
        if !cursor.more(b'}')? {
            break;
        }
    }
    cursor.eat(b']')
}

/// `{"role":..,"content":..,"reasoning_content":..,"refusal":null}`, any subset.
fn delta(cursor: &mut Cursor<'_>, chunk: &mut TextChunk<'_>, scratch: &mut String) -> Option<()> {
    cursor.eat(b'{')?;
    if cursor.peek()? == b'}' {
        cursor.at += 1;
        return Some(());
    }
    loop {
        let key = cursor.any_key()?;
        let null = cursor.peek()? == b'n';
        match key {
            "content" | "reasoning_content" if null => cursor.word(b"null")?,
            "content" => chunk.content = Some(cursor.string(scratch)?),
            "reasoning_content" => chunk.reasoning = Some(cursor.string(scratch)?),
            "role" => cursor.string(scratch).map(drop)?,
            "refusal" => cursor.word(b"null")?,
            _ => return None,
        }
        if !cursor.more(b'}')? {
            return Some(());
        }
    }
}

/// Which Anthropic content delta the fast path read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeltaKind {
    Text,
    Thinking,
    InputJson,
}

/// Reads `{"type":"content_block_delta","index":i,"delta":{"type":"text_delta","text":".."}}`
/// (or a `thinking_delta` or `input_json_delta`) in exactly that layout; `None` otherwise.
pub(crate) fn anthropic_delta(
    input: &str,
    scratch: &mut String,
) -> Option<(usize, DeltaKind, Text)> {
    let mut cursor = Cursor { input, at: 0 };
    cursor.eat(b'{')?;
    cursor.key(b"type")?;
    cursor.word(b"\"content_block_delta\"")?;
    cursor.eat(b',')?;
    cursor.key(b"index")?;
    let index = cursor.index()?;
    cursor.eat(b',')?;
    cursor.key(b"delta")?;
    cursor.eat(b'{')?;
    cursor.key(b"type")?;
    let kind = if cursor.word(b"\"text_delta\"").is_some() {
        cursor.eat(b',')?;
        cursor.key(b"text")?;
        DeltaKind::Text
    } else if cursor.word(b"\"thinking_delta\"").is_some() {
        cursor.eat(b',')?;
        cursor.key(b"thinking")?;
        DeltaKind::Thinking
    } else {
        cursor.word(b"\"input_json_delta\"")?;
        cursor.eat(b',')?;
        cursor.key(b"partial_json")?;
        DeltaKind::InputJson
    };
    let text = cursor.string(scratch)?;
    cursor.eat(b'}')?;
    cursor.eat(b'}')?;
    cursor.end()?;
    Some((index, kind, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(input: &str) -> Option<String> {
        let mut scratch = String::new();
        let (_, _, text) = anthropic_delta(input, &mut scratch)?;
        Some(text.get(input, &scratch).to_owned())
    }

    #[test]
    fn strings_unescape_like_serde_json() {
        for json in [
            r#""plain""#,
            r#""a\"b\\c\/d\b\f\n\r\t""#,
            r#""\u00e9\u4f60 \ud83d\ude80 é""#,
        ] {
            let input = format!(
                r#"{{"type":"content_block_delta","index":3,"delta":{{"type":"text_delta","text":{json}}}}}"#
            );
            let want: String = serde_json::from_str(json).unwrap_or_default();
            assert_eq!(text_of(&input), Some(want), "{json}");
        }
    }

    #[test]
    fn string_stop_finds_the_first_stop_byte() {
        let text = "0123456789abcdef0123456789";
        for at in 0..text.len() {
            for stop in [b'"', b'\\', b'\n', 0x1f] {
                let mut bytes = text.as_bytes().to_vec();
                bytes[at] = stop;
                // Bytes of 0x80 and up, after the stop or not, do not shift the answer.
                bytes.extend_from_slice("é".as_bytes());
                assert_eq!(
                    string_stop(&bytes, 0),
                    (stop >= 0x20).then_some(at),
                    "{at} {stop}"
                );
            }
        }
        assert_eq!(string_stop(text.as_bytes(), 0), None);
        assert_eq!(string_stop("éééééé\"".as_bytes(), 0), Some(12));
    }

    #[test]
    fn invalid_strings_are_left_to_serde() {
        for json in [
            r#""\ud83d""#,
            r#""\x""#,
            "\"a\u{1}\"",
            r#""\u12""#,
            r#""open"#,
        ] {
            let input = format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":{json}}}}}"#
            );
            assert_eq!(text_of(&input), None, "{json}");
        }
    }

    #[test]
    fn openai_shapes_outside_the_fast_path_are_refused() {
        let mut scratch = String::new();
        for input in [
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"refusal":"no"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{}},{"index":1,"delta":{}}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":1}}"#,
            r#"{"error":{"message":"x"}}"#,
            r#"{"model":"m","x":{"nested":1},"choices":[{"index":0,"delta":{}}]}"#,
            r#"{"model":"m","created":01,"choices":[{"index":0,"delta":{}}]}"#,
            r#"{"model":"m"}"#,
            r#"{"choices":[{"index":0,"delta":{}}]} x"#,
        ] {
            assert_eq!(openai_text_chunk(input, &mut scratch), None, "{input}");
        }
        let input = r#" { "model" : "m\n" , "created" : -1.5e3 , "choices" : [ { "delta" : { "content" : "a\"b" } , "finish_reason" : "stop" , "index" : 0 } ] , "usage" : null } "#;
        scratch.clear();
        let chunk = openai_text_chunk(input, &mut scratch).unwrap_or_default();
        assert_eq!(chunk.model.map(|t| t.get(input, &scratch)), Some("m\n"));
        assert_eq!(chunk.content.map(|t| t.get(input, &scratch)), Some("a\"b"));
        assert_eq!(chunk.finish, Some("stop"));
    }
}
