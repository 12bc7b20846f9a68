use ::ccm::aead::AeadInOut;
use ::ccm::aead::array::ArraySize;
use ::ccm::consts::{U4, U7, U8, U10, U12, U13, U16};
use ::ccm::{Ccm, KeyInit as _, NonceSize, TagSize};
use proptest::prelude::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::crypto::test_support::hex;

/// The key of every example in NIST SP 800-38C, Appendix C.
const APPENDIX_C_KEY: &str = "404142434445464748494a4b4c4d4e4f";

fn check_vector(nonce: &str, adata: &[u8], plaintext: &str, expected: &str) {
    let key = AesKey::new(&hex(APPENDIX_C_KEY)).unwrap();
    let nonce = hex(nonce);
    let expected = hex(expected);
    let tag_len = expected.len() - plaintext.len() / 2;

    let mut buf = hex(plaintext);
    let tag = key.seal_in_place(&nonce, adata, tag_len, &mut buf).unwrap();
    buf.extend_from_slice(tag.as_slice());
    assert_eq!(buf, expected, "ciphertext and tag");

    let split = buf.len() - tag_len;
    let (ciphertext, tag) = buf.split_at_mut(split);
    key.open_in_place(&nonce, adata, tag, ciphertext).unwrap();
    assert_eq!(ciphertext, hex(plaintext), "decrypted plaintext");
}

#[test]
fn nist_sp800_38c_example_1() {
    check_vector(
        "10111213141516",
        &hex("0001020304050607"),
        "20212223",
        "7162015b4dac255d",
    );
}

#[test]
fn nist_sp800_38c_example_2() {
    check_vector(
        "1011121314151617",
        &hex("000102030405060708090a0b0c0d0e0f"),
        "202122232425262728292a2b2c2d2e2f",
        "d2a1f0e051ea5f62081a7792073d593d1fc64fbfaccd",
    );
}

#[test]
fn nist_sp800_38c_example_3() {
    check_vector(
        "101112131415161718191a1b",
        &hex("000102030405060708090a0b0c0d0e0f10111213"),
        "202122232425262728292a2b2c2d2e2f3031323334353637",
        "e3b201a9f5b71a7a9b1ceaeccd97e70b6176aad9a4428aa5484392fbc1b09951",
    );
}

#[test]
fn nist_sp800_38c_example_4() {
    // The associated data is 2^16 bytes: 256 repetitions of 00 01 .. ff, long enough to need
    // the six-byte length prefix.
    let adata: Vec<u8> = (0..65_536u32).map(|i| i as u8).collect();
    check_vector(
        "101112131415161718191a1b1c",
        &adata,
        "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f",
        concat!(
            "69915dad1e84c6376a68c2967e4dab615ae0fd1faec44cc484828529463ccf72",
            "b4ac6bec93e8598e7f0dadbcea5b"
        ),
    );
}

#[test]
fn sjcl_nonce_follows_length_rule() {
    let iv: Vec<u8> = (0..16).collect();
    let nonce_len =
        |iv_len: usize, msg_len: usize| sjcl_nonce(&iv[..iv_len], msg_len).unwrap().len();
    assert_eq!(nonce_len(16, 0), 13);
    assert_eq!(nonce_len(16, 65_535), 13);
    assert_eq!(nonce_len(16, 65_536), 12);
    assert_eq!(nonce_len(16, (1 << 24) - 1), 12);
    assert_eq!(nonce_len(16, 1 << 24), 11);
    assert_eq!(nonce_len(13, 10), 13);
    assert_eq!(nonce_len(12, 10), 12);
    assert_eq!(nonce_len(12, 1 << 24), 11);
    assert_eq!(nonce_len(8, 1 << 24), 8);
    assert_eq!(nonce_len(7, 0), 7);
    assert_eq!(sjcl_nonce(&iv[..6], 0), Err(CcmError));
    assert_eq!(sjcl_nonce(&[0; 17], 0), Err(CcmError));
}

