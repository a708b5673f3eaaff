//! Verify arbitrary bytes against a fixed keystore with rotated keys: never a panic, every
//! refusal a token error (401), and anything accepted really is signed by the key reported.
#![no_main]

use std::sync::OnceLock;

use apim_sas::chrono::{DateTime, TimeZone, Utc};
use apim_sas::{GatewayKey, KeyType, Policy, Signer, UntrustedToken, Verifier};
use libfuzzer_sys::fuzz_target;

const GATEWAYS: [(&str, &str, &str); 3] = [
    ("gw1", "primary-key-of-gw1", "secondary-key-of-gw1"),
    (
        "53dd860e1b72ff0467030003",
        "pXeTVcmdbU9XxH6fPcPlq8Y9D9G3Cdo5Eh2nMSgKj/DWqeSFFXDdmpz5Trv+L2hQNM+nGa704Rf8Z22W9O1jdQ==",
        "321",
    ),
    ("integration", "clé-ünïcødé", "k"),
];

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, 21, 0, 0, 0).unwrap()
}

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let mut v = Verifier::new(Policy::new().with_max_lifetime(None));
        for (id, primary, secondary) in GATEWAYS {
            v.insert(id, KeyType::Primary, &GatewayKey::new(primary).unwrap())
                .unwrap();
            v.insert(id, KeyType::Secondary, &GatewayKey::new(secondary).unwrap())
                .unwrap();
        }
        v
    })
}

fuzz_target!(|data: &[u8]| {
    match verifier().verify_bytes(data, now()) {
        Err(e) => assert_eq!(e.http_status(), 401, "{e}"),
        Ok(v) => {
            // Re-sign independently with the key the verifier reported and compare.
            let (_, primary, secondary) = GATEWAYS.iter().find(|g| g.0 == v.id()).unwrap();
            let key = match v.key_type() {
                KeyType::Primary => primary,
                KeyType::Secondary => secondary,
                other => panic!("a key type this keystore never held: {other}"),
            };
            let token = Signer::new(v.id(), &GatewayKey::new(*key).unwrap())
                .unwrap()
                .sign(v.expiry(), v.format())
                .unwrap();
            let parsed = UntrustedToken::parse_bytes(data).unwrap();
            assert_eq!(parsed.signature(), token.signature());
            assert!(v.expiry() > now() - apim_sas::chrono::TimeDelta::seconds(60));
        }
    }
});
