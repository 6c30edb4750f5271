//! Dates: how the parser validates them (r4/primitives.py), the reference's patterns that redact
//! and dateShift search (methods/dates.py), the 89-year rule, and day arithmetic.

use std::sync::LazyLock;

use regex::Regex;

const OFFSET: &str = r"(Z|[+-](?:0[0-9]|1[0-4]):[0-5][0-9])?";
const HMS: &str = r"(?:[01][0-9]|2[0-3])(?::[0-5][0-9](?::[0-5][0-9](?:\.[0-9]+)?)?)?";

// The parser's patterns (fullmatch): groups 1 year, 2 month, 3 day.
pub static DATE_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"^([0-9]{{4}})(?:-(0[1-9]|1[0-2])(?:-(0[1-9]|[12][0-9]|3[01]))?)?{OFFSET}$")).unwrap()
});
pub static DATETIME_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"^([0-9]{{4}})(?:-(0[1-9]|1[0-2])(?:-(0[1-9]|[12][0-9]|3[01])(?:T{HMS})?)?)?{OFFSET}$"
    ))
    .unwrap()
});
pub static TIME_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(&format!(r"^{HMS}{OFFSET}$")).unwrap());

// The reference's patterns (searched, unanchored): groups 1 year, 5 month, 7 day, 8 time.
const YEAR: &str = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)";
const MONTH_DAY: &str = r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])";
const TIME: &str = r"(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?";
pub static DATE_PATTERN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("{YEAR}{MONTH_DAY})?)?")).unwrap());
pub static DATETIME_PATTERN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("{YEAR}{MONTH_DAY}{TIME})?)?")).unwrap());
static TIME_DIGITS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^T[0-9:.]+").unwrap());
// `meta.lastUpdated` as .NET's DateTimeOffset reads it (labels.py).
pub static INSTANT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2})(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]+))?)?)?)?)?(Z|[+-][0-9]{2}:[0-9]{2})?$",
    )
    .unwrap()
});

pub const AGE_LIMIT: i64 = 89;

#[derive(Clone, Copy)]
pub struct Day {
    pub year: i64,
    pub month: i64,
    pub day: i64,
}

/// The parser's calendar check: the patterns admit days up to 31; only days past 28 need it.
pub fn valid_calendar(year: &str, month: Option<&str>, day: Option<&str>) -> bool {
    let Some(day) = day else { return true };
    if day < "29" {
        return true;
    }
    let (y, m, d) = (year.parse::<i64>().unwrap_or(0), month.map_or(1, |m| m.parse().unwrap_or(0)), day.parse().unwrap_or(0));
    y >= 1 && y <= 9999 && (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// The reference's age rule: more than 89 whole years before the reference date.
pub fn older_than_limit(reference: Day, year: i64, month: i64, day: i64) -> bool {
    let mut age = reference.year - year;
    if (reference.month, reference.day) < (month, day) {
        age -= 1;
    }
    age > AGE_LIMIT
}

/// What the reference's pattern finds in a value (groups 1 year, 5 month, 7 day, 8 time).
pub struct Parts<'t> {
    pub year: &'t str,
    pub month: Option<&'t str>,
    pub day: Option<&'t str>,
    pub time: Option<&'t str>,
}

/// The reference's pattern searched in a value the parser admitted: read directly for the usual
/// forms (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`, `YYYY-MM-DDThh:mm:ss[.f]zone`), else by the regex.
pub fn reference_parts(text: &str, date_only: bool) -> Option<Parts<'_>> {
    if let Some(shape) = usual_shape(text, date_only) {
        if &text[..4] != "0000" {
            let b = text.as_bytes();
            // the pattern's time needs the seconds and a zone of at most 13 hours, or 14:00
            let time = shape.time
                && !date_only
                && match b.len() - 10 {
                    _ if b[b.len() - 1] == b'Z' => true,
                    _ => {
                        let zone = &text[text.len() - 6..];
                        &zone[1..3] <= "13" || &zone[1..] == "14:00"
                    }
                };
            return Some(Parts {
                year: &text[..4],
                month: (b.len() >= 7).then(|| &text[5..7]),
                day: (b.len() >= 10).then(|| &text[8..10]),
                time: time.then(|| &text[10..]),
            });
        }
    }
    let pattern = if date_only { &DATE_PATTERN } else { &DATETIME_PATTERN };
    let c = pattern.captures(text)?;
    Some(Parts {
        year: c.get(1).map_or("", |m| m.as_str()),
        month: c.get(5).map(|m| m.as_str()),
        day: c.get(7).map(|m| m.as_str()),
        time: c.get(8).map(|m| m.as_str()),
    })
}

