//! What a rule's regex (its HIR) tells the prefilter, beyond its keywords:
//!
//! - [`keyword_prefixed`]: every match starts with one of the rule's keywords, so the regex can
//!   run anchored at each keyword occurrence instead of in a window around it.
//! - [`required_bytes`]: a set of bytes of which every match holds a least number (the ten
//!   digits of a phone number), so a rule without keywords runs only where that many fall within
//!   its longest match instead of over the whole text. [`ByteSet`] finds them fast.
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
    let stop = || Prefix {
        bytes: Vec::new(),
        exact: false,
    };
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
                        joined.push(Prefix {
                            bytes,
                            exact: n.exact && !long,
                        });
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

/// The two non-ASCII characters whose simple case folding is an ASCII letter: `ſ` (s) and the
/// Kelvin sign (k). `(?i)s` matches them, but keywords are ASCII case-insensitive, so a match
/// spelled with them holds no keyword there; anchoring ignores them.
const ASCII_FOLDS: [u32; 2] = [0x017f, 0x212a];

/// The bytes (ASCII-lowercased) a class matches, when it matches only a few single ASCII bytes
/// (`[aA]`, `[-_.]`).
fn folded_bytes(class: &Class) -> Option<Vec<u8>> {
    let mut bytes: Vec<u8> = Vec::new();
    let mut add = |lo: u32, hi: u32| -> Option<()> {
        if lo == hi && ASCII_FOLDS.contains(&lo) {
            return Some(());
        }
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
        Some(ByteSet {
            ranges: merged,
            lo,
            span,
        })
    }

    /// How often text holds a byte of the set, roughly (lower is better for a prefilter).
    fn score(&self) -> u32 {
        self.ranges
            .iter()
            .map(|&(lo, hi)| (lo..=hi).map(frequency).sum::<u32>())
            .sum()
    }

    /// Whether every byte of `self` is in `other`.
    fn is_subset(&self, other: &ByteSet) -> bool {
        self.ranges
            .iter()
            .all(|&(lo, hi)| (lo..=hi).all(|b| other.contains(b)))
    }

    /// Whether `byte` is in the set.
    #[inline]
    pub fn contains(&self, byte: u8) -> bool {
        self.mask(byte) != 0
    }

    #[inline]
    fn mask(&self, byte: u8) -> u8 {
        let mut hit = 0u8;
        for i in 0..MAX_RANGES {
            hit |= u8::from(byte.wrapping_sub(self.lo[i]) <= self.span[i]);
        }
        hit
    }

    /// Appends `base + i` to `out` for every offset `i` of `text` whose byte is in the set, in
    /// order: one `memchr` for a single byte; for ASCII ranges, eight bytes at a time with
    /// word-wide arithmetic (no per-byte branch); else byte by byte.
    pub fn positions(&self, text: &[u8], base: usize, out: &mut Vec<usize>) {
        match self.ranges[..] {
            [(lo, hi)] if lo == hi => out.extend(memchr::memchr_iter(lo, text).map(|i| base + i)),
            [(lo, hi)] if hi < 0x80 => word_positions(text, base, out, |w| between(w, lo, hi)),
            [(lo1, hi1), (lo2, hi2)] if hi2 < 0x80 => {
                word_positions(text, base, out, |w| {
                    between(w, lo1, hi1) | between(w, lo2, hi2)
                });
            }
            _ => out.extend(
                text.iter()
                    .enumerate()
                    .filter(|&(_, &b)| self.contains(b))
                    .map(|(i, _)| base + i),
            ),
        }
    }
}

/// Per byte of `word`, its high bit set when the byte is in `lo..=hi` (both < 0x80): the exact
/// "has between" word trick, with no carry or borrow from one byte into the next.
#[inline(always)]
fn between(word: u64, lo: u8, hi: u8) -> u64 {
    const ONES: u64 = u64::MAX / 255;
    const LOW7: u64 = ONES * 127;
    let low = word & LOW7;
    let below_hi = (ONES * (127 + u64::from(hi) + 1)).wrapping_sub(low);
    let above_lo = low + ONES * (128 - u64::from(lo));
    below_hi & !word & above_lo & (ONES * 128)
}

