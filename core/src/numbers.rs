//! Decimal numbers as the Python engine holds them: `decimal.Decimal` from their text, printed as
//! .NET prints a decimal (never with an exponent: `1E+2` -> `100`), and the digit count its plain
//! text would hold (the 1,000-digit limit, measured without writing the text).

/// A decimal: sign, coefficient digits (no leading zeros; "0" for zero) and exponent.
pub struct Dec {
    pub negative: bool,
    pub digits: String,
    pub exp: i64,
}

/// `Decimal(text)` for `-?\d+(\.\d+)?([eE][+-]?\d+)?` (JSON numbers, decimal strings).
pub fn parse(text: &str) -> Option<Dec> {
    let bytes = text.as_bytes();
    let mut at = 0;
    let negative = bytes.first() == Some(&b'-');
    if negative {
        at += 1;
    }
    let mut coefficient = String::new();
    let int_start = at;
    while at < bytes.len() && bytes[at].is_ascii_digit() {
        at += 1;
    }
    if at == int_start {
        return None;
    }
    coefficient.push_str(&text[int_start..at]);
    let mut frac = 0i64;
    if at < bytes.len() && bytes[at] == b'.' {
        at += 1;
        let start = at;
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            at += 1;
        }
        if at == start {
            return None;
        }
        coefficient.push_str(&text[start..at]);
        frac = (at - start) as i64;
    }
    let mut exponent = 0i64;
    if at < bytes.len() && (bytes[at] == b'e' || bytes[at] == b'E') {
        at += 1;
        let mut sign = 1i64;
        if at < bytes.len() && (bytes[at] == b'+' || bytes[at] == b'-') {
            if bytes[at] == b'-' {
                sign = -1;
            }
            at += 1;
        }
        let start = at;
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            exponent = exponent.saturating_mul(10).saturating_add((bytes[at] - b'0') as i64);
            at += 1;
        }
        if at == start {
            return None;
        }
        exponent *= sign;
    }
    if at != bytes.len() {
        return None;
    }
    let stripped = coefficient.trim_start_matches('0');
    let digits = if stripped.is_empty() { "0".to_string() } else { stripped.to_string() };
    Some(Dec { negative, digits, exp: exponent.saturating_sub(frac) })
}

/// How many digits the plain text of a number holds (Python: jsonio.plain_digits), from its
/// integer and fraction digits and its exponent.
pub fn plain_digits_of(int_part: &[u8], fraction: &[u8], exponent: i64) -> usize {
    let zeros = int_part.iter().chain(fraction).take_while(|&&b| b == b'0').count();
    let coefficient = (int_part.len() + fraction.len() - zeros).max(1);
    plain(coefficient as i64, exponent.saturating_sub(fraction.len() as i64))
}

fn plain(coefficient: i64, exp: i64) -> usize {
    let count = if exp >= 0 {
        coefficient.saturating_add(exp)
    } else if -exp < coefficient {
        coefficient
    } else {
        1i64.saturating_sub(exp)
    };
    count.clamp(0, i64::MAX) as usize
}

/// The exact count for a number's text (Python: plain_digits(Decimal(text))).
pub fn exact_plain_digits(text: &str) -> usize {
    match parse(text) {
        Some(d) => plain(d.digits.len() as i64, d.exp),
        None => 0,
    }
}

/// `str(Decimal)` (Python's to-scientific-string).
pub fn to_sci_string(d: &Dec) -> String {
    let sign = if d.negative { "-" } else { "" };
    let length = d.digits.len() as i64;
    let leftdigits = d.exp + length;
    let dotplace = if d.exp <= 0 && leftdigits > -6 { leftdigits } else { 1 };
    let (intpart, fracpart) = if dotplace <= 0 {
        ("0".to_string(), format!(".{}{}", "0".repeat((-dotplace) as usize), d.digits))
    } else if dotplace >= length {
        (format!("{}{}", d.digits, "0".repeat((dotplace - length) as usize)), String::new())
    } else {
        (d.digits[..dotplace as usize].to_string(), format!(".{}", &d.digits[dotplace as usize..]))
    };
    let exp = if leftdigits == dotplace { String::new() } else { format!("E{:+}", leftdigits - dotplace) };
    format!("{sign}{intpart}{fracpart}{exp}")
}

/// `format(Decimal, "f")`: fixed point, as wide as the number needs.
fn to_fixed(d: &Dec) -> String {
    let sign = if d.negative { "-" } else { "" };
    // zeros with a positive exponent are rescaled to 0e0 first (as Python does)
    let (digits, exp) = if d.digits == "0" && d.exp > 0 { ("0", 0) } else { (d.digits.as_str(), d.exp) };
    let length = digits.len() as i64;
    let dotplace = exp + length;
    let (intpart, fracpart) = if dotplace < 0 {
        ("0".to_string(), format!("{}{}", "0".repeat((-dotplace) as usize), digits))
    } else if dotplace > length {
        (format!("{}{}", digits, "0".repeat((dotplace - length) as usize)), String::new())
    } else {
        let int = &digits[..dotplace as usize];
        (if int.is_empty() { "0".to_string() } else { int.to_string() }, digits[dotplace as usize..].to_string())
    };
    if fracpart.is_empty() {
        format!("{sign}{intpart}")
    } else {
        format!("{sign}{intpart}.{fracpart}")
    }
}

/// A decimal as .NET prints it (Python: jsonio.decimal_text).
pub fn decimal_text(d: &Dec) -> String {
    let text = to_sci_string(d);
    if text.contains('E') {
        to_fixed(d)
    } else {
        text
    }
}

/// The text a JSON number token is written and hashed with in a decimal element: the token
/// itself, or, written with an exponent, its plain decimal text; integers canonical (`-0` -> `0`).
pub fn decimal_token_text(token: &str) -> String {
    if is_integer_token(token) {
        return integer_token_text(token).to_string();
    }
    if token.bytes().any(|b| b == b'e' || b == b'E') {
        parse(token).map(|d| decimal_text(&d)).unwrap_or_else(|| token.to_string())
    } else {
        token.to_string()
    }
}

pub fn is_integer_token(token: &str) -> bool {
    !token.bytes().any(|b| b == b'.' || b == b'e' || b == b'E')
}

/// A JSON integer as Python's int prints it (JSON has no leading zeros: only `-0` changes).
pub fn integer_token_text(token: &str) -> &str {
    if token == "-0" {
        "0"
    } else {
        token
    }
}
