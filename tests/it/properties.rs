//! Properties: sign → parse → verify round trips; parsing never panics; one changed character
//! never verifies; converting between forms keeps a token valid.

use apim_sas::chrono::{DateTime, TimeDelta, TimeZone, Utc};
use apim_sas::{Format, GatewayKey, KeyType, Policy, Signer, UntrustedToken, Verifier};
use proptest::prelude::*;

fn id() -> impl Strategy<Value = String> {
    "[\\x21-\\x25\\x27-\\x7e]{1,80}".prop_filter("not uid=, not managed, no slip", |s| {
        let lower = s.to_ascii_lowercase();
        !s.starts_with("uid=")
            && !s.eq_ignore_ascii_case("managed")
            && !lower.starts_with("config.service.auth=")
            && !lower.starts_with("authorization:")
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9+/]{86}==", "\\PC{1,300}", "[a-z]{129,400}",].prop_filter(
        "not a key pasted with its wrapping (quotes, a JSON object): GatewayKey refuses those",
        |k| {
            let wrapped = |a: char, b: char| k.len() >= 2 && k.starts_with(a) && k.ends_with(b);
            !(wrapped('"', '"') || wrapped('\'', '\'') || wrapped('{', '}'))
        },
    )
}

/// Any instant with years 0002–9998 (so that `now` a day away stays in range), any nanosecond.
fn expiry() -> impl Strategy<Value = DateTime<Utc>> {
    let first = Utc.with_ymd_and_hms(2, 1, 1, 0, 0, 0).unwrap().timestamp();
    let last = Utc
        .with_ymd_and_hms(9998, 12, 31, 23, 59, 59)
        .unwrap()
        .timestamp();
    (first..=last, 0u32..1_000_000_000)
        .prop_map(|(secs, nanos)| Utc.timestamp_opt(secs, nanos).unwrap())
}

fn format() -> impl Strategy<Value = Format> {
    prop_oneof![Just(Format::Compact), Just(Format::Uid)]
}

fn setup(id: &str, key: &str) -> (Signer, Verifier) {
    let key = GatewayKey::new(key).unwrap();
    let mut verifier = Verifier::new(Policy::default());
    verifier.insert(id, KeyType::Primary, &key).unwrap();
    (Signer::new(id, &key).unwrap(), verifier)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn sign_parse_verify_round_trip(id in id(), key in key(), expiry in expiry(), format in format(),
                                    ahead in 1i64..(29 * 86_400)) {
        let (signer, verifier) = setup(&id, &key);
        let token = signer.sign(expiry, format).unwrap();
        let floored = format.floor(expiry);
        prop_assert_eq!(token.expiry(), floored);
        let text = token.to_string();
        let parsed = UntrustedToken::parse(&text).unwrap();
        prop_assert_eq!(parsed.id(), id.as_str());
        prop_assert_eq!(parsed.expiry(), floored);
        prop_assert_eq!(parsed.format(), format);
        let now = floored - TimeDelta::seconds(ahead);
        let verified = verifier.verify(&text, now).unwrap();
        prop_assert_eq!(verified.id(), id.as_str());
        prop_assert_eq!(verified.expiry(), floored);
        prop_assert_eq!(verified.key_type(), KeyType::Primary);
        prop_assert_eq!(verified.format(), format);
        // Minting at that `now` gives the same bytes.
        let minted = signer.mint(expiry, format, now, &Policy::default()).unwrap();
        prop_assert_eq!(minted.to_string(), text);
    }

    #[test]
    fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1100)) {
        let _ = UntrustedToken::parse_bytes(&bytes);
    }

    #[test]
    fn parsing_arbitrary_strings_never_panics(s in "\\PC{0,200}") {
        let _ = UntrustedToken::parse(&s);
    }

    #[test]
    fn parsing_token_like_strings_never_panics(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("&".to_owned()), Just("uid=".to_owned()), Just("&ex=".to_owned()),
                Just("&sn=".to_owned()), Just("GatewayKey ".to_owned()), Just("==".to_owned()),
                Just("SharedAccessSignature ".to_owned()), "[0-9]{1,14}", "[A-Za-z0-9+/]{1,90}",
                Just("2026-04-21T00:44:00.0000000Z".to_owned()), "\\PC{0,3}",
            ],
            0..8,
        )
    ) {
        let s: String = parts.concat();
        if let Err(e) = UntrustedToken::parse(&s) {
            prop_assert!(!e.message().is_empty());
            prop_assert_eq!(e.http_status(), 401);
        }
    }

    #[test]
    fn one_changed_character_never_verifies(id in id(), key in key(), expiry in expiry(),
                                            format in format(), at in any::<prop::sample::Index>(),
                                            with in any::<char>()) {
        let (signer, verifier) = setup(&id, &key);
        let floored = format.floor(expiry);
        let text = signer.sign(expiry, format).unwrap().to_string();
        let chars: Vec<char> = text.chars().collect();
        let i = at.index(chars.len());
        prop_assume!(chars[i] != with);
        let mut changed = chars.clone();
        changed[i] = with;
        let changed: String = changed.into_iter().collect();
        let now = floored - TimeDelta::hours(1);
        prop_assert!(verifier.verify(&changed, now).is_err(), "{} verified", changed);
    }

    #[test]
    fn conversion_keeps_validity(id in id(), key in key(), expiry in expiry(),
                                 ahead in 1i64..(29 * 86_400)) {
        let (signer, verifier) = setup(&id, &key);
        // compact -> uid always works; uid -> compact for whole minutes.
        let compact = signer.sign(expiry, Format::Compact).unwrap();
        let now = compact.expiry() - TimeDelta::seconds(ahead);
        let uid = UntrustedToken::parse(compact.as_str()).unwrap().convert(Format::Uid).unwrap().to_string();
        prop_assert_eq!(&uid, &signer.sign(compact.expiry(), Format::Uid).unwrap().to_string());
        let verified = verifier.verify(&uid, now).unwrap();
        prop_assert_eq!(verified.format(), Format::Uid);
        prop_assert_eq!(verified.expiry(), compact.expiry());
        let back = UntrustedToken::parse(&uid).unwrap().convert(Format::Compact).unwrap();
        prop_assert_eq!(back.to_string(), compact.to_string());
    }
}
