//! The verdict cache (`Verifier::with_cache`) never changes a verdict: over random streams of
//! tokens with repeats, expiry crossings, forgeries and one-character changes, a verifier with a
//! cache (of many sizes, a tiny one included, so that tokens evict each other) answers exactly as
//! one without: the same fields, or the same code and message. And the cases a cache could get
//! wrong, one by one: an expired cached token, repeated forgeries, new keys, two threads.

use apim_sas::chrono::{DateTime, TimeDelta, TimeZone, Utc};
use apim_sas::{Format, GatewayKey, KeyType, Policy, Scheme, Signer, Verified, Verifier};
use proptest::prelude::*;

fn key(name: &str) -> GatewayKey {
    GatewayKey::new(format!("cache-test-key-{name}")).unwrap()
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, 21, 0, 0, 0).unwrap()
}

/// Two gateways, both keys each.
fn verifier() -> Verifier {
    let mut v = Verifier::new(Policy::default());
    for id in ["gw1", "gw2"] {
        v.insert(id, KeyType::Primary, &key(&format!("{id}-p")))
            .unwrap();
        v.insert(id, KeyType::Secondary, &key(&format!("{id}-s")))
            .unwrap();
    }
    v
}

/// What a verdict comes to, comparable across verifiers.
fn verdict(result: Result<Verified<'_>, apim_sas::Error>) -> Result<String, (String, String)> {
    result
        .map(|v| {
            format!(
                "{} {} {} {}",
                v.id(),
                v.key_type(),
                v.expiry().to_rfc3339(),
                v.format()
            )
        })
        .map_err(|e| (e.code().to_owned(), e.message().to_owned()))
}

/// A token of `id`, signed with `key_name`, expiring `minutes` after t0, in a form and spelling.
fn token(id: &str, key_name: &str, minutes: i64, uid: bool, scheme: u8) -> String {
    let format = if uid { Format::Uid } else { Format::Compact };
    let token = Signer::new(id, &key(key_name))
        .unwrap()
        .sign(t0() + TimeDelta::minutes(minutes), format)
        .unwrap();
    match scheme % 4 {
        0 => token.to_string(),
        1 => token.render(Some(Scheme::GatewayKey)),
        2 => token.render(Some(Scheme::SharedAccessSignature)),
        _ => token.render(Some(Scheme::Portal)),
    }
}

/// One element of a stream: a token and the instant it is presented at.
#[derive(Debug, Clone)]
struct Step {
    token: String,
    now: DateTime<Utc>,
}

