//! What a rule's regex (its HIR) tells the prefilter, beyond its keywords:
//!
//! - [`keyword_prefixed`]: every match starts with one of the rule's keywords, so the regex can
//!   run anchored at each keyword occurrence instead of in a window around it.
//! - [`required_bytes`]: a small set of bytes one of which every match contains (the digits of a
//!   phone number), so a rule without keywords runs only around those bytes instead of over the
//!   whole text. [`ByteSet`] finds them fast.
//!
//! Both are exact: they only skip text where the regex cannot match.

use regex_syntax::hir::{Class, Hir, HirKind};

/// Bound on the number of prefixes [`keyword_prefixed`] follows.
const PREFIX_LIMIT: usize = 256;

/// Prefixes longer than this are cut (they already start with any keyword they can).
const PREFIX_LEN: usize = 32;

/// One possible start of a match: its bytes (ASCII-lowercased) and whether the sub-expression's
/// match is exactly these bytes (so what follows extends them).
#[derive(Debug, Clone)]
struct Prefix {
    bytes: Vec<u8>,
    exact: bool,
}

/// Whether every match of `hir` starts with one of `keywords` (ASCII case-insensitively;
/// keywords given lowercased).
pub fn keyword_prefixed(hir: &Hir, keywords: &[Vec<u8>]) -> bool {
    let Some(prefixes) = prefixes(hir) else {
        return false;
    };
    !prefixes.is_empty()
        && prefixes.iter().all(|p| {
            keywords
                .iter()
                .any(|k| p.bytes.len() >= k.len() && p.bytes[..k.len()] == k[..])
        })
}

fn prefixes(hir: &Hir) -> Option<Vec<Prefix>> {
    let exact = |bytes: Vec<u8>| Prefix { bytes, exact: true };
    let stop = || Prefix { bytes: Vec::new(), exact: false };
    Some(match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => vec![exact(Vec::new())],
        HirKind::Literal(literal) => vec![exact(literal.0.to_ascii_lowercase())],
        HirKind::Class(class) => match folded_bytes(class) {
            Some(bytes) => bytes.into_iter().map(|b| exact(vec![b])).collect(),
            None => vec![stop()],
        },
        HirKind::Capture(capture) => prefixes(&capture.sub)?,
        HirKind::Repetition(repetition) => {
            if repetition.min == 0 {
                vec![stop()]
            } else {
                let mut inner = prefixes(&repetition.sub)?;
                if repetition.max != Some(1) {
                    inner.iter_mut().for_each(|p| p.exact = false);
                }
                inner
            }
        }
        HirKind::Alternation(branches) => {
            let mut all = Vec::new();
            for branch in branches {
                all.extend(prefixes(branch)?);
                if all.len() > PREFIX_LIMIT {
                    return None;
                }
            }
            all
        }
        HirKind::Concat(parts) => {
            let mut acc = vec![exact(Vec::new())];
            for part in parts {
                if !acc.iter().any(|p| p.exact) {
                    break;
                }
                let next = prefixes(part)?;
                let mut joined = Vec::new();
                for p in &acc {
                    if !p.exact {
                        joined.push(p.clone());
                        continue;
                    }
                    for n in &next {
                        let mut bytes = p.bytes.clone();
                        bytes.extend_from_slice(&n.bytes);
                        let long = bytes.len() >= PREFIX_LEN;
                        bytes.truncate(PREFIX_LEN);
                        joined.push(Prefix { bytes, exact: n.exact && !long });
                    }
                }
                if joined.len() > PREFIX_LIMIT {
                    return None;
                }
                acc = joined;
            }
            acc
        }
    })
}