/// [`ByteSet::positions`] with `mask`, a word's per-byte high bits of the bytes in the set.
#[inline(always)]
fn word_positions(text: &[u8], base: usize, out: &mut Vec<usize>, mask: impl Fn(u64) -> u64) {
    let mut words = text.chunks_exact(8);
    let mut at = base;
    for chunk in words.by_ref() {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let mut hits = mask(u64::from_le_bytes(bytes));
        while hits != 0 {
            out.push(at + (hits.trailing_zeros() / 8) as usize);
            hits &= hits - 1;
        }
        at += 8;
    }
    let rest = words.remainder();
    let mut bytes = [0u8; 8];
    bytes[..rest.len()].copy_from_slice(rest);
    let mut hits = mask(u64::from_le_bytes(bytes));
    while hits != 0 {
        let offset = (hits.trailing_zeros() / 8) as usize;
        if offset < rest.len() {
            out.push(at + offset);
        }
        hits &= hits - 1;
    }
}

/// A rough frequency of `byte` in mixed prose, source code and JSON, per 1000 bytes.
fn frequency(byte: u8) -> u32 {
    match byte {
        b' ' => 150,
        b'e' | b't' | b'a' | b'o' | b'i' | b'n' | b's' | b'r' => 50,
        b'a'..=b'z' => 15,
        b'\n' | b'"' => 20,
        b'.' => 15,
        b',' | b'_' | b':' => 10,
        b'(' | b')' => 8,
        b'-' | b'=' => 6,
        b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'{' | b'}' => 5,
        0x80..=0xff => 1,
        _ => 2,
    }
}

/// A set of bytes and how many of them every match holds at least (`count` >= 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Required {
    /// The bytes.
    pub set: ByteSet,
    /// The least number of them in a match.
    pub count: usize,
}

/// Bound on the counts [`required_bytes`] computes.
const MAX_COUNT: usize = 64;

/// The most selective set of bytes of which every match of `hir` (at most `max_len` bytes long)
/// holds some least number: a class or literal byte of the regex, rated by how rarely `count` of
/// its bytes fall within `max_len` bytes of text (e.g. the ten digits of a phone number).
pub fn required_bytes(hir: &Hir, max_len: usize) -> Option<Required> {
    let mut candidates: Vec<ByteSet> = Vec::new();
    collect_sets(hir, &mut candidates);
    candidates
        .into_iter()
        .filter_map(|set| {
            let count = min_count(hir, &set);
            (count > 0).then_some(Required { set, count })
        })
        .min_by(|a, b| rarity(a, max_len).total_cmp(&rarity(b, max_len)))
}

/// The log of the (Poisson) probability that a span of `max_len` bytes of text holds `count`
/// bytes of the set; 0 (certain) when that many are expected anyway. Lower is more selective.
fn rarity(required: &Required, max_len: usize) -> f64 {
    let per_byte = f64::from(required.set.score()) / 1000.0;
    let expected = (per_byte * max_len as f64).max(1e-9);
    let count = required.count as f64;
    if count <= expected {
        return 0.0;
    }
    let log_factorial: f64 = (1..=required.count).map(|k| (k as f64).ln()).sum();
    count * expected.ln() - log_factorial - expected
}

/// The byte sets of the classes and literal bytes of `hir`.
fn collect_sets(hir: &Hir, out: &mut Vec<ByteSet>) {
    let mut push = |set: Option<ByteSet>| {
        if let Some(set) = set {
            if !out.contains(&set) {
                out.push(set);
            }
        }
    };
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => {}
        HirKind::Literal(literal) => {
            for &b in literal.0.iter() {
                push(ByteSet::new(vec![(b, b)]));
            }
        }
        HirKind::Class(class) => push(class_set(class)),
        HirKind::Capture(capture) => collect_sets(&capture.sub, out),
        HirKind::Repetition(repetition) => collect_sets(&repetition.sub, out),
        HirKind::Alternation(parts) | HirKind::Concat(parts) => {
            parts.iter().for_each(|part| collect_sets(part, out));
        }
    }
}

