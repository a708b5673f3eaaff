//! Golden vectors computed independently of the crate (tests/vectors/generate.py, Python's
//! hmac/hashlib/base64), and the 12 sample vectors of a separate implementation
//! (tests/vectors/sample-vectors.json, a copy of the project's shared/sample-vectors.json).

use apim_sas::chrono::{DateTime, Utc};
use apim_sas::{o_form, Format, GatewayKey, KeyType, Policy, Signer, UntrustedToken, Verifier};

use crate::common::{load, Vector};

fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

fn format(name: &str) -> Format {
    match name {
        "compact" => Format::Compact,
        "uid" => Format::Uid,
        other => panic!("unknown format {other}"),
    }
}

fn check_all(vectors: &[Vector]) {
    let decoy = GatewayKey::new("decoy-key-that-signed-nothing").unwrap();
    for v in vectors {
        let key = GatewayKey::new(v.key.clone()).unwrap();
        let signer = Signer::new(&v.id, &key).unwrap();
        let expiry = instant(&v.expiry);
        let now = instant(&v.now);
        let fmt = format(&v.format);

        // Signing: every byte.
        let token = signer.sign(expiry, fmt).unwrap();
        assert_eq!(token.to_string(), v.token, "sign {v:?}");
        assert_eq!(o_form(token.expiry()).unwrap(), v.expiry_o, "floor {v:?}");
        assert_eq!(token.id(), v.id);
        assert_eq!(token.format(), fmt);

        // Minting with the default policy at `now`: same bytes, or ExpiryInPast when `now` is
        // already at the expiry (the one vector at the first instant of year 0001).
        match signer.mint(expiry, fmt, now, &Policy::default()) {
            Ok(minted) => assert_eq!(minted.to_string(), v.token, "mint {v:?}"),
            Err(e) => {
                assert_eq!(e.code(), "ExpiryInPast", "{v:?}");
                assert!(token.expiry() <= now, "{v:?}");
            }
        }

        // Parsing without a key.
        let parsed = UntrustedToken::parse(&v.token).unwrap();
        assert_eq!(parsed.id(), v.id);
        assert_eq!(parsed.format(), fmt);
        assert_eq!(parsed.expiry(), token.expiry());
        assert_eq!(parsed.signature(), token.signature());

        // Verifying with the key as primary, then rotated to secondary.
        let mut verifier = Verifier::new(Policy::default());
        verifier.insert(&v.id, KeyType::Primary, &key).unwrap();
        let ok = verifier
            .verify(&v.token, now)
            .unwrap_or_else(|e| panic!("{e} {v:?}"));
        assert_eq!(
            (ok.id(), ok.expiry(), ok.key_type(), ok.format()),
            (v.id.as_str(), token.expiry(), KeyType::Primary, fmt)
        );
        verifier.insert(&v.id, KeyType::Primary, &decoy).unwrap();
        assert_eq!(
            verifier.verify(&v.token, now).unwrap_err().code(),
            "SignatureMismatch"
        );
        verifier.insert(&v.id, KeyType::Secondary, &key).unwrap();
        let rotated = verifier.verify(&v.token, now).unwrap();
        assert_eq!(rotated.key_type(), KeyType::Secondary);

        // With either scheme, in any case, with several spaces.
        for prefix in [
            "GatewayKey ",
            "SharedAccessSignature ",
            "gatewaykey   ",
            "SHAREDACCESSSIGNATURE  ",
        ] {
            let with = format!("{prefix}{}", v.token);
            assert_eq!(
                verifier.verify(&with, now).unwrap().key_type(),
                KeyType::Secondary
            );
        }

        // The other form carries the same signature and verifies too (uid -> compact only for
        // whole minutes).
        let other = match fmt {
            Format::Compact => Format::Uid,
            _ => Format::Compact,
        };
        match parsed.convert(other) {
            Ok(converted) => {
                let converted = converted.to_string();
                assert!(converted.ends_with(&v.token[v.token.len() - 88..]));
                assert_eq!(verifier.verify(&converted, now).unwrap().format(), other);
                assert_eq!(token.convert(other).unwrap().to_string(), converted);
            }
            Err(e) => {
                assert_eq!(e.code(), "ExpiryNotWholeMinute");
                assert_eq!(fmt, Format::Uid);
                assert!(!v.expiry_o.ends_with(":00.0000000Z"));
            }
        }
    }
}

#[test]
fn golden_vectors_from_python() {
    let vectors = load("tests/vectors/golden.json");
    assert!(vectors.len() >= 200);
    check_all(&vectors);
}

#[test]
fn sample_vectors_from_a_separate_implementation() {
    let vectors = load("tests/vectors/sample-vectors.json");
    assert_eq!(vectors.len(), 12);
    check_all(&vectors);
}

/// The flooring rule of `docs/format.md`: `gw1&201904210044&…` signs
/// `gw1\n2019-04-21T00:44:00.0000000Z`.
#[test]
fn design_example_string_to_sign() {
    let key = GatewayKey::new("k").unwrap();
    let token = Signer::new("gw1", &key)
        .unwrap()
        .sign(instant("2019-04-21T00:44:59.999Z"), Format::Compact)
        .unwrap();
    // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"k",b"gw1\n2019-04-21T00:44:00.0000000Z",hashlib.sha512).digest()).decode())'
    assert_eq!(
        token.to_string(),
        "gw1&201904210044&iLiqU+8J+5eSSWAx2SvTqr7dAPvLQ5CHJhjCNl+/PVqaT620idctgK5WzF1WTlILVuNaO+lnclf1ZF8b13pjrA=="
    );
}

/// Two tokens from a separate, public implementation: the unit test of CloudSlang's Azure
/// content (cloudslang/cs-actions, `AuthorizationTokenImplTest`), which signs Azure's documented
/// example id with a key used as text. Checked against Python's hmac as well.
#[test]
fn cloudslang_uid_tokens() {
    for (id, key, signature) in [
        (
            "53dd860e1b72ff0467030003",
            "pXeTVcmdbU9XxH6fPcPlq8Y9D9G3Cdo5Eh2nMSgKj/DWqeSFFXDdmpz5Trv+L2hQNM+nGa704Rf8Z22W9O1jdQ==",
            "FWBrF2PBYVEZgpoyaPWNKIBIGLQxbJAw6A3Lu4EB78aooaZldHXZTZBkqyMWlLdrpK5/q3BFDgj9vqX1vrR0ww==",
        ),
        (
            "123",
            "321",
            "q6hTggdd9OCV+1sdVPDl88VzYyN9XZWegp/s3ApX1szHOI5eDuMkoqC43v25uL8xvNPfU0VtzrJQj/balAlxvw==",
        ),
    ] {
        let key = GatewayKey::new(key).unwrap();
        let token = Signer::new(id, &key)
            .unwrap()
            .sign(instant("2014-08-04T22:03:00Z"), Format::Uid)
            .unwrap();
        assert_eq!(
            token.with_scheme(apim_sas::Scheme::SharedAccessSignature),
            format!("SharedAccessSignature uid={id}&ex=2014-08-04T22:03:00.0000000Z&sn={signature}")
        );
    }
}
