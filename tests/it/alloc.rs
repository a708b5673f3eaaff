//! Verifying a valid token allocates nothing: the test binary's allocator counts the
//! allocations of this test's thread (common/allocator.rs), whatever the other tests do.

use apim_sas::chrono::{TimeDelta, TimeZone, Utc};
use apim_sas::{Format, GatewayKey, KeyType, Policy, Signer, Verifier};

use crate::common::allocator::allocations;

#[test]
fn verification_success_path_allocates_nothing() {
    let now = Utc.with_ymd_and_hms(2026, 4, 21, 0, 0, 0).unwrap();
    let primary = GatewayKey::new("primary-key").unwrap();
    let secondary = GatewayKey::new("secondary-key").unwrap();
    let mut verifier = Verifier::new(Policy::default());
    for i in 0..1000 {
        verifier
            .insert(&format!("gw{i}"), KeyType::Primary, &primary)
            .unwrap();
    }
    verifier
        .insert("gw1", KeyType::Secondary, &secondary)
        .unwrap();
    let tokens: Vec<String> = [
        (&primary, Format::Compact),
        (&primary, Format::Uid),
        (&secondary, Format::Compact),
        (&secondary, Format::Uid),
    ]
    .iter()
    .map(|(key, format)| {
        let token = Signer::new("gw1", key)
            .unwrap()
            .sign(now + TimeDelta::days(29), *format)
            .unwrap();
        format!("GatewayKey {token}")
    })
    .collect();

    let before = allocations();
    let mut seen = 0;
    for _ in 0..100 {
        for token in &tokens {
            let verified = verifier.verify(token, now).unwrap();
            seen += verified.id().len();
            let verified = verifier.verify_bytes(token.as_bytes(), now).unwrap();
            seen += verified.id().len();
        }
    }
    let after = allocations();
    assert_eq!(seen, 100 * 4 * 2 * 3);
    assert_eq!(
        after - before,
        0,
        "allocations on the verification success path"
    );

    // The counter counts: a failure with a formatted message would show up (sanity check).
    let before = allocations();
    let _ = Signer::new("gw1", &primary)
        .unwrap()
        .sign(now, Format::Compact)
        .unwrap();
    assert!(allocations() > before);
}
