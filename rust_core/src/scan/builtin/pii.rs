//! Built-in rules for personal data: e-mail addresses, phone numbers, card numbers, IBANs, US
//! social security numbers, IPv4 and IPv6 addresses.
//!
//! A number must not continue a word, a decimal or a longer number: each regex opens with a
//! consumed "not a digit, letter, `.`, `+` or `-`" group and ends at a word boundary, and the
//! datum is capture group 1. (The opening group is consumed and the end is not, so two numbers
//! one space apart are both found: a search resumes where the previous match ended.)
use super::super::rule::{Category, RuleDef, Validator};
use super::{rule, words};

/// The start of a number: the start of the text or a character that cannot continue it.
const NUM_START: &str = r"(?:^|[^0-9A-Za-z_.+\-])";

/// The PII rules.
pub(super) fn rules() -> Vec<RuleDef> {
    vec![
        email(),
        phone_e164(),
        phone_nanp(),
        phone_national(),
        credit_card(),
        iban(),
        us_ssn(),
        ipv4(),
        ipv6(),
    ]
}

/// A PII rule whose datum is capture group 1.
fn pii(id: &str, description: &str, regex: &str, keywords: &[&str]) -> RuleDef {
    RuleDef {
        secret_group: 1,
        ..rule(id, Category::Pii, description, regex, keywords)
    }
}

fn email() -> RuleDef {
    RuleDef {
        secret_group: 0,
        // RFC 2606 / 6761 names reserved for documentation and tests
        allowlist: words(&[
            r"(?i)@(?:[a-z0-9\-]+\.)*example\.(?:com|org|net|edu)$",
            r"(?i)\.(?:example|invalid|test|localhost)$",
        ]),
        ..pii(
            "email",
            "e-mail address",
            r"\b[A-Za-z0-9._%+\-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}\b",
            &["@"],
        )
    }
}

fn phone_e164() -> RuleDef {
    RuleDef {
        // a signed decimal (+35236450.6): its fraction is taken so it can be refused here
        allowlist: words(&[r"\."]),
        ..pii(
            "phone-e164",
            "international phone number with a + country code (E.164, spaced or dashed)",
            r"(?:^|[^0-9A-Za-z_+)\]])(\+[1-9][0-9]{0,2}(?:[ \-]?\([0-9]{1,4}\))?(?:[ \-]?[0-9]){6,13}(?:\.[0-9]{1,10})?)\b",
            &[],
        )
    }
}

fn phone_nanp() -> RuleDef {
    pii(
        "phone-nanp",
        "North American phone number: (415) 555-0123, 415-555-0123, 415.555.0123",
        &format!(
            r"{NUM_START}((?:1[\-. ])?(?:\([2-9][0-9]{{2}}\) ?[2-9][0-9]{{2}}[\-. ]|[2-9][0-9]{{2}}-[2-9][0-9]{{2}}-|[2-9][0-9]{{2}}\.[2-9][0-9]{{2}}\.)[0-9]{{4}})\b"
        ),
        &[],
    )
}

fn phone_national() -> RuleDef {
    pii(
        "phone-national",
        "European national phone number with a trunk 0: 01 23 45 67 89, 020 7946 0958, 030 12345678",
        &format!(
            r"{NUM_START}(0[1-9](?:[ .][0-9]{{2}}){{4}}|0[1-9][0-9] [0-9]{{4}} [0-9]{{4}}|0[1-9][0-9]{{2}} [0-9]{{3}} [0-9]{{3,4}}|0[1-9][0-9]{{3}} [0-9]{{6}}|0[1-9][0-9]{{1,4}}[/\-][0-9]{{4,8}}|0[1-9][0-9]{{1,3}} [0-9]{{7,8}})\b"
        ),
        &[],
    )
}

