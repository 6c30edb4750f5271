//! encrypt (methods/encrypt.py): AES-CBC with PKCS#7 padding and a fresh random IV per value,
//! written as base64(IV || ciphertext).

use aes::cipher::{block_padding::Pkcs7, BlockEncryptMut, KeyIvInit};
use base64::Engine;

pub fn encrypt(plaintext: &str, key: &[u8], iv: &[u8; 16]) -> Option<String> {
    if plaintext.is_empty() {
        return Some(String::new());
    }
    let data = plaintext.as_bytes();
    let ciphertext = match key.len() {
        16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(key, iv).ok()?.encrypt_padded_vec_mut::<Pkcs7>(data),
        24 => cbc::Encryptor::<aes::Aes192>::new_from_slices(key, iv).ok()?.encrypt_padded_vec_mut::<Pkcs7>(data),
        32 => cbc::Encryptor::<aes::Aes256>::new_from_slices(key, iv).ok()?.encrypt_padded_vec_mut::<Pkcs7>(data),
        _ => return None,
    };
    let mut raw = Vec::with_capacity(16 + ciphertext.len());
    raw.extend_from_slice(iv);
    raw.extend_from_slice(&ciphertext);
    Some(base64::engine::general_purpose::STANDARD.encode(raw))
}

/// Random bytes for IVs, drawn from the operating system a few kilobytes at a time.
pub struct Ivs {
    buffer: Vec<u8>,
    at: usize,
}

impl Default for Ivs {
    fn default() -> Self {
        Ivs { buffer: vec![0; 4096], at: 4096 }
    }
}

impl Ivs {
    pub fn next(&mut self) -> Option<[u8; 16]> {
        if self.at + 16 > self.buffer.len() {
            getrandom::getrandom(&mut self.buffer).ok()?;
            self.at = 0;
        }
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&self.buffer[self.at..self.at + 16]);
        self.at += 16;
        Some(iv)
    }
}
