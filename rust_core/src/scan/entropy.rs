//! Shannon entropy of a candidate secret, the check that tells a random token from a word.

/// The Shannon entropy of `text` in bits per character (0.0 for an empty text).
///
/// Characters, not bytes, are counted, so a non-ASCII text is not rated higher for its encoding.
///
/// ```
/// use _core::scan::entropy::shannon;
/// assert_eq!(shannon("aaaa"), 0.0);
/// assert!((shannon("abcd") - 2.0).abs() < 1e-9);
/// ```
pub fn shannon(text: &str) -> f64 {
    let mut ascii = [0u32; 128];
    let mut other: Vec<(char, u32)> = Vec::new();
    let mut total = 0u32;
    for c in text.chars() {
        total += 1;
        if c.is_ascii() {
            ascii[c as usize] += 1;
        } else if let Some(slot) = other.iter_mut().find(|(seen, _)| *seen == c) {
            slot.1 += 1;
        } else {
            other.push((c, 1));
        }
    }
    if total == 0 {
        return 0.0;
    }
    let total = f64::from(total);
    ascii
        .iter()
        .copied()
        .chain(other.iter().map(|(_, count)| *count))
        .filter(|&count| count > 0)
        .map(|count| {
            let p = f64::from(count) / total;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::shannon;

    #[test]
    fn uniform_alphabets_have_log2_bits() {
        assert_eq!(shannon(""), 0.0);
        assert!((shannon("ab") - 1.0).abs() < 1e-9);
        assert!((shannon("0123456789abcdef") - 4.0).abs() < 1e-9);
        assert!((shannon("ééaa") - 1.0).abs() < 1e-9);
    }
}
