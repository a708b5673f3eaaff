//! No public function panics for any instant or duration chrono can hold: the extremes
//! (`DateTime::MIN_UTC`/`MAX_UTC`, `TimeDelta::MIN`/`MAX`), arbitrary seconds and nanoseconds
//! across chrono's whole range, and the edges of the years a token can carry (0001–9999).
//! Whatever is refused is refused with an error, never a panic.

use apim_sas::chrono::{DateTime, TimeDelta, TimeZone, Utc};
use apim_sas::{
    human_duration, o_form, Error, Format, GatewayKey, KeyType, Policy, Signer, TokenSource,
    UntrustedToken, Verifier,
};
use std::sync::LazyLock;

use proptest::prelude::*;

const MIN: DateTime<Utc> = DateTime::<Utc>::MIN_UTC;
const MAX: DateTime<Utc> = DateTime::<Utc>::MAX_UTC;

/// The largest whole seconds a `TimeDelta` holds (it counts `i64::MAX` milliseconds).
const DELTA_SECS: i64 = i64::MAX / 1000;

fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    let (min, max) = (MIN.timestamp(), MAX.timestamp());
    // 0001-01-01T00:00:00Z and 10000-01-01T00:00:00Z.
    let (first, past_last) = (-62_135_596_800i64, 253_402_300_800i64);
    let at = |(secs, nanos): (i64, u32)| DateTime::from_timestamp(secs, nanos);
    prop_oneof![
        prop::sample::select(vec![
            MIN,
            MAX,
            DateTime::UNIX_EPOCH,
            DateTime::from_timestamp(first, 0).unwrap(),
            DateTime::from_timestamp(past_last - 1, 999_999_999).unwrap(),
            DateTime::from_timestamp(past_last, 0).unwrap(),
        ]),
        (min..=max, 0u32..1_000_000_000).prop_filter_map("in range", at),
        (first - 100_000..first + 100_000, 0u32..1_000_000_000).prop_filter_map("in range", at),
        (
            past_last - 100_000..past_last + 100_000,
            0u32..1_000_000_000
        )
            .prop_filter_map("in range", at),
        (min..min + 100_000, 0u32..1_000_000_000).prop_filter_map("in range", at),
        (max - 100_000..=max, 0u32..1_000_000_000).prop_filter_map("in range", at),
        // Around today, where tokens live.
        (1_700_000_000i64..1_900_000_000, 0u32..1_000_000_000).prop_filter_map("in range", at),
    ]
}

fn duration() -> impl Strategy<Value = TimeDelta> {
    let delta = |(secs, nanos): (i64, u32)| TimeDelta::new(secs, nanos);
    prop_oneof![
        prop::sample::select(vec![
            TimeDelta::MIN,
            TimeDelta::MAX,
            TimeDelta::zero(),
            TimeDelta::nanoseconds(1),
            TimeDelta::nanoseconds(-1),
            TimeDelta::days(30),
        ]),
        (-DELTA_SECS..=DELTA_SECS, 0u32..1_000_000_000).prop_filter_map("in range", delta),
        (DELTA_SECS - 100_000..=DELTA_SECS, 0u32..1_000_000_000).prop_filter_map("in range", delta),
        (-DELTA_SECS..-DELTA_SECS + 100_000, 0u32..1_000_000_000)
            .prop_filter_map("in range", delta),
        // Up to 100 years either way.
        (-3_200_000_000i64..3_200_000_000, 0u32..1_000_000_000).prop_filter_map("in range", delta),
    ]
}

fn format() -> impl Strategy<Value = Format> {
    prop::sample::select(vec![Format::Compact, Format::Uid])
}

/// An error, if any, is one of the crate's: a code, a message, a status.
#[track_caller]
fn sound<T>(result: Result<T, Error>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(err) => {
            assert!(!err.message().is_empty(), "{err:?}");
            assert!([400, 401, 500].contains(&err.http_status()), "{err:?}");
            None
        }
    }
}

