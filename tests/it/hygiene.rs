//! Key hygiene: no key material in any Debug, Display, error or message; and none left behind in
//! heap memory the crate frees.
//!
//! The second is checked by the test binary's global allocator (common/allocator.rs): while this
//! test's thread has it armed, it scans every block the thread frees for a canary key's bytes and
//! for the bytes of the HMAC states that key yields, computed here independently of the `hmac`
//! crate (SHA-512's compression function over key ⊕ ipad and key ⊕ opad). A keyed state stored
//! inline in a growing map or vector leaves an unwiped copy in the old block at every
//! reallocation; that is what this catches.

use std::hint::black_box;

use apim_sas::chrono::{TimeDelta, TimeZone, Utc};
use apim_sas::{
    Format, GatewayKey, KeyPair, KeyType, Keystore, Policy, Signer, TokenSource, UntrustedToken,
    Verifier,
};
use zeroize::Zeroizing;

use crate::common::allocator::{scan_frees, set_needles, take_found};

const CANARY: &str = "CANARY-7d1e-never-print-me";

#[track_caller]
fn clean(what: &str, text: String) {
    assert!(!text.contains(CANARY), "{what} leaks the key: {text}");
    assert!(
        !text.contains("7d1e"),
        "{what} leaks part of the key: {text}"
    );
}

