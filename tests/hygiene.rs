//! Key hygiene: no key material in any Debug, Display, error or message; keys and keyed states
//! wiped on drop (checked through the `ZeroizeOnDrop` marker the types carry).

use apim_sas::chrono::{TimeDelta, TimeZone, Utc};
use apim_sas::{
    Format, GatewayKey, KeyPair, KeyType, Keystore, Policy, Signer, TokenSource, Verifier,
};

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
    );
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
    ] {
        let err = GatewayKey::new(bad).unwrap_err();
        clean("key error", format!("{err} {err:?} {}", err.message()));
    }
    for text in [
        format!(r#"{{"primary": {CANARY}}}"#),
        format!(r#"{{"primary": "{CANARY}", "primary": 1}}"#),
        format!(r#"["{CANARY}"]"#),
        format!(r#"{{"gw1": "{CANARY}"}}"#),
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

fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}

#[test]
fn keys_and_keyed_states_are_wiped_on_drop() {
    wiped_on_drop::<GatewayKey>();
    wiped_on_drop::<Signer>();
    // The keyed states a Signer and a Verifier hold, and every per-message clone of them:
    // `Hmac<Sha512>` is two of these SHA-512 states (wiped by their own Drop under sha2's
    // `zeroize` feature) and a block buffer (wiped under block-buffer's, which `hmac`'s
    // `zeroize` feature turns on).
    wiped_on_drop::<sha2::block_api::Sha512VarCore>();
}