/// The bytes (ASCII-lowercased) a class matches, when it matches only a few single ASCII bytes
/// (`[aA]`, `[-_.]`).
fn folded_bytes(class: &Class) -> Option<Vec<u8>> {
    let mut bytes: Vec<u8> = Vec::new();
    let mut add = |lo: u32, hi: u32| -> Option<()> {
        if hi > 0x7f || hi - lo > 4 {
            return None;
        }
        for b in lo..=hi {
            let b = u8::try_from(b).ok()?.to_ascii_lowercase();
            if !bytes.contains(&b) {
                bytes.push(b);
            }
        }
        Some(())
    };
    match class {
        Class::Unicode(class) => {
            for range in class.iter() {
                add(u32::from(range.start()), u32::from(range.end()))?;
            }
        }
        Class::Bytes(class) => {
            for range in class.iter() {
                add(u32::from(range.start()), u32::from(range.end()))?;
            }
        }
    }
    (bytes.len() <= 4).then_some(bytes)
}

/// Bound on the ranges of a [`ByteSet`].
const MAX_RANGES: usize = 8;

/// A set of bytes, as at most 8 ranges, searched 64 bytes at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteSet {
    ranges: Vec<(u8, u8)>,
    lo: [u8; MAX_RANGES],
    span: [u8; MAX_RANGES],
}

impl ByteSet {
    fn new(mut ranges: Vec<(u8, u8)>) -> Option<ByteSet> {
        ranges.sort_unstable();
        let mut merged: Vec<(u8, u8)> = Vec::new();
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if u16::from(lo) <= u16::from(last.1) + 1 => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        if merged.is_empty() || merged.len() > MAX_RANGES {
            return None;
        }
        // unused slots repeat the first range, so they match nothing more
        let mut lo = [merged[0].0; MAX_RANGES];
        let mut span = [merged[0].1 - merged[0].0; MAX_RANGES];
        for (i, &(l, h)) in merged.iter().enumerate() {
            lo[i] = l;
            span[i] = h - l;
        }
        Some(ByteSet { ranges: merged, lo, span })
    }

    /// How often text holds a byte of the set, roughly (lower is better for a prefilter).
    fn score(&self) -> u32 {
        self.ranges
            .iter()
            .map(|&(lo, hi)| (lo..=hi).map(frequency).sum::<u32>())
            .sum()
    }

    fn union(&self, other: &ByteSet) -> Option<ByteSet> {
        ByteSet::new(self.ranges.iter().chain(&other.ranges).copied().collect())
    }

    #[inline]
    fn contains(&self, byte: u8) -> bool {
        let mut hit = false;
        for i in 0..MAX_RANGES {
            hit |= byte.wrapping_sub(self.lo[i]) <= self.span[i];
        }
        hit
    }

    /// Calls `found(i)` for every offset `i` of `text` whose byte is in the set, in order.
    pub fn for_each(&self, text: &[u8], mut found: impl FnMut(usize)) {
        const BLOCK: usize = 64;
        let mut at = 0;
        for block in text.chunks(BLOCK) {
            let any = block.iter().fold(false, |acc, &b| acc | self.contains(b));
            if any {
                for (i, &b) in block.iter().enumerate() {
                    if self.contains(b) {
                        found(at + i);
                    }
                }
            }
            at += block.len();
        }
    }
}

/// A rough frequency of `byte` in prose, source code and JSON, per 1000 bytes.
fn frequency(byte: u8) -> u32 {
    match byte {
        b' ' => 150,
        b'e' | b't' | b'a' | b'o' | b'i' | b'n' | b's' | b'r' => 50,
        b'a'..=b'z' => 15,
        b'\n' | b'"' | b',' | b'.' | b'_' | b'(' | b')' => 10,
        b'A'..=b'Z' | b'0'..=b'9' | b'=' | b':' | b'/' | b'-' | b'{' | b'}' => 5,
        0x80..=0xff => 1,
        _ => 2,
    }
}

/// Above this [`ByteSet::score`], a set is too common to be worth a prefilter pass.
const MAX_SCORE: u32 = 120;