pub struct Shape {
    pub time: bool, // `Thh:mm:ss[.f]` and a zone follow the day
}

fn digits(b: &[u8]) -> bool {
    b.iter().all(u8::is_ascii_digit)
}

/// The usual forms of a date or dateTime, checked field by field (None: not one of them, which
/// the regex then decides).
pub fn usual_shape(text: &str, date_only: bool) -> Option<Shape> {
    let b = text.as_bytes();
    if b.len() < 4 || !text.is_ascii() || !digits(&b[..4]) {
        return None;
    }
    if b.len() == 4 {
        return Some(Shape { time: false });
    }
    if b[4] != b'-' || b.len() < 7 || !matches!(&text[5..7], "01" | "02" | "03" | "04" | "05" | "06" | "07" | "08" | "09" | "10" | "11" | "12") {
        return None;
    }
    if b.len() == 7 {
        return Some(Shape { time: false });
    }
    if b[7] != b'-' || b.len() < 10 || !digits(&b[8..10]) || &text[8..10] < "01" || &text[8..10] > "31" {
        return None;
    }
    if b.len() == 10 {
        return Some(Shape { time: false });
    }
    if date_only || b[10] != b'T' || b.len() < 20 {
        return None;
    }
    // Thh:mm:ss
    let time = &b[11..19];
    if !(digits(&time[0..2]) && &text[11..13] <= "23" && time[2] == b':' && digits(&time[3..5]) && time[3] <= b'5'
        && time[5] == b':' && digits(&time[6..8]) && time[6] <= b'5')
    {
        return None;
    }
    let mut at = 19;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while at < b.len() && b[at].is_ascii_digit() {
            at += 1;
        }
        if at == start {
            return None;
        }
    }
    let zone = &b[at..];
    let valid_zone = zone == b"Z"
        || (zone.len() == 6
            && (zone[0] == b'+' || zone[0] == b'-')
            && digits(&zone[1..3])
            && &zone[1..3] <= &b"14"[..]
            && zone[3] == b':'
            && digits(&zone[4..6])
            && zone[4] <= b'5');
    if !valid_zone {
        return None;
    }
    Some(Shape { time: true })
}

/// Partial date redaction (methods/dates.py redact_partial): the four-digit year, None when over
/// the age limit, the value itself when no year is found.
pub fn redact_partial<'t>(parts: Option<&Parts<'t>>, value: &'t str, reference: Day) -> Option<&'t str> {
    let Some(p) = parts else { return Some(value) };
    let year: i64 = p.year.parse().unwrap_or(0);
    let month = p.month.map_or(1, |m| m.parse().unwrap_or(1));
    let day = p.day.map_or(1, |d| d.parse().unwrap_or(1));
    if older_than_limit(reference, year, month, day) {
        None
    } else {
        Some(p.year)
    }
}

/// `T13:28:17.123-05:00` -> `T00:00:00.000-05:00`.
pub fn zero_time(time: &str) -> String {
    match TIME_DIGITS.find(time) {
        Some(m) => {
            let zeroed: String = m.as_str().chars().map(|c| if c.is_ascii_digit() { '0' } else { c }).collect();
            zeroed + &time[m.end()..]
        }
        None => time.to_string(),
    }
}

/// Day number (days since 0001-01-01 is 1, as Python's date.toordinal).
pub fn ordinal(year: i64, month: i64, day: i64) -> i64 {
    // days from civil (Howard Hinnant), shifted to Python's ordinal
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468 + 719163
}

/// `date.fromordinal(n).isoformat()`, None outside years 1..9999 (Python raises there).
pub fn day_text(ordinal: i64) -> Option<String> {
    let z = ordinal - 719163 + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if m <= 2 { y + 1 } else { y };
    if !(1..=9999).contains(&year) {
        return None;
    }
    Some(format!("{year:04}-{m:02}-{d:02}"))
}
