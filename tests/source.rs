//! The caching token source: one token until less than the margin remains, then a fresh one;
//! shared across threads through `&self`.

use std::sync::Arc;

use apim_sas::chrono::{TimeDelta, TimeZone, Utc};
use apim_sas::{Format, GatewayKey, KeyType, Policy, Signer, TokenSource, Verifier};

#[test]
fn hands_out_one_token_until_the_margin_then_renews() {
    let key = GatewayKey::new("source-key").unwrap();
    let signer = Signer::new("gw1", &key).unwrap();
    let source = Arc::new(TokenSource::new(
        signer,
        Format::Compact,
        TimeDelta::days(29),
        TimeDelta::days(1),
    ));
    let t0 = Utc.with_ymd_and_hms(2026, 4, 21, 0, 0, 30).unwrap();
    let first = source.token(t0).unwrap();
    // Floored to the minute: 29 days from 00:00:30 is 00:00 on May 20.
    assert_eq!(
        first.expiry(),
        Utc.with_ymd_and_hms(2026, 5, 20, 0, 0, 0).unwrap()
    );

    // Many threads at once, all within the lifetime: all get the same token.
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let source = Arc::clone(&source);
            std::thread::spawn(move || source.token(t0 + TimeDelta::hours(i)).unwrap())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), first);
    }
    // Exactly the margin left: still the same; less than the margin: a fresh token.
    let edge = first.expiry() - TimeDelta::days(1);
    assert_eq!(source.token(edge).unwrap(), first);
    let later = edge + TimeDelta::seconds(1);
    let renewed = source.token(later).unwrap();
    assert_ne!(renewed, first);
    assert_eq!(
        renewed.expiry(),
        Format::Compact.floor(later + TimeDelta::days(29))
    );
    assert_eq!(source.token(later + TimeDelta::hours(5)).unwrap(), renewed);

    // Both verify.
    let mut verifier = Verifier::new(Policy::default());
    verifier.insert("gw1", KeyType::Primary, &key).unwrap();
    assert!(verifier.verify(first.as_str(), t0).is_ok());
    assert!(verifier.verify(renewed.as_str(), later).is_ok());
}

#[test]
fn a_lifetime_beyond_the_policy_is_refused() {
    let signer = Signer::new("gw1", &GatewayKey::new("k").unwrap()).unwrap();
    let now = Utc.with_ymd_and_hms(2026, 4, 21, 0, 0, 0).unwrap();
    let source = TokenSource::new(
        signer.clone(),
        Format::Uid,
        TimeDelta::days(31),
        TimeDelta::hours(1),
    );
    assert_eq!(source.token(now).unwrap_err().code(), "ExpiryTooFar");
    let open = TokenSource::new(
        signer,
        Format::Uid,
        TimeDelta::days(31),
        TimeDelta::hours(1),
    )
    .with_policy(Policy::new().with_max_lifetime(None));
    assert_eq!(open.token(now).unwrap().expiry(), now + TimeDelta::days(31));
}
