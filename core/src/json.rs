//! Reading one NDJSON line as orjson reads it (the Python engine's parser): strict JSON, strings
//! checked for UTF-8, control characters and lone surrogates, duplicate keys keeping their first
//! place with the last value, at most 1,024 levels while reading. Numbers keep their text; the
//! reader notes the deepest nesting, the most digits a number's plain text would hold and numbers
//! beyond a double, which the caller checks against the engine's limits.
//!
//! The tree lives in an arena (one per thread, reset per line) and borrows the line: strings
//! without escapes are slices of it.

use bumpalo::collections::Vec as BumpVec;
use bumpalo::Bump;

pub const READ_DEPTH: usize = 1024; // orjson's own limit

#[derive(Debug, Clone, Copy)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    /// A number as written (`-?int(.frac)?([eE][+-]?exp)?`).
    Num(&'a str),
    Str(&'a str),
    Arr(&'a [Json<'a>]),
    Obj(&'a [(&'a str, Json<'a>)]),
}

impl<'a> Json<'a> {
    pub fn get(&self, key: &str) -> Option<&'a Json<'a>> {
        match self {
            Json::Obj(pairs) => pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    Syntax,
    TooDeep,
    /// Stopped after a number beyond a double: orjson stops there, and the Python engine reads
    /// the line on its exact path, which decides the fault.
    BeyondDouble,
}

pub struct Parsed<'a> {
    pub value: Json<'a>,
    pub depth: usize,
    pub digits: usize,
    /// A number beyond a double (orjson refuses it: "number is infinity").
    pub beyond_double: bool,
}

pub fn parse<'a>(input: &'a [u8], arena: &'a Bump) -> Result<Parsed<'a>, ReadError> {
    let mut reader = Reader { data: input, arena, at: 0, depth: 0, deepest: 0, digits: 0, beyond_double: false };
    let read = (|| {
        reader.space();
        let value = reader.value()?;
        reader.space();
        if reader.at != input.len() {
            return Err(ReadError::Syntax);
        }
        Ok(value)
    })();
    let value = match read {
        Err(_) if reader.beyond_double => return Err(ReadError::BeyondDouble),
        other => other?,
    };
    Ok(Parsed { value, depth: reader.deepest, digits: reader.digits, beyond_double: reader.beyond_double })
}

struct Reader<'a> {
    data: &'a [u8],
    arena: &'a Bump,
    at: usize,
    depth: usize,
    deepest: usize,
    digits: usize,
    beyond_double: bool,
}

impl<'a> Reader<'a> {
    #[inline]
    fn space(&mut self) {
        while let Some(&b) = self.data.get(self.at) {
            if b == b' ' || b == b'\n' || b == b'\r' || b == b'\t' {
                self.at += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.data.get(self.at).copied()
    }

    fn value(&mut self) -> Result<Json<'a>, ReadError> {
        match self.peek() {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.literal(b"true", Json::Bool(true)),
            Some(b'f') => self.literal(b"false", Json::Bool(false)),
            Some(b'n') => self.literal(b"null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(ReadError::Syntax),
        }
    }

    fn literal(&mut self, word: &[u8], value: Json<'a>) -> Result<Json<'a>, ReadError> {
        if self.data[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(ReadError::Syntax)
        }
    }

    fn enter(&mut self) -> Result<(), ReadError> {
        self.depth += 1;
        if self.depth > READ_DEPTH {
            return Err(ReadError::TooDeep);
        }
        if self.depth > self.deepest {
            self.deepest = self.depth;
        }
        Ok(())
    }

    fn object(&mut self) -> Result<Json<'a>, ReadError> {
        self.enter()?;
        self.at += 1;
        let mut pairs: BumpVec<'a, (&'a str, Json<'a>)> = BumpVec::with_capacity_in(8, self.arena);
        // Keys seen, by length and first byte: a repeated key is looked for only when its bit is set.
        let mut seen: u64 = 0;
        self.space();
        if self.peek() == Some(b'}') {
            self.at += 1;
            self.depth -= 1;
            return Ok(Json::Obj(&[]));
        }
        loop {
            self.space();
            if self.peek() != Some(b'"') {
                return Err(ReadError::Syntax);
            }
            let key = self.string()?;
            self.space();
            if self.peek() != Some(b':') {
                return Err(ReadError::Syntax);
            }
            self.at += 1;
            self.space();
            let value = self.value()?;
            // A repeated key keeps its first place and takes the last value (a Python dict).
            let bit = 1u64 << ((key.len().wrapping_mul(31) + key.as_bytes().first().map_or(0, |&b| b as usize)) & 63);
            let found = if seen & bit != 0 { pairs.iter().position(|(k, _)| *k == key) } else { None };
            seen |= bit;
            match found {
                Some(position) => pairs[position].1 = value,
                None => pairs.push((key, value)),
            }
            self.space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    break;
                }
                _ => return Err(ReadError::Syntax),
            }
        }
        self.depth -= 1;
        Ok(Json::Obj(pairs.into_bump_slice()))
    }

    fn array(&mut self) -> Result<Json<'a>, ReadError> {
        self.enter()?;
        self.at += 1;
        let mut items: BumpVec<'a, Json<'a>> = BumpVec::new_in(self.arena);
        self.space();
        if self.peek() == Some(b']') {
            self.at += 1;
            self.depth -= 1;
            return Ok(Json::Arr(&[]));
        }
        loop {
            self.space();
            items.push(self.value()?);
            self.space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    break;
                }
                _ => return Err(ReadError::Syntax),
            }
        }
        self.depth -= 1;
        Ok(Json::Arr(items.into_bump_slice()))
    }

    fn number(&mut self) -> Result<Json<'a>, ReadError> {
        let start = self.at;
        let data = self.data;
        if data[self.at] == b'-' {
            self.at += 1;
        }
        let int_start = self.at;
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.at += 1;
                }
            }
            _ => return Err(ReadError::Syntax),
        }
        let int_end = self.at;
        let mut fraction: &[u8] = &[];
        if self.peek() == Some(b'.') {
            self.at += 1;
            let frac_start = self.at;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.at += 1;
            }
            fraction = &data[frac_start..self.at];
            if fraction.is_empty() {
                return Err(ReadError::Syntax);
            }
        }
        let mut exponent: i64 = 0;
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            let mut negative = false;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                negative = self.peek() == Some(b'-');
                self.at += 1;
            }
            let exp_start = self.at;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                let digit = (data[self.at] - b'0') as i64;
                exponent = exponent.saturating_mul(10).saturating_add(digit);
                self.at += 1;
            }
            if self.at == exp_start {
                return Err(ReadError::Syntax);
            }
            if negative {
                exponent = -exponent;
            }
        }
        let digits = crate::numbers::plain_digits_of(&data[int_start..int_end], fraction, exponent);
        if digits > self.digits {
            self.digits = digits;
        }
        // SAFETY: a number is ASCII
        let text = unsafe { std::str::from_utf8_unchecked(&data[start..self.at]) };
        if (int_end - int_start) as i64 + exponent > 300 && text.parse::<f64>().map_or(true, f64::is_infinite) {
            self.beyond_double = true;
        }
        Ok(Json::Num(text))
    }

    fn string(&mut self) -> Result<&'a str, ReadError> {
        self.at += 1; // the opening quote
        let data = self.data;
        let start = self.at;
        // The common case: no escape, a slice of the line.
        let (end, ascii) = find_special(data, start);
        match data.get(end) {
            Some(b'"') => {
                self.at = end + 1;
                let raw = &data[start..end];
                if ascii {
                    // SAFETY: ASCII is UTF-8
                    return Ok(unsafe { std::str::from_utf8_unchecked(raw) });
                }
                return std::str::from_utf8(raw).map_err(|_| ReadError::Syntax);
            }
            Some(b'\\') => self.at = end,
            _ => return Err(ReadError::Syntax), // a control character, or the line ends
        }
        let mut out: BumpVec<'a, u8> = BumpVec::with_capacity_in(end - start + 16, self.arena);
        out.extend_from_slice(&data[start..end]);
        loop {
            match data.get(self.at) {
                None => return Err(ReadError::Syntax),
                Some(b'"') => {
                    self.at += 1;
                    let bytes = out.into_bump_slice();
                    return std::str::from_utf8(bytes).map_err(|_| ReadError::Syntax);
                }
                Some(b'\\') => {
                    self.at += 1;
                    let escaped = *data.get(self.at).ok_or(ReadError::Syntax)?;
                    self.at += 1;
                    match escaped {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let unit = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&unit) {
                                // a high surrogate: a low one must follow
                                if data.get(self.at) != Some(&b'\\') || data.get(self.at + 1) != Some(&b'u') {
                                    return Err(ReadError::Syntax);
                                }
                                self.at += 2;
                                let low = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&low) {
                                    return Err(ReadError::Syntax);
                                }
                                0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&unit) {
                                return Err(ReadError::Syntax);
                            } else {
                                unit
                            };
                            let ch = char::from_u32(code).ok_or(ReadError::Syntax)?;
                            let mut buffer = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buffer).as_bytes());
                        }
                        _ => return Err(ReadError::Syntax),
                    }
                }
                Some(&b) if b < 0x20 => return Err(ReadError::Syntax),
                Some(_) => {
                    let (end, _) = find_special(data, self.at);
                    out.extend_from_slice(&data[self.at..end]);
                    self.at = end;
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, ReadError> {
        let digits = self.data.get(self.at..self.at + 4).ok_or(ReadError::Syntax)?;
        let mut value = 0u32;
        for &d in digits {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(ReadError::Syntax),
            } as u32;
            value = value * 16 + v;
        }
        self.at += 4;
        Ok(value)
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The first index from `at` holding `"`, `\\` or a control character (or the end), eight bytes
/// at a time (the lowest byte flagged by these tests is always a true one), and whether the bytes
/// before it are ASCII.
#[inline]
pub fn find_special(data: &[u8], mut at: usize) -> (usize, bool) {
    let mut high = 0u64;
    while at + 8 <= data.len() {
        let word = u64::from_le_bytes(data[at..at + 8].try_into().unwrap());
        let quote = word ^ (ONES * b'"' as u64);
        let backslash = word ^ (ONES * b'\\' as u64);
        let found = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (word.wrapping_sub(ONES * 0x20) & !word);
        let found = found & HIGHS;
        if found != 0 {
            let end = at + (found.trailing_zeros() / 8) as usize;
            return (end, high & HIGHS == 0 && data[at..end].is_ascii());
        }
        high |= word;
        at += 8;
    }
    while at < data.len() {
        let b = data[at];
        if b == b'"' || b == b'\\' || b < 0x20 {
            return (at, high & HIGHS == 0);
        }
        high |= b as u64;
        at += 1;
    }
    (data.len(), high & HIGHS == 0)
}