/// The bytes a class's characters start with.
fn class_set(class: &Class) -> Option<ByteSet> {
    match class {
        Class::Bytes(class) => ByteSet::new(class.iter().map(|r| (r.start(), r.end())).collect()),
        Class::Unicode(class) => ByteSet::new(
            class
                .iter()
                .map(|r| (lead_byte(r.start()), lead_byte(r.end())))
                .collect(),
        ),
    }
}

/// The least number of bytes of `set` in any match of `hir`.
fn min_count(hir: &Hir, set: &ByteSet) -> usize {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => 0,
        HirKind::Literal(literal) => literal.0.iter().filter(|&&b| set.contains(b)).count(),
        HirKind::Class(class) => class_set(class).is_some_and(|c| c.is_subset(set)).into(),
        HirKind::Capture(capture) => min_count(&capture.sub, set),
        HirKind::Repetition(repetition) => {
            let times = usize::try_from(repetition.min).unwrap_or(MAX_COUNT);
            min_count(&repetition.sub, set)
                .saturating_mul(times)
                .min(MAX_COUNT)
        }
        HirKind::Alternation(parts) => parts.iter().map(|p| min_count(p, set)).min().unwrap_or(0),
        HirKind::Concat(parts) => parts
            .iter()
            .map(|p| min_count(p, set))
            .fold(0, |a, c| a.saturating_add(c).min(MAX_COUNT)),
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
        regex_syntax::Parser::new()
            .parse(pattern)
            .unwrap_or_else(|_| regex_syntax::hir::Hir::empty())
    }

    fn keywords(words: &[&str]) -> Vec<Vec<u8>> {
        words.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    #[test]
    fn keyword_prefixed_regexes_are_recognised() {
        let kw = keywords(&["ghp_", "ignore"]);
        assert!(keyword_prefixed(
            &hir(r"(?-u:\b)(ghp_[0-9A-Za-z]{36})(?:[^0-9]|$)"),
            &kw
        ));
        assert!(keyword_prefixed(
            &hir(r"(?i)\b(?:ignore|IGNORE)\s+all"),
            &kw
        ));
        assert!(!keyword_prefixed(
            &hir(r"(?i)\b(?:ignore|forget)\s+all"),
            &kw
        ));
        assert!(!keyword_prefixed(&hir(r"x?ghp_"), &kw));
        assert!(!keyword_prefixed(&hir(r"[a-z]+ghp_"), &kw));
        assert!(keyword_prefixed(&hir(r"GH(?:p|P)_x"), &keywords(&["ghp_"])));
    }

    #[test]
    fn required_bytes_are_the_rarest_set_with_its_least_count() {
        let phone = required_bytes(&hir(r"(?:^|[^0-9A-Za-z])([0-9]{3}-[0-9]{4})\b"), 9);
        assert_eq!(
            phone.map(|r| (r.set.ranges, r.count)),
            Some((vec![(b'0', b'9')], 7))
        );
        let alternation = required_bytes(&hir(r"x[0-9]{2}|y[0-9]{3}"), 4);
        assert_eq!(
            alternation.map(|r| (r.set.ranges, r.count)),
            Some((vec![(b'0', b'9')], 2))
        );
        assert_eq!(required_bytes(&hir(r"a*"), 10), None);
        let mut found = Vec::new();
        if let Some(required) = required_bytes(&hir(r"[0-9]"), 1) {
            required
                .set
                .positions("ab1c".repeat(40).as_bytes(), 100, &mut found);
        }
        assert_eq!(found.len(), 40);
        assert_eq!(found[..2], [102, 106]);
    }

    #[test]
    fn word_wide_ranges_match_byte_by_byte() {
        let text: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for (lo, hi) in [(b'0', b'9'), (0, 10), (b'A', b'Z'), (0, 0x7f), (0x7f, 0x7f)] {
            let expected: Vec<usize> = (0..text.len())
                .filter(|&i| (lo..=hi).contains(&text[i]))
                .collect();
            for skip in 0..9 {
                let mut found = Vec::new();
                super::word_positions(&text[skip..], skip, &mut found, |w| {
                    super::between(w, lo, hi)
                });
                let want: Vec<usize> = expected.iter().copied().filter(|&i| i >= skip).collect();
                assert_eq!(found, want, "{lo}..={hi} from {skip}");
            }
        }
    }
}