fn credit_card() -> RuleDef {
    RuleDef {
        validator: Validator::Luhn,
        // the card networks' published test numbers
        allowlist: words(&[
            r"^4111[ \-]?1111[ \-]?1111[ \-]?1111$",
            r"^4242[ \-]?4242[ \-]?4242[ \-]?4242$",
            r"^5555[ \-]?5555[ \-]?5555[ \-]?4444$",
            r"^3782[ \-]?822463[ \-]?10005$",
            r"^6011[ \-]?1111[ \-]?1111[ \-]?1117$",
        ]),
        ..pii(
            "credit-card",
            "payment card number (Visa, Mastercard, Amex, Discover, Diners, JCB) passing the Luhn check",
            &format!(
                r"{NUM_START}((?:4[0-9]{{3}}|5[1-5][0-9]{{2}}|2(?:2[2-9][0-9]|[3-6][0-9]{{2}}|7[01][0-9]|720)|6(?:011|5[0-9]{{2}}|4[4-9][0-9])|35(?:2[89]|[3-8][0-9]))(?:[ \-]?[0-9]{{4}}){{3}}(?:[ \-]?[0-9]{{3}})?|4[0-9]{{12}}|3[47][0-9]{{2}}[ \-]?[0-9]{{6}}[ \-]?[0-9]{{5}}|3(?:0[0-5]|[689][0-9])[0-9][ \-]?[0-9]{{6}}[ \-]?[0-9]{{4}})\b"
            ),
            &[],
        )
    }
}

fn iban() -> RuleDef {
    RuleDef {
        validator: Validator::Iban,
        ..pii(
            "iban",
            "IBAN (international bank account number) passing the mod-97 check",
            r"(?:^|[^0-9A-Za-z_])([A-Z]{2}[0-9]{2}(?: ?[0-9A-Z]{4}){2,7}(?: ?[0-9A-Z]{1,4})?)\b",
            &[],
        )
    }
}

fn us_ssn() -> RuleDef {
    RuleDef {
        allowlist: words(&[
            // a longer dash-separated number (a trailing group is taken so it can be refused here)
            r"^(?:[^\-]*-){3}",
            // numbers published as examples
            r"^(?:123-45-6789|078-05-1120|219-09-9999)$",
        ]),
        ..pii(
            "us-ssn",
            "US social security number (area not 000, 666 or 9xx; group and serial not zero)",
            r"(?:^|[^0-9A-Za-z_.\-])((?:00[1-9]|0[1-9][0-9]|[1-578][0-9]{2}|6[0-57-9][0-9]|66[0-57-9])-(?:0[1-9]|[1-9][0-9])-(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})(?:-[0-9]{1,8})?)\b",
            &[],
        )
    }
}

fn ipv4() -> RuleDef {
    let octet = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
    RuleDef {
        allowlist: words(&[
            // a longer dotted number, e.g. a version or an OID (trailing parts are taken so they
            // can be refused here)
            r"^(?:[^.]*\.){4}",
            // loopback, unspecified, private, link-local, documentation, benchmarking, shared
            // (CGNAT), multicast and reserved ranges, netmasks
            r"^(?:127\.|0\.|10\.|192\.168\.|169\.254\.|172\.(?:1[6-9]|2[0-9]|3[01])\.|192\.0\.[02]\.|198\.51\.100\.|203\.0\.113\.|198\.1[89]\.|100\.(?:6[4-9]|[7-9][0-9]|1[01][0-9]|12[0-7])\.|2(?:2[4-9]|[3-5][0-9])\.)",
        ]),
        ..pii(
            "ipv4",
            "public IPv4 address",
            &format!(
                r"(?:^|[^0-9A-Za-z_.])({octet}(?:\.{octet}){{3}}(?:\.[0-9]{{1,10}}){{0,8}})\b"
            ),
            &[],
        )
    }
}

fn ipv6() -> RuleDef {
    let h = "[0-9A-Fa-f]{1,4}";
    // the first group of a compressed address has two digits at least, so `a:b::c` is no address
    let h2 = "[0-9A-Fa-f]{2,4}";
    RuleDef {
        // loopback, link-local, documentation prefix
        allowlist: words(&[r"(?i)^(?:::1|fe80:.*|2001:0?db8:.*)$"]),
        ..pii(
            "ipv6",
            "IPv6 address (full, or compressed with at least three groups)",
            &format!(
                r"(?:^|[^0-9A-Za-z_:.])((?:{h}:){{7}}{h}|{h2}:(?:{h}:){{1,5}}(?::{h}){{1,5}}|{h2}:(?::{h}){{2,6}}|::{h}(?::{h}){{1,6}})\b"
            ),
            &[],
        )
    }
}
