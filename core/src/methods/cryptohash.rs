//! cryptoHash (methods/cryptohash.py): HMAC-SHA256 in hex, with the key's inner and outer states
//! prepared once; of a reference only the id part, as the reference engine finds it.

use std::sync::LazyLock;

use hmac::{Hmac, Mac};
use regex::Regex;
use sha2::Sha256;

pub type HmacSha256 = Hmac<Sha256>;

pub fn prepared(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// The HMAC of `text` in lower-case hex (64 characters; callers give "" for "").
pub fn hex(mac: &HmacSha256, text: &str) -> [u8; 64] {
    let mut m = mac.clone();
    m.update(text.as_bytes());
    let digest = m.finalize().into_bytes();
    let mut out = [0u8; 64];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in digest.iter().enumerate() {
        out[2 * i] = HEX[(byte >> 4) as usize];
        out[2 * i + 1] = HEX[(byte & 15) as usize];
    }
    out
}

const ID: &str = r"[A-Za-z0-9\-.]{1,64}";
static PLAIN_ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(&format!("^{ID}$")).unwrap());
static OID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^urn:oid:(?P<id>[0-2](\.(0|[1-9][0-9]*))+)$").unwrap());
static UUID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^urn:uuid:(?P<id>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$")
        .unwrap()
});

/// `_LITERAL_REFERENCE`, over the resource types the engine knows (sorted, as Python joins them).
pub fn literal_reference(types: &[String]) -> Regex {
    let mut sorted: Vec<&str> = types.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    Regex::new(&format!(
        r"^(?P<prefix>((http|https)://[A-Za-z0-9/.:%$]*)?({})/)(?P<id>{ID})(?P<suffix>/_history/{ID})?$",
        sorted.join("|")
    ))
    .unwrap()
}

/// `transform_reference`: `hash` applied to the id part of a reference.
pub fn transform_reference(
    reference: &str,
    literal: &Regex,
    is_type: impl Fn(&str) -> bool,
    mut hash: impl FnMut(&str) -> String,
) -> String {
    if let Some(rest) = reference.strip_prefix('#') {
        return if rest.is_empty() { reference.to_string() } else { format!("#{}", hash(rest)) };
    }
    if let Some((resource_type, id)) = reference.split_once('/') {
        if is_type(resource_type) && PLAIN_ID.is_match(id) {
            return format!("{resource_type}/{}", hash(id));
        }
    }
    if let Some(c) = literal.captures(reference) {
        let suffix = c.name("suffix").map_or("", |m| m.as_str());
        return format!("{}{}{}", &c["prefix"], hash(&c["id"]), suffix);
    }
    if let Some(c) = OID.captures(reference) {
        return format!("urn:oid:{}", hash(&c["id"]));
    }
    if let Some(c) = UUID.captures(reference) {
        return format!("urn:uuid:{}", hash(&c["id"]));
    }
    hash(reference)
}