#[test]
fn no_output_carries_the_key() {
    let key = GatewayKey::new(CANARY).unwrap();
    clean("GatewayKey Debug", format!("{key:?} {key:#?}"));
    let signer = Signer::new("gw1", &key).unwrap();
    clean("Signer Debug", format!("{signer:?} {signer:#?}"));
    let mut verifier = Verifier::new(Policy::default());
    verifier.insert("gw1", KeyType::Primary, &key).unwrap();
    clean("Verifier Debug", format!("{verifier:?}"));
    let now = Utc.with_ymd_and_hms(2026, 4, 21, 0, 0, 0).unwrap();
    let token = signer
        .sign(now + TimeDelta::days(1), Format::Compact)
        .unwrap();
    clean("Token", format!("{token} {token:?}"));
    let source = TokenSource::new(
        signer.clone(),
        Format::Uid,
        TimeDelta::days(1),
        TimeDelta::hours(1),
    )
    .unwrap();
    source.token(now).unwrap();
    clean("TokenSource Debug", format!("{source:?}"));

    let pair = KeyPair::from_json(&format!(r#"{{"primary": "{CANARY}"}}"#)).unwrap();
    clean("KeyPair Debug", format!("{pair:?}"));
    let store = Keystore::from_toml(&format!("[gw1]\nprimary = \"{CANARY}\"\n")).unwrap();
    clean("Keystore Debug", format!("{store:?}"));

    // Errors about keys never quote them.
    for bad in [
        format!("{CANARY}\n"),
        format!("\t{CANARY}"),
        format!("{CANARY}\u{0}"),
        format!("\u{feff}{CANARY}"),
        format!("{CANARY}\u{200b}"),
    ] {
        let err = GatewayKey::new(bad).unwrap_err();
        clean("key error", format!("{err} {err:?} {}", err.message()));
    }
    for text in [
        format!(r#"{{"primary": {CANARY}}}"#),
        format!(r#"{{"primary": "{CANARY}", "primary": 1}}"#),
        format!(r#"["{CANARY}"]"#),
        format!(r#"{{"gw1": "{CANARY}"}}"#),
        format!(r#"{{"gw1": {{"primary": "{CANARY}", "primary": "{CANARY}"}}}}"#),
        format!(r#"{{"gw1": {{"primary": "{CANARY}", "secundary": "{CANARY}"}}}}"#),
    ] {
        if let Err(err) = KeyPair::from_json(&text) {
            clean("key file error", format!("{err} {err:?}"));
        }
        if let Err(err) = Keystore::from_json(&text) {
            clean("keystore error", format!("{err} {err:?}"));
        }
    }
    let err = "primary-".parse::<KeyType>().unwrap_err();
    clean("key type error", format!("{err}"));
    // A key pasted where a key type goes is not echoed.
    let err = CANARY.parse::<KeyType>().unwrap_err();
    clean("key type error", format!("{err} {err:?}"));
}

// ---- The scan of freed memory -----------------------------------------------------------------

/// The key whose traces are searched for. Used by no other test, so that nothing but this test
/// can put it in a freed block.
const WIPE_CANARY: &str = "hygiene-canary-5e3a91c47b20d86f";

/// What the scan looks for: the key, the inner and outer SHA-512 states HMAC keys with it (the
/// first 16 bytes of each, as the state's `u64` words lie in memory), and the key ⊕ ipad and
/// key ⊕ opad blocks (their first 16 bytes).
const NEEDLE_NAMES: [&str; 5] = [
    "the key",
    "the inner HMAC state",
    "the outer HMAC state",
    "the key xor ipad block",
    "the key xor opad block",
];

/// SHA-512's initial state (FIPS 180-4, 5.3.5).
const SHA512_IV: [u64; 8] = [
    0x6a09e667f3bcc908,
    0xbb67ae8584caa73b,
    0x3c6ef372fe94f82b,
    0xa54ff53a5f1d36f1,
    0x510e527fade682d1,
    0x9b05688c2b3e6c1f,
    0x1f83d9abfb41bd6b,
    0x5be0cd19137e2179,
];

/// The needles for `key` (at most 128 bytes, so HMAC uses it as is, zero-padded to the block).
fn needles(key: &[u8]) -> Vec<Vec<u8>> {
    let padded = |pad: u8| {
        let mut block = [0u8; 128];
        block[..key.len()].copy_from_slice(key);
        block.iter_mut().for_each(|b| *b ^= pad);
        block
    };
    let state_after = |block: [u8; 128]| {
        let mut state = SHA512_IV;
        sha2::block_api::compress512(&mut state, &[block]);
        let mut window = state[0].to_ne_bytes().to_vec();
        window.extend_from_slice(&state[1].to_ne_bytes());
        window
    };
    let (ipad, opad) = (padded(0x36), padded(0x5c));
    vec![
        key.to_vec(),
        state_after(ipad),
        state_after(opad),
        ipad[..16].to_vec(),
        opad[..16].to_vec(),
    ]
}

/// A keystore text holding the canary, in memory that is wiped (the text is the caller's).
fn store_text(parts: &[&str]) -> Zeroizing<String> {
    let mut text = Zeroizing::new(String::with_capacity(512));
    for part in parts {
        text.push_str(part);
    }
    text
}

#[test]
fn no_key_material_is_left_in_freed_memory() {
    set_needles(|| needles(WIPE_CANARY.as_bytes()));

    // The scan can fail: an unwiped copy of the key, and keyed states stored inline in a vector
    // that grows, are found in the blocks they leave behind.
    scan_frees(true);
    drop(black_box(WIPE_CANARY.as_bytes().to_vec()));
    let mut inline = Vec::with_capacity(1);
    for _ in 0..4 {
        let keyed: hmac::block_api::HmacCore<sha2::Sha512> =
            hmac::digest::KeyInit::new_from_slice(WIPE_CANARY.as_bytes()).unwrap();
        inline.push(black_box(keyed));
    }
    drop(black_box(inline));
    let mut block = [0u8; 128];
    block[..WIPE_CANARY.len()].copy_from_slice(WIPE_CANARY.as_bytes());
    for pad in [0x36, 0x5c] {
        drop(black_box(
            block.iter().map(|b| b ^ pad).collect::<Vec<u8>>(),
        ));
    }
    scan_frees(false);
    let found = take_found();
    for (name, count) in NEEDLE_NAMES.iter().zip(found) {
        assert!(count > 0, "the scan misses {name} in freed memory");
    }

    // The crate's own life cycle: keys, signers, verifiers, keystores, built, cloned, grown,
    // used and dropped.
    scan_frees(true);
    {
        let now = Utc.with_ymd_and_hms(2026, 4, 21, 0, 0, 0).unwrap();
        let key = GatewayKey::new(WIPE_CANARY).unwrap();
        let other = GatewayKey::new("another-key").unwrap();

        // Thousands of gateways: the map rehashes many times as it grows.
        let mut verifier = Verifier::new(Policy::default());
        for i in 0..4000 {
            let id = format!("gw{i}");
            verifier.insert(&id, KeyType::Primary, &key).unwrap();
            verifier.insert(&id, KeyType::Secondary, &other).unwrap();
        }
        // Replaced keys and removed gateways free their states.
        for i in 0..1000 {
            let id = format!("gw{i}");
            verifier.insert(&id, KeyType::Secondary, &key).unwrap();
            verifier.insert(&id, KeyType::Primary, &other).unwrap();
        }
        for i in 3000..4000 {
            assert!(verifier.remove(&format!("gw{i}")));
        }
        let copy = verifier.clone();
        // A verifier with a verdict cache, itself cloned (the clone starts with an empty one).
        let cached = verifier.clone().with_cache(64);
        let cached_copy = cached.clone();

        // Signers: cloned into a vector that grows (every element moved at each growth).
        let signer = Signer::new("gw2500", &key).unwrap();
        let mut signers = Vec::new();
        for _ in 0..1000 {
            signers.push(signer.clone());
        }
        let tokens: Vec<String> = signers
            .iter()
            .take(3)
            .map(|s| {
                s.sign(now + TimeDelta::days(1), Format::Uid)
                    .unwrap()
                    .to_string()
            })
            .collect();
        for token in &tokens {
            let verified = verifier.verify(token, now).unwrap();
            assert_eq!(verified.key_type(), KeyType::Primary);
            assert!(copy.verify(token, now).is_ok());
            for _ in 0..2 {
                assert!(cached.verify(token, now).is_ok());
                assert!(cached_copy.verify_bytes(token.as_bytes(), now).is_ok());
            }
            signer
                .verify(
                    &UntrustedToken::parse(token).unwrap(),
                    now,
                    &Policy::default(),
                )
                .unwrap();
        }
        drop(signers);

        // Keys: cloned into a vector that grows, and dropped.
        let mut keys = Vec::new();
        for _ in 0..1000 {
            keys.push(key.clone());
        }
        drop(keys);

        // A token source, minting and caching.
        let source = TokenSource::new(
            signer.clone(),
            Format::Compact,
            TimeDelta::days(1),
            TimeDelta::hours(1),
        )
        .unwrap();
        for hours in 0..30 {
            source.token(now + TimeDelta::hours(hours)).unwrap();
        }

        // Keystores, JSON and TOML, and the verifiers built from them.
        let json = store_text(&[r#"{"gw1": {"primary": ""#, WIPE_CANARY, r#""}}"#]);
        let store = Keystore::from_json(&json).unwrap();
        let from_json = store.verifier(Policy::default()).unwrap();
        let toml = store_text(&["[gw1]\nsecondary = \"", WIPE_CANARY, "\"\n"]);
        let store = Keystore::from_toml(&toml).unwrap();
        let from_toml = store.verifier(Policy::default()).unwrap();
        let pair = store_text(&[r#"{"primary": ""#, WIPE_CANARY, r#"", "etag": "x"}"#]);
        let pair = KeyPair::from_json(&pair).unwrap();
        assert!(pair.get(KeyType::Primary).is_ok());
        let gw1 = Signer::new("gw1", &key).unwrap();
        let token = gw1.sign(now + TimeDelta::days(1), Format::Compact).unwrap();
        assert!(from_json.verify(token.as_str(), now).is_ok());
        assert!(from_toml.verify(token.as_str(), now).is_ok());

        drop((
            verifier, copy, signer, source, store, from_json, from_toml, gw1,
        ));
        drop((cached, cached_copy));
        drop((key, other, json, toml, pair));
    }
    scan_frees(false);
    assert_eq!(
        take_found(),
        [0; NEEDLE_NAMES.len()],
        "freed blocks holding each of {NEEDLE_NAMES:?}"
    );
}
