//! redact with the partial flags (methods/redact.py): ages up to 89 and the first three
//! characters of zip codes (dates: dates.rs `redact_partial`).

use std::sync::LazyLock;

use regex::Regex;

static UNICODE_DIGIT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\d").unwrap()); // .NET \d

/// `partial_zip`: a restricted prefix zeroes every digit, else digits after the third character.
pub fn partial_zip(value: &str, restricted: &[String]) -> String {
    if restricted.iter().any(|prefix| value.starts_with(prefix.as_str())) {
        return zero_digits(value);
    }
    match value.char_indices().nth(3) {
        Some((at, _)) => format!("{}{}", &value[..at], zero_digits(&value[at..])),
        None => value.to_string(), // three characters or fewer
    }
}

fn zero_digits(text: &str) -> String {
    if text.is_ascii() {
        return text.bytes().map(|b| if b.is_ascii_digit() { '0' } else { b as char }).collect();
    }
    UNICODE_DIGIT.replace_all(text, "0").into_owned()
}

/// Partial age: Some(keep) for a whole number (as Python's `str(value)` writes it), the age
/// kept when at most 89; None when the value is not written as a whole number (the Python engine
/// then raises, so the caller hands the line back).
pub fn age_kept(text: &str) -> Option<bool> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if negative {
        return Some(true);
    }
    let significant = digits.trim_start_matches('0');
    Some(significant.len() < 2 || (significant.len() == 2 && significant <= "89"))
}