/// A small set of bytes one of which every match of `hir` contains, if there is a useful one.
pub fn required_bytes(hir: &Hir) -> Option<ByteSet> {
    required(hir).filter(|set| set.score() <= MAX_SCORE)
}

fn required(hir: &Hir) -> Option<ByteSet> {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => None,
        HirKind::Literal(literal) => {
            let rarest = literal.0.iter().copied().min_by_key(|&b| frequency(b))?;
            ByteSet::new(vec![(rarest, rarest)])
        }
        HirKind::Class(Class::Bytes(class)) => {
            ByteSet::new(class.iter().map(|r| (r.start(), r.end())).collect())
        }
        HirKind::Class(Class::Unicode(class)) => ByteSet::new(
            class
                .iter()
                .map(|r| (lead_byte(r.start()), lead_byte(r.end())))
                .collect(),
        ),
        HirKind::Capture(capture) => required(&capture.sub),
        HirKind::Repetition(repetition) => {
            if repetition.min == 0 {
                None
            } else {
                required(&repetition.sub)
            }
        }
        HirKind::Alternation(branches) => {
            let mut set = required(branches.first()?)?;
            for branch in &branches[1..] {
                set = set.union(&required(branch)?)?;
            }
            Some(set)
        }
        HirKind::Concat(parts) => parts
            .iter()
            .filter_map(required)
            .min_by_key(ByteSet::score),
    }
}

/// The first byte of `c`'s UTF-8 encoding (monotone in `c`, so a char range maps to a byte range).
fn lead_byte(c: char) -> u8 {
    let mut buf = [0u8; 4];
    c.encode_utf8(&mut buf).as_bytes()[0]
}

#[cfg(test)]
mod tests {
    use super::{keyword_prefixed, required_bytes};

    fn hir(pattern: &str) -> regex_syntax::hir::Hir {
        regex_syntax::Parser::new().parse(pattern).unwrap_or_else(|_| regex_syntax::hir::Hir::empty())
    }

    fn keywords(words: &[&str]) -> Vec<Vec<u8>> {
        words.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    #[test]
    fn keyword_prefixed_regexes_are_recognised() {
        let kw = keywords(&["ghp_", "ignore"]);
        assert!(keyword_prefixed(&hir(r"(?-u:\b)(ghp_[0-9A-Za-z]{36})(?:[^0-9]|$)"), &kw));
        assert!(keyword_prefixed(&hir(r"(?i)\b(?:ignore|IGNORE)\s+all"), &kw));
        assert!(!keyword_prefixed(&hir(r"(?i)\b(?:ignore|forget)\s+all"), &kw));
        assert!(!keyword_prefixed(&hir(r"x?ghp_"), &kw));
        assert!(!keyword_prefixed(&hir(r"[a-z]+ghp_"), &kw));
        assert!(keyword_prefixed(&hir(r"GH(?:p|P)_x"), &keywords(&["ghp_"])));
    }

    #[test]
    fn required_bytes_are_the_rarest_class_every_match_has() {
        let digits = required_bytes(&hir(r"(?:^|[^0-9A-Za-z])([0-9]{3}-[0-9]{4})\b"));
        assert_eq!(digits.map(|s| s.ranges), Some(vec![(b'-', b'-')]));
        let set = required_bytes(&hir(r"\b[0-9]{3}[ .][0-9]{4}\b"));
        assert_eq!(set.map(|s| s.ranges), Some(vec![(b'0', b'9')]));
        assert_eq!(required_bytes(&hir(r"[a-z]+")), None, "letters are too common");
        assert_eq!(required_bytes(&hir(r"a*")), None);
        let mut found = Vec::new();
        if let Some(set) = required_bytes(&hir(r"[0-9]")) {
            set.for_each("ab1c".repeat(40).as_bytes(), |i| found.push(i));
        }
        assert_eq!(found.len(), 40);
        assert_eq!(found[..2], [2, 6]);
    }
}
