//! The caching token source: one token until less than the margin remains, then a fresh one;
//! shared across threads through `&self`.

use std::sync::Arc;

use apim_sas::chrono::{DateTime, TimeDelta, TimeZone, Utc};
use apim_sas::{Format, GatewayKey, KeyType, Policy, Signer, TokenSource, Verifier};

#[test]
fn hands_out_one_token_until_the_margin_then_renews() {
    let key = GatewayKey::new("source-key").unwrap();
    let signer = Signer::new("gw1", &key).unwrap();
    let source = Arc::new(
        TokenSource::new(
            signer,
            Format::Compact,
            TimeDelta::days(29),
            TimeDelta::days(1),
        )
        .unwrap(),
    );
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
    )
    .unwrap();
    assert_eq!(source.token(now).unwrap_err().code(), "ExpiryTooFar");
    let open = TokenSource::new(
        signer,
        Format::Uid,
        TimeDelta::days(31),
        TimeDelta::hours(1),
    )
    .unwrap()
    .with_policy(Policy::new().with_max_lifetime(None));
    assert_eq!(open.token(now).unwrap().expiry(), now + TimeDelta::days(31));
}

#[track_caller]
fn invalid_expiry<T: std::fmt::Debug>(result: Result<T, apim_sas::Error>, message: &str) {
    let err = result.unwrap_err();
    assert_eq!(
        (err.code(), err.target(), err.http_status(), err.message()),
        ("InvalidExpiry", "expiry", 400, message)
    );
}

#[test]
fn a_lifetime_that_is_not_positive_or_a_negative_margin_is_refused() {
    let signer = Signer::new("gw1", &GatewayKey::new("k").unwrap()).unwrap();
    let day = TimeDelta::days(1);
    let new = |lifetime, margin| TokenSource::new(signer.clone(), Format::Uid, lifetime, margin);
    invalid_expiry(
        new(TimeDelta::zero(), TimeDelta::zero()),
        "expiry: a token's lifetime must be positive, not 0s",
    );
    invalid_expiry(
        new(-TimeDelta::seconds(90), TimeDelta::zero()),
        "expiry: a token's lifetime must be positive, not -1m 30s",
    );
    invalid_expiry(
        new(TimeDelta::nanoseconds(-1), TimeDelta::zero()),
        "expiry: a token's lifetime must be positive, not -1ns",
    );
    invalid_expiry(
        new(TimeDelta::MIN, TimeDelta::zero()),
        "expiry: a token's lifetime must be positive, not -106751991167d 7h",
    );
    invalid_expiry(
        new(day, -TimeDelta::hours(1)),
        "expiry: the renewal margin must not be negative, not -1h \
         (it would hand out expired tokens)",
    );
    // The smallest lifetime and margin allowed.
    assert!(new(TimeDelta::nanoseconds(1), TimeDelta::zero()).is_ok());
}

#[test]
fn an_expiry_beyond_what_chrono_holds_is_an_error_not_a_panic() {
    let signer = Signer::new("gw1", &GatewayKey::new("k").unwrap()).unwrap();
    let open = Policy::new().with_max_lifetime(None);
    let now = Utc.with_ymd_and_hms(2026, 4, 21, 0, 0, 0).unwrap();
    for policy in [Policy::default(), open] {
        let forever = TokenSource::new(
            signer.clone(),
            Format::Compact,
            TimeDelta::MAX,
            TimeDelta::zero(),
        )
        .unwrap()
        .with_policy(policy);
        invalid_expiry(
            forever.token(now),
            "expiry: a lifetime of 106751991167d 7h from now lies beyond the last instant that \
             can be represented",
        );
    }
    let daily = TokenSource::new(signer, Format::Uid, TimeDelta::days(1), TimeDelta::zero())
        .unwrap()
        .with_policy(open);
    invalid_expiry(
        daily.token(DateTime::<Utc>::MAX_UTC),
        "expiry: a lifetime of 1d from now lies beyond the last instant that can be represented",
    );
    // Representable but beyond the years a token carries: the signer's own refusal.
    let err = daily.token(DateTime::<Utc>::MIN_UTC).unwrap_err();
    assert_eq!((err.code(), err.http_status()), ("InvalidExpiry", 400));
    assert!(err.message().contains("outside 0001-9999"), "{err}");
    // And it still works afterwards.
    assert!(daily.token(now).is_ok());
}
