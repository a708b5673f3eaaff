//! Key files and keystores: the shapes Azure hands keys out in, parsed without leaking them.
//!
//! - [`KeyPair`]: `{"primary": "…", "secondary": "…"}`, the body of Azure's gateway list-keys
//!   operation (other fields are ignored; at least one key must be there).
//! - [`Keystore`]: many gateways, `{"gw1": {"primary": "…", "secondary": "…"}}` in JSON, or the
//!   same in TOML (`[gw1]` tables).
//!
//! Parse errors are `InvalidKeyFile` (status 500) with the line and column, and a description of
//! the expected shape; they never quote the file (serde's own messages can quote a value, and a
//! value here is a key). Texts are parsed from memory: reading files is the caller's I/O.

use std::collections::BTreeMap;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Target};
use crate::key::{GatewayKey, KeyType};
use crate::policy::Policy;
use crate::verify::Verifier;

const PAIR_SHAPE: &str = r#"expected {"primary": "<key>", "secondary": "<key>"}"#;
const STORE_SHAPE: &str =
    r#"expected {"<gateway id>": {"primary": "<key>", "secondary": "<key>"}, …}"#;
const TOML_SHAPE: &str =
    r#"expected [<gateway id>] tables with primary = "<key>", secondary = "<key>""#;

#[derive(Deserialize)]
struct RawPair {
    primary: Option<Zeroizing<String>>,
    secondary: Option<Zeroizing<String>>,
}

fn invalid(message: String) -> Error {
    Error::config(ErrorKind::InvalidKeyFile, Target::Key, message)
}

fn json_error(err: &serde_json::Error, shape: &str) -> Error {
    use serde_json::error::Category;
    let what = match err.classify() {
        Category::Syntax => "not valid JSON",
        Category::Eof => "JSON ends too early",
        Category::Data | Category::Io => "JSON of the wrong shape",
    };
    invalid(format!(
        "{what} at line {}, column {}; {shape}",
        err.line(),
        err.column()
    ))
}

fn toml_error(err: &toml::de::Error, text: &str) -> Error {
    let line = err
        .span()
        .map(|span| {
            text.get(..span.start)
                .map_or(0, |t| t.lines().count().max(1))
        })
        .unwrap_or(0);
    if line > 0 {
        invalid(format!(
            "not a valid TOML keystore at line {line}; {TOML_SHAPE}"
        ))
    } else {
        invalid(format!("not a valid TOML keystore; {TOML_SHAPE}"))
    }
}

/// One gateway's keys, as Azure's list-keys operation returns them.
#[derive(Clone, Debug, Default)]
pub struct KeyPair {
    primary: Option<GatewayKey>,
    secondary: Option<GatewayKey>,
}

impl KeyPair {
    /// Both keys (either may be absent).
    pub fn new(primary: Option<GatewayKey>, secondary: Option<GatewayKey>) -> KeyPair {
        KeyPair { primary, secondary }
    }

    /// Parses `{"primary": "…", "secondary": "…"}`.
    ///
    /// ```
    /// use apim_sas::{KeyPair, KeyType};
    /// let pair = KeyPair::from_json(r#"{"primary": "k1", "secondary": "k2"}"#)?;
    /// assert!(pair.get(KeyType::Secondary).is_ok());
    /// let err = KeyPair::from_json(r#"{"primary": 5}"#).unwrap_err();
    /// assert_eq!((err.code(), err.http_status()), ("InvalidKeyFile", 500));
    /// # Ok::<(), apim_sas::Error>(())
    /// ```
    pub fn from_json(text: &str) -> Result<KeyPair, Error> {
        let raw: RawPair = serde_json::from_str(text).map_err(|e| json_error(&e, PAIR_SHAPE))?;
        KeyPair::from_raw(raw, None)
    }

