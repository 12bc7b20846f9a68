//! AES-CCM (NIST SP 800-38C) with runtime nonce and tag sizes, plus SJCL's rule for the nonce.
//!
//! The RustCrypto `ccm` crate fixes the nonce and tag sizes as type parameters. SJCL envelopes
//! can use any of 7 nonce sizes, 3 tag sizes and 3 key sizes, and instantiating `ccm` for all 63
//! combinations put about 120 KB of code into the page's 460 KB release wasm. This module takes
//! the sizes at run time instead, so only the AES key size is generic, and it runs on the `aes`
//! crate's block cipher. Its output is checked against the `ccm` crate, the SP 800-38C example
//! vectors and SJCL's own vectors in the tests.
//!
//! SJCL 1.0.x (`core/ccm.js`) takes an IV of 7 to 16 bytes and picks the length-field size L as
//! the smallest of 2, 3 or 4 bytes that fits the message length, raised to `15 - iv_len` when
//! that is larger. The nonce is the first `15 - L` bytes of the IV, so 7 to 13 bytes.

use aes::{Aes128, Aes192, Aes256};
use cipher::array::Array;
use cipher::consts::U16;
use cipher::{BlockCipherEncrypt, BlockSizeUser, KeyInit};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// Minimum IV length SJCL accepts, in bytes.
pub const MIN_IV_LEN: usize = 7;

/// Maximum IV length SJCL accepts, in bytes (four 32-bit words).
pub const MAX_IV_LEN: usize = 16;

/// Maximum tag length CCM allows, in bytes: one AES block.
pub const MAX_TAG_LEN: usize = 16;

/// Blocks of key stream computed per call to the cipher, so a bitsliced AES can work on several
/// counter blocks at once.
const CTR_BATCH: usize = 8;

type Block = Array<u8, U16>;

/// The CCM operation failed: the tag did not match, or a size was outside what CCM allows.
///
/// Deliberately carries no detail, so a caller cannot tell a wrong key from tampered bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CcmError;

/// An AES key of 128, 192 or 256 bits, with its key schedule expanded once. The `aes` crate
/// zeroizes the schedule on drop.
pub enum AesKey {
    Aes128(Aes128),
    Aes192(Aes192),
    Aes256(Aes256),
}

/// An authentication tag of `len` bytes, at most [`MAX_TAG_LEN`].
#[derive(Clone, Copy)]
pub struct Tag {
    bytes: [u8; MAX_TAG_LEN],
    len: usize,
}

impl Tag {
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
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

    /// Encrypts `buf` in place and returns the tag of `tag_len` bytes.
    pub fn seal_in_place(
        &self,
        nonce: &[u8],
        adata: &[u8],
        tag_len: usize,
        buf: &mut [u8],
    ) -> Result<Tag, CcmError> {
        match self {
            Self::Aes128(cipher) => seal(cipher, nonce, adata, tag_len, buf),
            Self::Aes192(cipher) => seal(cipher, nonce, adata, tag_len, buf),
            Self::Aes256(cipher) => seal(cipher, nonce, adata, tag_len, buf),
        }
    }

    /// Decrypts `buf` in place and checks `tag` in constant time. On a mismatch `buf` is
    /// zeroed, so no unauthenticated plaintext leaves this function.
    pub fn open_in_place(
        &self,
        nonce: &[u8],
        adata: &[u8],
        tag: &[u8],
        buf: &mut [u8],
    ) -> Result<(), CcmError> {
        match self {
            Self::Aes128(cipher) => open(cipher, nonce, adata, tag, buf),
            Self::Aes192(cipher) => open(cipher, nonce, adata, tag, buf),
            Self::Aes256(cipher) => open(cipher, nonce, adata, tag, buf),
        }
    }
}

// The single-block operations that `crate::webcrypto` composes with WebCrypto's AES-CBC and
// AES-CTR, which exists on wasm32 only.
#[cfg(any(target_arch = "wasm32", test))]
impl AesKey {
    /// Encrypts one block in place.
    pub(crate) fn encrypt_block(&self, block: &mut [u8; 16]) {
        let mut array = Block::from(*block);
        match self {
            Self::Aes128(cipher) => cipher.encrypt_block(&mut array),
            Self::Aes192(cipher) => cipher.encrypt_block(&mut array),
            Self::Aes256(cipher) => cipher.encrypt_block(&mut array),
        }
        *block = array.0;
        array.as_mut_slice().zeroize();
    }

    /// Returns the CBC-MAC state after B0 and the adata, from which a caller can chain the
    /// payload's blocks through another AES-CBC (WebCrypto's, in `crate::webcrypto`). The sizes
    /// must have passed [`check_sizes`].
    pub(crate) fn mac_before_payload(
        &self,
        nonce: &[u8],
        adata: &[u8],
        tag_len: usize,
        payload_len: usize,
    ) -> [u8; 16] {
        match self {
            Self::Aes128(c) => mac_before_payload(c, nonce, adata, tag_len, payload_len).0,
            Self::Aes192(c) => mac_before_payload(c, nonce, adata, tag_len, payload_len).0,
            Self::Aes256(c) => mac_before_payload(c, nonce, adata, tag_len, payload_len).0,
        }
    }
}