#[test]
fn sizes_outside_ccm_rejected() {
    let key = AesKey::new(&[1; 16]).unwrap();
    let mut buf = vec![0u8; 4];
    assert!(key.seal_in_place(&[0; 6], b"", 8, &mut buf).is_err());
    assert!(key.seal_in_place(&[0; 14], b"", 8, &mut buf).is_err());
    assert!(key.seal_in_place(&[0; 13], b"", 7, &mut buf).is_err());
    assert!(key.seal_in_place(&[0; 13], b"", 2, &mut buf).is_err());
    assert!(key.seal_in_place(&[0; 13], b"", 18, &mut buf).is_err());

    // A 13-byte nonce leaves a 2-byte length field, so 65,536 bytes do not fit.
    let mut long = vec![0u8; 65_536];
    assert!(key.seal_in_place(&[0; 13], b"", 8, &mut long).is_err());
    assert!(key.seal_in_place(&[0; 12], b"", 8, &mut long).is_ok());
}

#[test]
fn every_flipped_bit_rejected() {
    let key = AesKey::new(&[9; 24]).unwrap();
    let nonce = [3u8; 11];
    let plaintext = b"twenty-one bytes long";
    let mut sealed = plaintext.to_vec();
    let tag = key
        .seal_in_place(&nonce, b"header", 12, &mut sealed)
        .unwrap();
    sealed.extend_from_slice(tag.as_slice());

    for position in 0..sealed.len() * 8 {
        let mut tampered = sealed.clone();
        tampered[position / 8] ^= 1 << (position % 8);
        let (ciphertext, tag) = tampered.split_at_mut(plaintext.len());
        let result = key.open_in_place(&nonce, b"header", tag, ciphertext);
        assert_eq!(result, Err(CcmError), "bit {position} flipped");
        assert!(
            ciphertext.iter().all(|&b| b == 0),
            "bit {position}: output not zeroed"
        );
    }
}

#[test]
fn altered_adata_or_nonce_rejected() {
    let key = AesKey::new(&[5; 32]).unwrap();
    let mut buf = b"payload".to_vec();
    let tag = key.seal_in_place(&[1; 13], b"adata", 8, &mut buf).unwrap();
    let sealed = buf.clone();

    assert!(
        key.open_in_place(&[1; 13], b"adatA", tag.as_slice(), &mut buf)
            .is_err()
    );
    let mut buf = sealed.clone();
    assert!(
        key.open_in_place(&[1; 13], b"", tag.as_slice(), &mut buf)
            .is_err()
    );
    let mut buf = sealed.clone();
    assert!(
        key.open_in_place(&[2; 13], b"adata", tag.as_slice(), &mut buf)
            .is_err()
    );
    let mut buf = sealed;
    assert!(
        key.open_in_place(&[1; 13], b"adata", &tag.as_slice()[..6], &mut buf)
            .is_err()
    );
}

/// Seals with the RustCrypto `ccm` crate, the reference for the property tests below.
fn reference_seal<C, M, N>(cipher: C, nonce: &[u8], adata: &[u8], plaintext: &[u8]) -> Vec<u8>
where
    C: BlockSizeUser<BlockSize = U16> + BlockCipherEncrypt + Clone,
    M: ArraySize + TagSize,
    N: ArraySize + NonceSize,
{
    let ccm = Ccm::<C, M, N>::from(cipher);
    let nonce = ::ccm::Nonce::<N>::try_from(nonce).unwrap();
    let mut buf = plaintext.to_vec();
    ccm.encrypt_in_place(&nonce, adata, &mut buf).unwrap();
    buf
}

