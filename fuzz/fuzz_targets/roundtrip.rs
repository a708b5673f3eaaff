//! Structured round trip: any valid id, key and expiry → sign → parse → verify succeeds and
//! agrees; any one-byte change to the token does not verify.
#![no_main]

use apim_sas::chrono::{TimeDelta, TimeZone, Utc};
use apim_sas::{Format, GatewayKey, KeyType, Policy, Signer, UntrustedToken, Verifier};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    id: Vec<u8>,
    key: String,
    seconds: u32,
    nanos: u32,
    uid: bool,
    scheme: u8,
    at: u16,
    byte: u8,
}

fuzz_target!(|input: Input| {
    // An id of 1-80 printable ASCII bytes without '&', not starting with "uid=" or being "managed".
    let id: String = input
        .id
        .iter()
        .take(80)
        .map(|&b| char::from(0x21 + b % 0x5e))
        .map(|c| if c == '&' { '_' } else { c })
        .collect();
    // Ids the rules refuse (empty, `uid=…`, `managed`, a slip's prefix) are not minted.
    if Signer::check_id(&id).is_err() {
        return;
    }
    let Ok(key) = GatewayKey::new(input.key.clone()) else {
        return;
    };
    // Any instant of years 2000-2100, any nanosecond.
    let base = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
    let expiry = base
        + TimeDelta::seconds(i64::from(input.seconds % (100 * 366 * 86_400)))
        + TimeDelta::nanoseconds(i64::from(input.nanos % 1_000_000_000));
    let format = if input.uid {
        Format::Uid
    } else {
        Format::Compact
    };
    let signer = Signer::new(&id, &key).unwrap();
    let token = signer.sign(expiry, format).unwrap();
    let text = match input.scheme % 3 {
        0 => token.to_string(),
        1 => token.with_scheme(apim_sas::Scheme::GatewayKey),
        _ => token.with_scheme(apim_sas::Scheme::SharedAccessSignature),
    };

    let parsed = UntrustedToken::parse(&text).unwrap();
    assert_eq!(
        (parsed.id(), parsed.expiry(), parsed.format()),
        (id.as_str(), token.expiry(), format)
    );
    assert_eq!(token.expiry(), format.floor(expiry));

    let mut verifier = Verifier::new(Policy::default());
    verifier.insert(&id, KeyType::Secondary, &key).unwrap();
    let now = token.expiry() - TimeDelta::hours(1);
    let verified = verifier.verify(&text, now).unwrap();
    assert_eq!(
        (
            verified.id(),
            verified.expiry(),
            verified.key_type(),
            verified.format()
        ),
        (id.as_str(), token.expiry(), KeyType::Secondary, format)
    );

    let mut changed = text.clone().into_bytes();
    let i = usize::from(input.at) % changed.len();
    if changed[i] == input.byte {
        return;
    }
    // Changing the case of the scheme keeps the same token: not a change that matters.
    let scheme_len = text.find(' ').map_or(0, |p| p + 1);
    if i < scheme_len && changed[i].eq_ignore_ascii_case(&input.byte) {
        return;
    }
    changed[i] = input.byte;
    assert!(
        verifier.verify_bytes(&changed, now).is_err(),
        "a one-byte change verified: {}",
        String::from_utf8_lossy(&changed)
    );
});