/// Returns the nonce SJCL uses for an IV of 7 to 16 bytes and a message of `msg_len` bytes.
pub fn sjcl_nonce(iv: &[u8], msg_len: usize) -> Result<&[u8], CcmError> {
    if !(MIN_IV_LEN..=MAX_IV_LEN).contains(&iv.len()) {
        return Err(CcmError);
    }
    let mut length_field = 2;
    while length_field < 4 && (msg_len >> (8 * length_field)) != 0 {
        length_field += 1;
    }
    let length_field = length_field.max(15usize.saturating_sub(iv.len()));
    Ok(&iv[..15 - length_field])
}

fn seal<C: Cipher>(
    cipher: &C,
    nonce: &[u8],
    adata: &[u8],
    tag_len: usize,
    buf: &mut [u8],
) -> Result<Tag, CcmError> {
    check_sizes(nonce, tag_len, buf.len())?;

    let mac = cbc_mac(cipher, nonce, adata, tag_len, buf);
    let first_key_block = apply_key_stream(cipher, nonce, buf);

    let mut tag = Tag {
        bytes: [0; MAX_TAG_LEN],
        len: tag_len,
    };
    for (i, byte) in tag.bytes[..tag_len].iter_mut().enumerate() {
        *byte = mac[i] ^ first_key_block[i];
    }
    Ok(tag)
}

fn open<C: Cipher>(
    cipher: &C,
    nonce: &[u8],
    adata: &[u8],
    tag: &[u8],
    buf: &mut [u8],
) -> Result<(), CcmError> {
    check_sizes(nonce, tag.len(), buf.len())?;

    let first_key_block = apply_key_stream(cipher, nonce, buf);
    let mac = cbc_mac(cipher, nonce, adata, tag.len(), buf);

    let mut expected = [0u8; MAX_TAG_LEN];
    for (i, byte) in expected[..tag.len()].iter_mut().enumerate() {
        *byte = mac[i] ^ first_key_block[i];
    }
    if bool::from(expected[..tag.len()].ct_eq(tag)) {
        return Ok(());
    }
    buf.zeroize();
    Err(CcmError)
}

/// Checks the sizes SP 800-38C allows: a nonce of 7 to 13 bytes, an even tag of 4 to 16 bytes,
/// and a payload whose length fits the length field of `15 - nonce_len` bytes.
pub(crate) fn check_sizes(
    nonce: &[u8],
    tag_len: usize,
    payload_len: usize,
) -> Result<(), CcmError> {
    if !(7..=13).contains(&nonce.len())
        || !(4..=16).contains(&tag_len)
        || !tag_len.is_multiple_of(2)
    {
        return Err(CcmError);
    }
    let length_field_bits = 8 * (15 - nonce.len());
    if length_field_bits < 64 && (payload_len as u64) >> length_field_bits != 0 {
        return Err(CcmError);
    }
    Ok(())
}

/// Computes the CBC-MAC over the first block B0, the encoded adata and the payload.
fn cbc_mac<C: Cipher>(
    cipher: &C,
    nonce: &[u8],
    adata: &[u8],
    tag_len: usize,
    payload: &[u8],
) -> Block {
    let mut mac = mac_before_payload(cipher, nonce, adata, tag_len, payload.len());
    let mut absorber = Absorber::new(cipher, &mut mac);
    absorber.absorb(payload);
    absorber.finish();
    mac
}

/// Computes the CBC-MAC state after B0 and the encoded, zero-padded adata: the chaining value
/// the payload's first block is XORed with.
fn mac_before_payload<C: Cipher>(
    cipher: &C,
    nonce: &[u8],
    adata: &[u8],
    tag_len: usize,
    payload_len: usize,
) -> Block {
    let mut mac = Block::from(first_block(nonce, adata.len(), tag_len, payload_len));
    cipher.encrypt_block(&mut mac);

    if !adata.is_empty() {
        let (prefix, prefix_len) = adata_length_prefix(adata.len());
        let mut absorber = Absorber::new(cipher, &mut mac);
        absorber.absorb(&prefix[..prefix_len]);
        absorber.absorb(adata);
        absorber.finish();
    }
    mac
}

/// Returns B0, the first block of the CBC-MAC: flags, nonce, and the payload length in the
/// last `15 - nonce.len()` bytes. The sizes must have passed [`check_sizes`].
pub(crate) fn first_block(
    nonce: &[u8],
    adata_len: usize,
    tag_len: usize,
    payload_len: usize,
) -> [u8; 16] {
    let length_field = 15 - nonce.len();
    let mut block = [0u8; 16];
    let adata_flag = if adata_len == 0 { 0 } else { 0x40 };
    block[0] = adata_flag | (((tag_len - 2) / 2) as u8) << 3 | (length_field - 1) as u8;
    block[1..1 + nonce.len()].copy_from_slice(nonce);
    let length = (payload_len as u64).to_be_bytes();
    let used = length_field.min(8);
    block[16 - used..].copy_from_slice(&length[8 - used..]);
    block
}

