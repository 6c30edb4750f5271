//! dateShift's offsets (methods/dateshift.py): the reference's fold of prefix and key, and our
//! `patient` scope.

use hmac::Mac;

use super::cryptohash::HmacSha256;

/// The reference's offset: o = (o*131 + b) % 101 over UTF-8(prefix + key), minus 50.
pub fn offset(prefix: &str, key: &[u8]) -> i64 {
    let mut o: u32 = 0;
    for &b in prefix.as_bytes().iter().chain(key) {
        o = (o * 131 + b as u32) % 101;
    }
    o as i64 - 50
}

/// HMAC-SHA256(key, "patient:" + id) onto +-days, never 0; None for a range Python cannot use.
pub fn patient_offset(mac: &HmacSha256, patient_id: &str, days: i64) -> Option<i64> {
    if days <= 0 {
        return None;
    }
    let mut m = mac.clone();
    m.update(b"patient:");
    m.update(patient_id.as_bytes());
    let digest = m.finalize().into_bytes();
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    let slot = (u64::from_be_bytes(head) % (2 * days as u64)) as i64;
    Some(if slot < days { slot - days } else { slot - days + 1 })
}
