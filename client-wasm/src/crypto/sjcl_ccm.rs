//! AES-CCM with SJCL's parameter rules, on top of the RustCrypto `ccm` crate.
//!
//! SJCL 1.0.x (`core/ccm.js`) takes an IV of 7 to 16 bytes and a message, then picks the CCM
//! length-field size L as the smallest of 2, 3 or 4 bytes that holds the message length, raised
//! to `15 - iv_len` when that is larger. The nonce is the first `15 - L` bytes of the IV, so it
//! is 7 to 13 bytes long. The `ccm` crate fixes key, tag and nonce sizes as types, so this module
//! dispatches the sizes SJCL allows to the matching instance.

use aes::{Aes128, Aes192, Aes256};
use ccm::aead::AeadInOut;
use ccm::aead::array::ArraySize;
use ccm::consts::{U7, U8, U9, U10, U11, U12, U13, U16};
use ccm::{Ccm, KeyInit, NonceSize, TagSize};
use cipher::{BlockCipherEncrypt, BlockSizeUser};

/// Shortest IV SJCL accepts, in bytes.
pub const MIN_IV_LEN: usize = 7;

/// Longest IV SJCL accepts, in bytes (four 32-bit words).
pub const MAX_IV_LEN: usize = 16;

/// The CCM operation failed: the tag did not match, or a size was outside what CCM allows.
///
/// Deliberately carries no detail, so a caller cannot tell a wrong key from tampered bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CcmError;

/// An AES key of 128, 192 or 256 bits, with its key schedule expanded once.
pub enum AesKey {
    Aes128(Aes128),
    Aes192(Aes192),
    Aes256(Aes256),
}

impl AesKey {
    /// Expands a 16, 24 or 32-byte key.
    pub fn new(key: &[u8]) -> Result<Self, CcmError> {
        match key.len() {
            16 => Aes128::new_from_slice(key).map(Self::Aes128),
            24 => Aes192::new_from_slice(key).map(Self::Aes192),
            32 => Aes256::new_from_slice(key).map(Self::Aes256),
            _ => return Err(CcmError),
        }
        .map_err(|_| CcmError)
    }
}

/// Returns the nonce length SJCL uses for an IV of `iv_len` bytes and a message of `msg_len`.
pub fn nonce_len(iv_len: usize, msg_len: usize) -> usize {
    let mut length_field = 2;
    while length_field < 4 && (msg_len >> (8 * length_field)) != 0 {
        length_field += 1;
    }
    let length_field = length_field.max(15usize.saturating_sub(iv_len));
    15 - length_field
}

/// Encrypts `buf` in place and appends a tag of `tag_len` bytes.
pub fn seal(
    key: &AesKey,
    tag_len: usize,
    iv: &[u8],
    adata: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(), CcmError> {
    let nonce = sjcl_nonce(iv, buf.len())?;
    match key {
        AesKey::Aes128(cipher) => by_tag(cipher, tag_len, nonce, adata, Op::Seal(buf)),
        AesKey::Aes192(cipher) => by_tag(cipher, tag_len, nonce, adata, Op::Seal(buf)),
        AesKey::Aes256(cipher) => by_tag(cipher, tag_len, nonce, adata, Op::Seal(buf)),
    }
}

/// Checks the trailing tag of `tag_len` bytes and decrypts `buf` in place, leaving the plaintext.
pub fn open(
    key: &AesKey,
    tag_len: usize,
    iv: &[u8],
    adata: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(), CcmError> {
    let msg_len = buf.len().checked_sub(tag_len).ok_or(CcmError)?;
    let nonce = sjcl_nonce(iv, msg_len)?;
    match key {
        AesKey::Aes128(cipher) => by_tag(cipher, tag_len, nonce, adata, Op::Open(buf)),
        AesKey::Aes192(cipher) => by_tag(cipher, tag_len, nonce, adata, Op::Open(buf)),
        AesKey::Aes256(cipher) => by_tag(cipher, tag_len, nonce, adata, Op::Open(buf)),
    }
}

fn sjcl_nonce(iv: &[u8], msg_len: usize) -> Result<&[u8], CcmError> {
    if !(MIN_IV_LEN..=MAX_IV_LEN).contains(&iv.len()) {
        return Err(CcmError);
    }
    Ok(&iv[..nonce_len(iv.len(), msg_len)])
}

enum Op<'a> {
    Seal(&'a mut Vec<u8>),
    Open(&'a mut Vec<u8>),
}

/// The tag sizes SJCL's JSON envelope allows: 64, 96 and 128 bits.
fn by_tag<C>(cipher: &C, tag_len: usize, nonce: &[u8], adata: &[u8], op: Op) -> Result<(), CcmError>
where
    C: BlockSizeUser<BlockSize = U16> + BlockCipherEncrypt + Clone,
{
    match tag_len {
        8 => by_nonce::<C, U8>(cipher, nonce, adata, op),
        12 => by_nonce::<C, U12>(cipher, nonce, adata, op),
        16 => by_nonce::<C, U16>(cipher, nonce, adata, op),
        _ => Err(CcmError),
    }
}

fn by_nonce<C, M>(cipher: &C, nonce: &[u8], adata: &[u8], op: Op) -> Result<(), CcmError>
where
    C: BlockSizeUser<BlockSize = U16> + BlockCipherEncrypt + Clone,
    M: ArraySize + TagSize,
{
    match nonce.len() {
        7 => run::<C, M, U7>(cipher, nonce, adata, op),
        8 => run::<C, M, U8>(cipher, nonce, adata, op),
        9 => run::<C, M, U9>(cipher, nonce, adata, op),
        10 => run::<C, M, U10>(cipher, nonce, adata, op),
        11 => run::<C, M, U11>(cipher, nonce, adata, op),
        12 => run::<C, M, U12>(cipher, nonce, adata, op),
        13 => run::<C, M, U13>(cipher, nonce, adata, op),
        _ => Err(CcmError),
    }
}

fn run<C, M, N>(cipher: &C, nonce: &[u8], adata: &[u8], op: Op) -> Result<(), CcmError>
where
    C: BlockSizeUser<BlockSize = U16> + BlockCipherEncrypt + Clone,
    M: ArraySize + TagSize,
    N: ArraySize + NonceSize,
{
    let ccm = Ccm::<C, M, N>::from(cipher.clone());
    let nonce = ccm::Nonce::<N>::try_from(nonce).map_err(|_| CcmError)?;
    match op {
        Op::Seal(buf) => ccm.encrypt_in_place(&nonce, adata, buf),
        Op::Open(buf) => ccm.decrypt_in_place(&nonce, adata, buf),
    }
    .map_err(|_| CcmError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_len_follows_sjcl_rule() {
        assert_eq!(nonce_len(16, 0), 13);
        assert_eq!(nonce_len(16, 65_535), 13);
        assert_eq!(nonce_len(16, 65_536), 12);
        assert_eq!(nonce_len(16, 1 << 24), 11);
        assert_eq!(nonce_len(8, 10), 8);
        assert_eq!(nonce_len(12, 10), 12);
        assert_eq!(nonce_len(12, 1 << 24), 11);
        assert_eq!(nonce_len(7, 0), 7);
    }

    #[test]
    fn seal_open_round_trip() {
        let key = AesKey::new(&[7u8; 16]).unwrap();
        let iv = [1u8; 16];
        let mut buf = b"hello".to_vec();
        seal(&key, 8, &iv, b"", &mut buf).unwrap();
        assert_eq!(buf.len(), 5 + 8);
        open(&key, 8, &iv, b"", &mut buf).unwrap();
        assert_eq!(buf, b"hello");
    }
}