struct Fixture {
    key: GatewayKey,
    signer: Signer,
    tokens: Vec<String>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(fixture);

fn fixture() -> Fixture {
    let key = GatewayKey::new("extremes-key").unwrap();
    let signer = Signer::new("gw1", &key).unwrap();
    // Tokens at the first and last instants a token can carry, and one of today.
    let tokens = [
        (
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
            Format::Compact,
        ),
        (MAX, Format::Uid),
        (
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Format::Compact,
        ),
        (
            Utc.with_ymd_and_hms(2026, 4, 21, 0, 44, 0).unwrap(),
            Format::Uid,
        ),
    ]
    .into_iter()
    .filter_map(|(at, format)| signer.sign(at, format).ok())
    .map(|token| token.to_string())
    .collect::<Vec<_>>();
    assert_eq!(tokens.len(), 3, "year 262142 cannot be signed");
    Fixture {
        key,
        signer,
        tokens,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn no_public_function_panics_at_any_instant_or_duration(
        a in instant(),
        b in instant(),
        d in duration(),
        e in duration(),
        capped in any::<bool>(),
        format in format(),
    ) {
        let Fixture { key, signer, tokens } = &*FIXTURE;
        let policy = Policy::new()
            .with_leeway(d)
            .with_max_lifetime(capped.then_some(e));

        // Minting and signing.
        if let Some(token) = sound(signer.sign(a, format)) {
            prop_assert!((1..=9999).contains(&token.expiry().format("%Y").to_string().parse::<i32>().unwrap()));
        }
        sound(signer.mint(a, format, b, &policy));
        sound(policy.check_mint(a, format, b));
        sound(policy.check(a, b));
        sound(o_form(a));
        let _ = format.floor(a);
        let _ = human_duration(d);
        let _ = human_duration(e);

        // Verifying at any instant, under any policy.
        let mut verifier = Verifier::new(policy);
        verifier.insert("gw1", KeyType::Primary, key).unwrap();
        for token in tokens {
            let untrusted = UntrustedToken::parse(token).unwrap();
            let _ = untrusted.is_expired(a);
            if let Some(verified) = sound(verifier.verify(token, a)) {
                let _ = verified.expires_in(b);
                let _ = verified.expires_in(MIN);
                let _ = verified.expires_in(MAX);
            }
            sound(verifier.verify_bytes(token.as_bytes(), a));
            sound(verifier.verify_parsed(&untrusted, a));
            sound(signer.verify(&untrusted, a, &policy));
        }

        // A token source of any lifetime and margin, asked at any instant.
        if let Some(source) = sound(TokenSource::new(signer.clone(), format, d, e)) {
            let source = source.with_policy(policy);
            sound(source.token(a));
            sound(source.token(b));
        } else {
            prop_assert!(d <= TimeDelta::zero() || e < TimeDelta::zero());
        }
    }
}

#[test]
fn the_extremes_themselves() {
    let signer = &FIXTURE.signer;
    let open = Policy::new().with_max_lifetime(None);
    for at in [MIN, MAX] {
        for format in [Format::Compact, Format::Uid] {
            for (result, code) in [
                (signer.sign(at, format).map(|_| ()), "InvalidExpiry"),
                (
                    signer
                        .mint(at, format, DateTime::UNIX_EPOCH, &open)
                        .map(|_| ()),
                    "InvalidExpiry",
                ),
                (o_form(at).map(|_| ()), "InvalidExpiry"),
            ] {
                let err = result.unwrap_err();
                assert_eq!((err.code(), err.http_status()), (code, 400), "{err}");
            }
        }
    }
    for d in [TimeDelta::MIN, TimeDelta::MAX] {
        for now in [MIN, MAX] {
            let policy = Policy::new().with_leeway(d).with_max_lifetime(Some(d));
            let _ = policy.check(now, MAX);
            let _ = policy.check(MIN, now);
        }
    }
    // Messages that print `now` print the extremes too.
    let in_2026 = Utc.with_ymd_and_hms(2026, 4, 21, 0, 44, 0).unwrap();
    let err = Policy::default()
        .check_mint(in_2026, Format::Compact, MIN)
        .unwrap_err();
    assert_eq!(
        err.message(),
        "expiry: 2026-04-21T00:44:00Z is more than the maximum lifetime (30d) ahead of now \
         (-262143-01-01T00:00:00Z)"
    );
    let err = Policy::default()
        .check_mint(in_2026, Format::Uid, MAX)
        .unwrap_err();
    assert_eq!(
        err.message(),
        "expiry: 2026-04-21T00:44:00Z is not after now (+262142-12-31T23:59:59.999999999Z)"
    );
    assert_eq!(human_duration(TimeDelta::MAX), "106751991167d 7h");
    assert_eq!(human_duration(TimeDelta::MIN), "106751991167d 7h");
}