/// Returns the length prefix of non-empty adata and its length: 2 bytes below 0xFF00, else
/// 0xFFFE and 4 bytes, else 0xFFFF and 8 bytes (SP 800-38C, A.2.2).
pub(crate) fn adata_length_prefix(len: usize) -> ([u8; 10], usize) {
    let mut prefix = [0u8; 10];
    let prefix_len = if len < 0xFF00 {
        prefix[..2].copy_from_slice(&(len as u16).to_be_bytes());
        2
    } else if (len as u64) < 1 << 32 {
        prefix[..2].copy_from_slice(&[0xFF, 0xFE]);
        prefix[2..6].copy_from_slice(&(len as u32).to_be_bytes());
        6
    } else {
        prefix[..2].copy_from_slice(&[0xFF, 0xFF]);
        prefix[2..].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    (prefix, prefix_len)
}

/// Returns counter block `counter` for this nonce: flags `L - 1`, the nonce, and the counter
/// in the last `L = 15 - nonce.len()` bytes.
pub(crate) fn counter_block(nonce: &[u8], counter: u64) -> [u8; 16] {
    let length_field = 15 - nonce.len();
    let mut block = [0u8; 16];
    block[0] = (length_field - 1) as u8;
    block[1..1 + nonce.len()].copy_from_slice(nonce);
    let used = length_field.min(8);
    block[16 - used..].copy_from_slice(&counter.to_be_bytes()[8 - used..]);
    block
}

/// Feeds bytes into a CBC-MAC, zero-padding the last partial block on `finish`.
struct Absorber<'a, C> {
    cipher: &'a C,
    mac: &'a mut Block,
    filled: usize,
}

impl<'a, C: Cipher> Absorber<'a, C> {
    fn new(cipher: &'a C, mac: &'a mut Block) -> Self {
        Self {
            cipher,
            mac,
            filled: 0,
        }
    }

    fn absorb(&mut self, mut data: &[u8]) {
        // Whole blocks while the buffer is empty: the common case for the payload.
        while self.filled == 0 && data.len() >= 16 {
            let (block, rest) = data.split_at(16);
            xor_block(self.mac, block);
            self.cipher.encrypt_block(self.mac);
            data = rest;
        }
        while !data.is_empty() {
            let take = (16 - self.filled).min(data.len());
            for (m, d) in self.mac[self.filled..self.filled + take]
                .iter_mut()
                .zip(data)
            {
                *m ^= d;
            }
            self.filled += take;
            data = &data[take..];
            if self.filled == 16 {
                self.cipher.encrypt_block(self.mac);
                self.filled = 0;
            }
        }
    }

    fn finish(self) {
        if self.filled != 0 {
            self.cipher.encrypt_block(self.mac);
        }
    }
}

/// XORs `buf` with the CTR key stream from counter 1 on, and returns the key stream block of
/// counter 0, which encrypts the tag.
fn apply_key_stream<C: Cipher>(cipher: &C, nonce: &[u8], buf: &mut [u8]) -> Block {
    let mut first = Block::from(counter_block(nonce, 0));
    cipher.encrypt_block(&mut first);

    // `check_sizes` keeps the block count below 2^(8 * L), so the counter never overflows its
    // field.
    let mut counter: u64 = 1;
    let mut batch: [Block; CTR_BATCH] = Default::default();
    for chunk in buf.chunks_mut(16 * CTR_BATCH) {
        let blocks = chunk.len().div_ceil(16);
        for block in &mut batch[..blocks] {
            *block = Block::from(counter_block(nonce, counter));
            counter += 1;
        }
        cipher.encrypt_blocks(&mut batch[..blocks]);
        for (bytes, key_stream) in chunk.chunks_mut(16).zip(&batch) {
            if bytes.len() == 16 {
                xor_in_place(bytes, key_stream);
            } else {
                for (b, k) in bytes.iter_mut().zip(key_stream.iter()) {
                    *b ^= k;
                }
            }
        }
    }
    for block in &mut batch {
        block.as_mut_slice().zeroize();
    }
    first
}

/// XORs a 16-byte slice into a block, as one 128-bit operation rather than 16 byte steps.
fn xor_block(block: &mut Block, bytes: &[u8]) {
    let mut word = [0u8; 16];
    word.copy_from_slice(bytes);
    let xored = u128::from_ne_bytes(word) ^ u128::from_ne_bytes(block.0);
    block.0 = xored.to_ne_bytes();
}

/// XORs a key stream block into a 16-byte slice.
fn xor_in_place(bytes: &mut [u8], key_stream: &Block) {
    let mut word = [0u8; 16];
    word.copy_from_slice(bytes);
    let xored = u128::from_ne_bytes(word) ^ u128::from_ne_bytes(key_stream.0);
    bytes.copy_from_slice(&xored.to_ne_bytes());
}

/// The block ciphers CCM runs on here: AES with any key size.
trait Cipher: BlockSizeUser<BlockSize = U16> + BlockCipherEncrypt {}

impl<C: BlockSizeUser<BlockSize = U16> + BlockCipherEncrypt> Cipher for C {}

#[cfg(test)]
mod tests;