fn our_seal(key: &[u8], nonce: &[u8], adata: &[u8], tag_len: usize, plaintext: &[u8]) -> Vec<u8> {
    let key = AesKey::new(key).unwrap();
    let mut buf = plaintext.to_vec();
    let tag = key.seal_in_place(nonce, adata, tag_len, &mut buf).unwrap();
    buf.extend_from_slice(tag.as_slice());

    let mut opened = buf[..plaintext.len()].to_vec();
    key.open_in_place(nonce, adata, tag.as_slice(), &mut opened)
        .unwrap();
    assert_eq!(opened, plaintext);
    buf
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn matches_ccm_crate_aes128(
        key in prop::array::uniform16(any::<u8>()),
        nonce in prop::array::uniform13(any::<u8>()),
        adata in prop::collection::vec(any::<u8>(), 0..70),
        plaintext in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let cipher = Aes128::new_from_slice(&key).unwrap();
        for nonce_len in [7, 8, 10, 12, 13] {
            let nonce = &nonce[..nonce_len];
            let expected = match nonce_len {
                7 => reference_seal::<_, U8, U7>(cipher.clone(), nonce, &adata, &plaintext),
                8 => reference_seal::<_, U12, U8>(cipher.clone(), nonce, &adata, &plaintext),
                10 => reference_seal::<_, U16, U10>(cipher.clone(), nonce, &adata, &plaintext),
                12 => reference_seal::<_, U4, U12>(cipher.clone(), nonce, &adata, &plaintext),
                _ => reference_seal::<_, U8, U13>(cipher.clone(), nonce, &adata, &plaintext),
            };
            let tag_len = expected.len() - plaintext.len();
            prop_assert_eq!(our_seal(&key, nonce, &adata, tag_len, &plaintext), expected);
        }
    }

    #[test]
    fn matches_ccm_crate_aes192_aes256(
        key in prop::array::uniform32(any::<u8>()),
        nonce in prop::array::uniform13(any::<u8>()),
        adata in prop::collection::vec(any::<u8>(), 0..40),
        plaintext in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let aes192 = Aes192::new_from_slice(&key[..24]).unwrap();
        let expected = reference_seal::<_, U12, U13>(aes192, &nonce, &adata, &plaintext);
        prop_assert_eq!(our_seal(&key[..24], &nonce, &adata, 12, &plaintext), expected);

        let aes256 = Aes256::new_from_slice(&key).unwrap();
        let expected = reference_seal::<_, U16, U7>(aes256, &nonce[..7], &adata, &plaintext);
        prop_assert_eq!(our_seal(&key, &nonce[..7], &adata, 16, &plaintext), expected);
    }
}

#[test]
fn long_adata_matches_ccm_crate() {
    // 0xFF00 bytes is the first length that needs the 0xFFFE prefix.
    let key = [0x42u8; 16];
    let cipher = Aes128::new_from_slice(&key).unwrap();
    for adata_len in [0xFEFF, 0xFF00, 70_000] {
        let adata = vec![0xA5u8; adata_len];
        let expected = reference_seal::<_, U8, U13>(cipher.clone(), &[7; 13], &adata, b"text");
        assert_eq!(
            our_seal(&key, &[7; 13], &adata, 8, b"text"),
            expected,
            "{adata_len}"
        );
    }
}

#[test]
fn long_payload_matches_ccm_crate() {
    // Crosses the batch size of the key stream and the 2-byte length field of SJCL's default.
    let key = [0x17u8; 16];
    let cipher = Aes128::new_from_slice(&key).unwrap();
    let plaintext: Vec<u8> = (0..70_001u32).map(|i| (i * 7) as u8).collect();
    let expected = reference_seal::<_, U8, U12>(cipher, &[9; 12], b"", &plaintext);
    assert_eq!(our_seal(&key, &[9; 12], b"", 8, &plaintext), expected);
}

/// Computes the tag from the parts that `crate::webcrypto` combines. The MAC starts from
/// [`AesKey::mac_before_payload`] and chains the payload block by block, as AES-CBC with that
/// state as IV does. The tag is the MAC XORed with the key stream block of counter 0.
fn tag_by_parts(
    key: &AesKey,
    nonce: &[u8],
    adata: &[u8],
    tag_len: usize,
    payload: &[u8],
) -> Vec<u8> {
    let mut mac = key.mac_before_payload(nonce, adata, tag_len, payload.len());
    for block in payload.chunks(16) {
        for (m, b) in mac.iter_mut().zip(block) {
            *m ^= b;
        }
        key.encrypt_block(&mut mac);
    }
    let mut tag_key = counter_block(nonce, 0);
    key.encrypt_block(&mut tag_key);
    mac.iter()
        .zip(tag_key)
        .take(tag_len)
        .map(|(m, k)| m ^ k)
        .collect()
}

proptest! {
    #[test]
    fn tag_by_parts_matches_seal(
        key_len in prop::sample::select(vec![16usize, 24, 32]),
        nonce_len in 7usize..=13,
        tag_len in prop::sample::select(vec![4usize, 8, 12, 16]),
        adata in prop::collection::vec(any::<u8>(), 0..40),
        payload in prop::collection::vec(any::<u8>(), 0..100),
    ) {
        let key = AesKey::new(&vec![9u8; key_len]).unwrap();
        let nonce = vec![3u8; nonce_len];
        let mut sealed = payload.clone();
        let tag = key.seal_in_place(&nonce, &adata, tag_len, &mut sealed).unwrap();
        prop_assert_eq!(tag.as_slice(), &tag_by_parts(&key, &nonce, &adata, tag_len, &payload)[..]);
    }
}
