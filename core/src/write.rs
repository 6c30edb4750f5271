//! Writing JSON as the Python engine writes it: orjson's compact form (`\uXXXX` in lower-case hex
//! for control characters, `\b \t \n \f \r` short, nothing else escaped), then Newtonsoft's three
//! extra escapes (U+0085, U+2028, U+2029).

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Where JSON is written: the block's output, or a buffer in an arena.
pub trait Out {
    fn push(&mut self, byte: u8);
    fn extend_from_slice(&mut self, bytes: &[u8]);
}

impl Out for Vec<u8> {
    #[inline]
    fn push(&mut self, byte: u8) {
        Vec::push(self, byte)
    }
    #[inline]
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        Vec::extend_from_slice(self, bytes)
    }
}

impl Out for bumpalo::collections::Vec<'_, u8> {
    #[inline]
    fn push(&mut self, byte: u8) {
        bumpalo::collections::Vec::push(self, byte)
    }
    #[inline]
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        bumpalo::collections::Vec::extend_from_slice(self, bytes)
    }
}

pub fn string<O: Out>(out: &mut O, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    // Most strings need no escape: found eight bytes at a time, copied whole.
    let clean = clean_prefix(bytes);
    if clean == bytes.len() {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    let mut i = clean;
    while i < bytes.len() {
        let b = bytes[i];
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            8 => Some(b"\\b"),
            12 => Some(b"\\f"),
            0..=0x1f => None,
            0xc2 if bytes.get(i + 1) == Some(&0x85) => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(b"\\u0085");
                i += 2;
                start = i;
                continue;
            }
            0xe2 if bytes.get(i + 1) == Some(&0x80) && matches!(bytes.get(i + 2), Some(0xa8 | 0xa9)) => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(if bytes[i + 2] == 0xa8 { b"\\u2028" } else { b"\\u2029" });
                i += 3;
                start = i;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[start..i]);
        match escape {
            Some(sequence) => out.extend_from_slice(sequence),
            None => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
            }
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// `"key":` after a comma when the object already holds a member.
#[inline]
pub fn key<O: Out>(out: &mut O, first: &mut bool, name: &str) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    string(out, name);
    out.push(b':');
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// How many leading bytes need no escape (ASCII, not `"`, `\\` or a control character).
#[inline]
fn clean_prefix(bytes: &[u8]) -> usize {
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let word = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        let quote = word ^ (ONES * b'"' as u64);
        let backslash = word ^ (ONES * b'\\' as u64);
        let found = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (word.wrapping_sub(ONES * 0x20) & !word)
            | word)
            & HIGHS;
        if found != 0 {
            return at + (found.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while at < bytes.len() {
        let b = bytes[at];
        if b == b'"' || b == b'\\' || b < 0x20 || b >= 0x80 {
            return at;
        }
        at += 1;
    }
    bytes.len()
}

/// An integer as Python prints it.
pub fn integer(out: &mut Vec<u8>, value: i64) {
    let mut buffer = [0u8; 20];
    let mut at = buffer.len();
    let mut rest = value.unsigned_abs();
    loop {
        at -= 1;
        buffer[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if value < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buffer[at..]);
}
