//! Writing JSON straight into the output buffer: strings escaped as `serde_json` escapes them,
//! integers with `itoa`. The encoders build every event from these and fixed byte strings.

/// Bytes that need escaping in a JSON string: control characters, `"` and `\`.
const ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// The position of the first byte from `at` that a JSON string must escape (`"`, `\`, a
/// control character); `None` when there is none. Eight bytes at a time, as `serde_json` skips
/// strings: the strings of a stream are too short for a vectorised search to pay.
pub(crate) fn find_stop(bytes: &[u8], mut at: usize) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    while let Some(word) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(word.try_into().ok()?);
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        // The zero-byte and less-than tests: exact for the lowest byte that matches.
        let stops = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (word.wrapping_sub(ONES * 0x20) & !word))
            & HIGH;
        if stops != 0 {
            return Some(at + (stops.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let offset = bytes
        .get(at..)?
        .iter()
        .position(|&b| ESCAPE[usize::from(b)])?;
    Some(at + offset)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `text` as a JSON string, quotes included: `a"b` + newline becomes `"a\"b\n"`.
pub(crate) fn push_str(out: &mut Vec<u8>, text: &str) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    push_escaped(out, text);
    out.push(b'"');
}

/// Appends `text` escaped for the inside of a JSON string (no quotes): for a string made of a
/// fixed prefix and a value, as `"msg_<id>"`.
pub(crate) fn push_escaped(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let mut start = 0;
    while let Some(at) = find_stop(bytes, start) {
        let byte = bytes[at];
        out.extend_from_slice(&bytes[start..at]);
        start = at + 1;
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]),
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends `value` as a JSON string, or `null`.
pub(crate) fn push_opt_str(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(text) => push_str(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends an unsigned integer.
pub(crate) fn push_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_through_serde_json() {
        for text in [
            "",
            "plain",
            "q\"b\\s/",
            "\n\r\t\u{8}\u{c}\u{1}\u{1f}",
            "é 你好 🚀 \u{2028}",
        ] {
            let mut out = Vec::new();
            push_str(&mut out, text);
            let back: String = serde_json::from_slice(&out).unwrap_or_default();
            assert_eq!(back, text);
            assert_eq!(out, serde_json::to_vec(text).unwrap_or_default());
        }
    }

    #[test]
    fn numbers_and_null() {
        let mut out = Vec::new();
        push_u64(&mut out, 1_234_567);
        out.push(b',');
        push_opt_str(&mut out, None);
        assert_eq!(out, b"1234567,null");
    }
}