fn pool() -> impl Strategy<Value = Vec<String>> {
    let one = (
        prop::sample::select(vec!["gw1", "gw2", "gw3"]),
        prop::sample::select(vec!["gw1-p", "gw1-s", "gw2-p", "gw2-s", "other"]),
        // From already expired to beyond the 30-day maximum lifetime.
        -120i64..(31 * 24 * 60),
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(|(id, key_name, minutes, uid, scheme)| token(id, key_name, minutes, uid, scheme));
    prop::collection::vec(one, 1..12)
}

fn stream() -> impl Strategy<Value = Vec<Step>> {
    pool().prop_flat_map(|pool| {
        let n = pool.len();
        prop::collection::vec(
            (
                0..n,
                // An instant that moves across expiries: from t0 to 40 days on.
                0i64..(40 * 24 * 60 * 60),
                // Sometimes one character changed, anywhere.
                prop::option::weighted(0.3, (any::<prop::sample::Index>(), 0x21u8..0x7f)),
            ),
            1..60,
        )
        .prop_map(move |picks| {
            picks
                .into_iter()
                .map(|(i, seconds, change)| {
                    let mut token = pool[i].clone().into_bytes();
                    if let Some((at, byte)) = change {
                        let at = at.index(token.len());
                        token[at] = byte;
                    }
                    Step {
                        token: String::from_utf8(token).unwrap(),
                        now: t0() + TimeDelta::seconds(seconds),
                    }
                })
                .collect()
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn the_cache_never_changes_a_verdict(steps in stream(), capacity in prop::sample::select(vec![1usize, 2, 8, 1024])) {
        let plain = verifier();
        let cached = verifier().with_cache(capacity);
        for step in &steps {
            let expected = verdict(plain.verify(&step.token, step.now));
            prop_assert_eq!(&verdict(cached.verify(&step.token, step.now)), &expected, "{:?}", step);
            prop_assert_eq!(
                &verdict(cached.verify_bytes(step.token.as_bytes(), step.now)),
                &expected,
                "bytes: {:?}",
                step
            );
        }
    }
}

#[test]
fn a_cached_token_still_expires() {
    let v = verifier().with_cache(16);
    let soon = token("gw1", "gw1-p", 10, false, 1);
    assert!(v.verify(&soon, t0()).is_ok());
    assert!(v.verify(&soon, t0()).is_ok());
    // Within the leeway after the expiry, then past it.
    assert!(v
        .verify(&soon, t0() + TimeDelta::seconds(10 * 60 + 59))
        .is_ok());
    let err = v.verify(&soon, t0() + TimeDelta::minutes(11)).unwrap_err();
    assert_eq!(err.code(), "TokenExpired");
    // And a cached token too far ahead for a stricter policy later is refused by it.
    let mut strict = verifier().with_cache(16);
    let far = token("gw1", "gw1-p", 20 * 24 * 60, false, 0);
    assert!(strict.verify(&far, t0()).is_ok());
    strict.set_policy(Policy::new().with_max_lifetime(Some(TimeDelta::days(7))));
    assert_eq!(
        strict.verify(&far, t0()).unwrap_err().code(),
        "ExpiryTooFar"
    );
}

#[test]
fn forgeries_are_refused_however_often() {
    let v = verifier().with_cache(16);
    let good = token("gw1", "gw1-p", 60, false, 0);
    assert!(v.verify(&good, t0()).is_ok());
    let forged = good.replace("&2026", "&2027");
    let mut flipped = good.clone().into_bytes();
    let last = flipped.len() - 3;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for _ in 0..100 {
        assert_eq!(
            v.verify(&forged, t0()).unwrap_err().code(),
            "SignatureMismatch"
        );
        assert_eq!(
            v.verify(&flipped, t0()).unwrap_err().code(),
            "SignatureMismatch"
        );
    }
    assert!(v.verify(&good, t0()).is_ok());
}

#[test]
fn new_keys_start_with_an_empty_cache() {
    let mut v = verifier().with_cache(16);
    let token = token("gw1", "gw1-p", 60, false, 0);
    assert!(v.verify(&token, t0()).is_ok());
    // The primary regenerated: the cached verdict must not survive it.
    v.insert("gw1", KeyType::Primary, &key("gw1-p-new"))
        .unwrap();
    assert_eq!(
        v.verify(&token, t0()).unwrap_err().code(),
        "SignatureMismatch"
    );
    // A gateway removed: GatewayNotExist, as without a cache.
    let other = self::token("gw2", "gw2-s", 60, true, 2);
    assert!(v.verify(&other, t0()).is_ok());
    assert!(v.remove("gw2"));
    assert_eq!(
        v.verify(&other, t0()).unwrap_err().code(),
        "GatewayNotExist"
    );
    // A clone starts empty and keeps the size.
    assert_eq!(v.clone().cache_capacity(), 16);
    assert_eq!(verifier().with_cache(1000).cache_capacity(), 1024);
    assert_eq!(verifier().with_cache(0).cache_capacity(), 0);
}

#[test]
fn two_threads_on_one_verifier_agree_with_the_plain_one() {
    let plain = verifier();
    let cached = verifier().with_cache(4);
    let tokens: Vec<String> = (0..16)
        .map(|i| {
            token(
                if i % 2 == 0 { "gw1" } else { "gw2" },
                if i % 3 == 0 {
                    "other"
                } else if i % 2 == 0 {
                    "gw1-s"
                } else {
                    "gw2-p"
                },
                60 + i,
                i % 4 == 0,
                i as u8,
            )
        })
        .collect();
    let expected: Vec<_> = tokens
        .iter()
        .map(|t| verdict(plain.verify(t, t0())))
        .collect();
    std::thread::scope(|scope| {
        for offset in [0, 7] {
            let (cached, tokens, expected) = (&cached, &tokens, &expected);
            scope.spawn(move || {
                for round in 0..2_000 {
                    let i = (round * 5 + offset) % tokens.len();
                    assert_eq!(verdict(cached.verify(&tokens[i], t0())), expected[i]);
                }
            });
        }
    });
}

#[test]
fn debug_shows_no_cached_token() {
    let v = verifier().with_cache(8);
    let token = token("gw1", "gw1-p", 60, false, 0);
    v.verify(&token, t0()).unwrap();
    let shown = format!("{v:?}");
    assert!(!shown.contains(&token[..20]), "{shown}");
    assert!(shown.contains("cache_capacity: 8"), "{shown}");
}
