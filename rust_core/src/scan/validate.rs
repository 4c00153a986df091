//! Checksums that confirm a candidate: Luhn (card numbers) and ISO 13616 mod-97 (IBANs).

use super::rule::Validator;

/// Whether `secret` passes `validator` ([`Validator::None`] passes everything).
pub fn check(validator: Validator, secret: &str) -> bool {
    match validator {
        Validator::None => true,
        Validator::Luhn => luhn(secret),
        Validator::Iban => iban(secret),
    }
}

/// The Luhn check of the digits of `number`; spaces and dashes are ignored, any other non-digit
/// fails, and so does a number of fewer than two digits.
///
/// ```
/// use _core::scan::validate::luhn;
/// assert!(luhn("4111 1111 1111 1111"));
/// assert!(!luhn("4111 1111 1111 1112"));
/// ```
pub fn luhn(number: &str) -> bool {
    let mut sum = 0u32;
    let mut digits = 0usize;
    for byte in number.bytes().rev() {
        match byte {
            b'0'..=b'9' => {
                let mut digit = u32::from(byte - b'0');
                if digits % 2 == 1 {
                    digit *= 2;
                    if digit > 9 {
                        digit -= 9;
                    }
                }
                sum += digit;
                digits += 1;
            }
            b' ' | b'-' => {}
            _ => return false,
        }
    }
    digits >= 2 && sum.is_multiple_of(10)
}

/// The mod-97 check of an IBAN (ISO 13616): two letters, two check digits, then 11 to 30 letters
/// or digits; spaces are ignored and letters may be of either case.
///
/// ```
/// use _core::scan::validate::iban;
/// assert!(iban("GB82 WEST 1234 5698 7654 32"));
/// assert!(!iban("GB82 WEST 1234 5698 7654 33"));
/// ```
pub fn iban(text: &str) -> bool {
    let compact: Vec<u8> = text
        .bytes()
        .filter(|b| *b != b' ')
        .map(|b| b.to_ascii_uppercase())
        .collect();
    if !(15..=34).contains(&compact.len())
        || !compact[..2].iter().all(u8::is_ascii_uppercase)
        || !compact[2..4].iter().all(u8::is_ascii_digit)
        || !compact.iter().all(u8::is_ascii_alphanumeric)
    {
        return false;
    }
    let rearranged = compact[4..].iter().chain(&compact[..4]);
    let mut remainder = 0u32;
    for &byte in rearranged {
        let value = if byte.is_ascii_digit() {
            u32::from(byte - b'0')
        } else {
            u32::from(byte - b'A') + 10
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

#[cfg(test)]
mod tests {
    use super::{iban, luhn};

    #[test]
    fn luhn_accepts_valid_and_rejects_others() {
        assert!(luhn("79927398713"));
        assert!(luhn("5555-5555-5555-4444"));
        assert!(!luhn("79927398710"));
        assert!(!luhn("7"));
        assert!(!luhn("4111x1111111111111"));
    }

    #[test]
    fn iban_accepts_valid_and_rejects_others() {
        assert!(iban("DE89370400440532013000"));
        assert!(iban("de89 3704 0044 0532 0130 00"));
        assert!(!iban("DE89370400440532013001"));
        assert!(!iban("DE8937040044"));
        assert!(!iban("1289370400440532013000"));
        assert!(!iban("DE89-3704-0044-0532-0130-00"));
    }
}
