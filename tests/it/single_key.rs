//! A single key's check, `Signer::verify`: the verifier's checks in the verifier's order, and
//! token equality that compares signatures (in constant time) rather than stopping at the first
//! differing byte.

use apim_sas::chrono::{DateTime, TimeDelta, TimeZone, Utc};
use apim_sas::{Format, GatewayKey, KeyType, Policy, Signer, UntrustedToken, Verifier};
use proptest::prelude::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, 21, 0, 0, 0).unwrap()
}

fn key() -> GatewayKey {
    GatewayKey::new("single-key-sample").unwrap()
}

/// Replaces the signature's character at `i` (0–85) with another that keeps it canonical.
fn forge(token: &str, i: usize) -> String {
    let at = token.len() - 88 + i;
    let old = token.as_bytes()[at];
    let new = match (i, old) {
        (85, b'A') => b'g',
        (85, _) => b'A',
        (_, b'A') => b'B',
        _ => b'A',
    };
    let mut bytes = token.as_bytes().to_vec();
    bytes[at] = new;
    String::from_utf8(bytes).unwrap()
}

#[track_caller]
fn refused(result: Result<(), apim_sas::Error>, code: &str, target: &str) {
    let err = result.unwrap_err();
    assert_eq!(
        (err.code(), err.target(), err.http_status()),
        (code, target, 401),
        "{err}"
    );
}

#[test]
fn checks_id_then_signature_then_lifetime() {
    let signer = Signer::new("gw1", &key()).unwrap();
    let policy = Policy::default();
    let token = signer
        .sign(now() + TimeDelta::days(7), Format::Uid)
        .unwrap()
        .to_string();
    let parsed = UntrustedToken::parse(&token).unwrap();
    signer.verify(&parsed, now(), &policy).unwrap();

    // Another gateway's signer: the id is checked first.
    let other = Signer::new("gw2", &key()).unwrap();
    refused(
        other.verify(&parsed, now(), &policy),
        "GatewayNotExist",
        "id",
    );
    // Another key, or a forged signature: the signature, whatever the lifetime says.
    let stranger = Signer::new("gw1", &GatewayKey::new("another-key").unwrap()).unwrap();
    refused(
        stranger.verify(&parsed, now(), &policy),
        "SignatureMismatch",
        "signature",
    );
    let late = now() + TimeDelta::days(100);
    for i in [0, 42, 85] {
        let forged = forge(&token, i);
        let forged = UntrustedToken::parse(&forged).unwrap();
        refused(
            signer.verify(&forged, late, &policy),
            "SignatureMismatch",
            "signature",
        );
    }
    // Authentic, then the lifetime.
    refused(
        signer.verify(&parsed, late, &policy),
        "TokenExpired",
        "expiry",
    );
    let strict = Policy::new().with_max_lifetime(Some(TimeDelta::days(1)));
    refused(
        signer.verify(&parsed, now(), &strict),
        "ExpiryTooFar",
        "expiry",
    );
    // The same token in the other form, with a scheme, verifies the same.
    let compact = signer
        .sign(now() + TimeDelta::days(7), Format::Compact)
        .unwrap();
    let with_scheme = compact.with_scheme(apim_sas::Scheme::GatewayKey);
    signer
        .verify(
            &UntrustedToken::parse(&with_scheme).unwrap(),
            now(),
            &policy,
        )
        .unwrap();
}

proptest! {
    /// The single-key check and a verifier holding that key agree on every token, forged or not.
    #[test]
    fn agrees_with_the_verifier(
        minutes in -100_000i64..100_000,
        forged_at in proptest::option::of(0usize..86),
        id in prop::sample::select(vec!["gw1", "gw2"]),
        uid in any::<bool>(),
    ) {
        let signer = Signer::new("gw1", &key()).unwrap();
        let mut verifier = Verifier::new(Policy::default());
        verifier.insert("gw1", KeyType::Primary, &key()).unwrap();
        let format = if uid { Format::Uid } else { Format::Compact };
        let token = Signer::new(id, &key())
            .unwrap()
            .sign(now() + TimeDelta::minutes(minutes), format)
            .unwrap()
            .to_string();
        let token = forged_at.map_or(token.clone(), |i| forge(&token, i));
        let parsed = UntrustedToken::parse(&token).unwrap();
        let single = signer.verify(&parsed, now(), &Policy::default());
        let many = verifier.verify_parsed(&parsed, now()).map(|_| ());
        prop_assert_eq!(single.map_err(|e| e.code()), many.map_err(|e| e.code()));
    }
}

#[test]
fn equality_compares_whole_signatures() {
    let signer = Signer::new("gw1", &key()).unwrap();
    let token = signer
        .sign(now() + TimeDelta::days(7), Format::Compact)
        .unwrap();
    assert_eq!(token, token.clone());
    assert_eq!(token, signer.sign(token.expiry(), Format::Compact).unwrap());
    assert_ne!(token, token.convert(Format::Uid).unwrap());
    assert_ne!(
        token,
        signer
            .sign(token.expiry() + TimeDelta::minutes(1), Format::Compact)
            .unwrap()
    );

    let text = token.to_string();
    let parsed = UntrustedToken::parse(&text).unwrap();
    assert_eq!(parsed, UntrustedToken::parse(&text).unwrap());
    for i in [0, 1, 42, 84, 85] {
        let forged = forge(&text, i);
        assert_ne!(parsed, UntrustedToken::parse(&forged).unwrap(), "at {i}");
    }
    // The scheme is part of what was presented.
    let with_scheme = token.with_scheme(apim_sas::Scheme::GatewayKey);
    assert_ne!(parsed, UntrustedToken::parse(&with_scheme).unwrap());

    // Equal tokens hash alike.
    use std::collections::HashSet;
    let set: HashSet<_> = [token.clone(), token.clone()].into_iter().collect();
    assert_eq!(set.len(), 1);
}
