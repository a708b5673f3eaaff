//! Keys made from a name, the tokens they sign and the keystores that hold them, and the library's
//! own verdicts on such a keystore: one kit for the gateway tests (serve, gRPC, Caddy, Envoy, the
//! Envoy filter), each file with key texts of its own (a canary a log must never show, or a prefix
//! and suffix that no other file's keys share).

use apim_sas::chrono::{DateTime, TimeDelta, Utc};
use apim_sas::layer::GatewayIdentity;
use apim_sas::{Error, Format, GatewayKey, KeyType, Keystore, Policy, Signer, Verifier};
use serde_json::{json, Value};

/// A file's keys: `key(name)` is `{prefix}-{name}{suffix}`.
pub struct TestKeys {
    prefix: &'static str,
    suffix: &'static str,
}

impl TestKeys {
    pub const fn new(prefix: &'static str, suffix: &'static str) -> TestKeys {
        TestKeys { prefix, suffix }
    }

    pub fn key(&self, name: &str) -> String {
        format!("{}-{name}{}", self.prefix, self.suffix)
    }

    /// A token of gateway `id` signed with `key(key_name)`, expiring at `expiry`.
    pub fn sign(&self, id: &str, key_name: &str, format: Format, expiry: DateTime<Utc>) -> String {
        Signer::new(id, &GatewayKey::new(self.key(key_name)).unwrap())
            .unwrap()
            .sign(expiry, format)
            .unwrap()
            .to_string()
    }

    /// `{"id": {"primary": key(p), "secondary": key(s)}, …}`.
    pub fn keystore(&self, gateways: &[(&str, &str, Option<&str>)]) -> String {
        let mut store = serde_json::Map::new();
        for (id, p, s) in gateways {
            let mut pair = json!({ "primary": self.key(p) });
            if let Some(s) = s {
                pair["secondary"] = json!(self.key(s));
            }
            store.insert((*id).to_owned(), pair);
        }
        Value::Object(store).to_string()
    }

    /// gw1 with both keys, gw2 with a primary only, and `rot`, whose keys generation `g` of a
    /// rotation replaces (primary `rot{g}`, secondary `rot{g-1}`).
    pub fn rotation_keystore(&self, generation: usize) -> String {
        let (now, before) = (
            format!("rot{generation}"),
            format!("rot{}", generation.wrapping_sub(1)),
        );
        self.keystore(&[
            ("gw1", "p1", Some("s1")),
            ("gw2", "p2", None),
            ("rot", &now, Some(&before)),
        ])
    }
}

/// A day from now, and half a second: a whole minute's expiry that stays a day away while a test
/// runs.
pub fn in_a_day() -> DateTime<Utc> {
    Utc::now() + TimeDelta::days(1) + TimeDelta::milliseconds(500)
}

/// The library's verdicts on a keystore: what the upstream and the client must see, worked out by
/// the crate itself.
pub struct Verdicts {
    verifier: Verifier,
}

impl Verdicts {
    /// Every key of `keystore` (JSON), the default policy.
    pub fn new(keystore: &str) -> Verdicts {
        Verdicts::with(keystore, Policy::default(), None)
    }

    /// The keys of `keystore` (JSON) of type `only` (all of them: `None`), under `policy`.
    pub fn with(keystore: &str, policy: Policy, only: Option<KeyType>) -> Verdicts {
        let store = Keystore::from_json(keystore).unwrap();
        let mut verifier = Verifier::new(policy);
        for (id, pair) in store.iter() {
            for (key_type, key) in pair.keys() {
                if only.is_none_or(|only| only == key_type) {
                    verifier.insert(id, key_type, key).unwrap();
                }
            }
        }
        Verdicts { verifier }
    }

    /// The four `x-apim-*` headers of a valid token, lower case, in the library's order.
    pub fn identity(&self, token: &str) -> Vec<(String, String)> {
        let verified = self
            .verifier
            .verify(token, Utc::now())
            .unwrap_or_else(|e| panic!("{token}: {e}"));
        GatewayIdentity::from(verified)
            .headers()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect()
    }

    /// Why the library refuses a token header's value.
    pub fn refusal(&self, token: &str) -> Error {
        match self.verifier.verify(token, Utc::now()) {
            Ok(_) => panic!("{token} is valid"),
            Err(e) => e,
        }
    }
}