    fn from_raw(raw: RawPair, id: Option<&str>) -> Result<KeyPair, Error> {
        let take = |key: Option<Zeroizing<String>>, key_type: KeyType| {
            key.map(|k| {
                GatewayKey::new(k.as_str()).map_err(|e| {
                    let place = match id {
                        Some(id) => format!("gateway '{id}', {key_type} key"),
                        None => format!("{key_type} key"),
                    };
                    Error::config(e.kind(), Target::Key, format!("{place}: {}", e.message()))
                })
            })
            .transpose()
        };
        let pair = KeyPair {
            primary: take(raw.primary, KeyType::Primary)?,
            secondary: take(raw.secondary, KeyType::Secondary)?,
        };
        if pair.primary.is_none() && pair.secondary.is_none() {
            let place = id.map_or(String::new(), |id| format!("gateway '{id}': "));
            return Err(invalid(format!("{place}no key; {PAIR_SHAPE}")));
        }
        Ok(pair)
    }

    /// The key of `key_type`, or `KeyNotFound` (status 500).
    pub fn get(&self, key_type: KeyType) -> Result<&GatewayKey, Error> {
        let key = match key_type {
            KeyType::Primary => self.primary.as_ref(),
            KeyType::Secondary => self.secondary.as_ref(),
        };
        key.ok_or_else(|| {
            Error::config(
                ErrorKind::KeyNotFound,
                Target::Key,
                format!("key: no {key_type} key in the key file"),
            )
        })
    }

    /// Both keys with their types, primary first.
    pub fn keys(&self) -> impl Iterator<Item = (KeyType, &GatewayKey)> + '_ {
        [
            (KeyType::Primary, self.primary.as_ref()),
            (KeyType::Secondary, self.secondary.as_ref()),
        ]
        .into_iter()
        .filter_map(|(t, k)| k.map(|k| (t, k)))
    }
}

/// Many gateways' keys, by gateway id.
#[derive(Clone, Debug, Default)]
pub struct Keystore {
    gateways: BTreeMap<String, KeyPair>,
}

impl Keystore {
    /// Parses `{"gw1": {"primary": "…", "secondary": "…"}, …}`.
    pub fn from_json(text: &str) -> Result<Keystore, Error> {
        let raw: BTreeMap<String, RawPair> =
            serde_json::from_str(text).map_err(|e| json_error(&e, STORE_SHAPE))?;
        Keystore::from_raw(raw)
    }

    /// Parses the TOML keystore: `[gw1]` tables with `primary = "…"` and `secondary = "…"`.
    ///
    /// ```
    /// use apim_sas::Keystore;
    /// let store = Keystore::from_toml("[gw1]\nprimary = \"k1\"\n\n[gw2]\nsecondary = \"k2\"\n")?;
    /// assert_eq!(store.len(), 2);
    /// # Ok::<(), apim_sas::Error>(())
    /// ```
    pub fn from_toml(text: &str) -> Result<Keystore, Error> {
        let raw: BTreeMap<String, RawPair> =
            toml::from_str(text).map_err(|e| toml_error(&e, text))?;
        Keystore::from_raw(raw)
    }

    fn from_raw(raw: BTreeMap<String, RawPair>) -> Result<Keystore, Error> {
        let mut gateways = BTreeMap::new();
        for (id, pair) in raw {
            crate::sign::check_id_for(&id, crate::error::Op::Config)?;
            let pair = KeyPair::from_raw(pair, Some(&id))?;
            gateways.insert(id, pair);
        }
        Ok(Keystore { gateways })
    }

    /// Adds or replaces a gateway's keys.
    pub fn insert(&mut self, id: &str, pair: KeyPair) -> Result<(), Error> {
        crate::sign::check_id_for(id, crate::error::Op::Config)?;
        self.gateways.insert(id.to_owned(), pair);
        Ok(())
    }

    /// The keys of gateway `id`.
    pub fn get(&self, id: &str) -> Option<&KeyPair> {
        self.gateways.get(id)
    }

    /// How many gateways.
    pub fn len(&self) -> usize {
        self.gateways.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.gateways.is_empty()
    }

    /// The gateways in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &KeyPair)> + '_ {
        self.gateways.iter().map(|(id, pair)| (id.as_str(), pair))
    }

    /// A verifier holding every key of every gateway.
    pub fn verifier(&self, policy: Policy) -> Result<Verifier, Error> {
        let mut verifier = Verifier::new(policy);
        for (id, pair) in self.iter() {
            for (key_type, key) in pair.keys() {
                verifier.insert(id, key_type, key)?;
            }
        }
        Ok(verifier)
    }
}
