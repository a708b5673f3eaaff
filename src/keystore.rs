//! Key files and keystores: the shapes Azure hands keys out in, parsed without leaking them.
//!
//! - [`KeyPair`]: `{"primary": "…", "secondary": "…"}`, the body of Azure's gateway list-keys
//!   operation (other fields are ignored; at least one key must be there).
//! - [`Keystore`]: many gateways, `{"gw1": {"primary": "…", "secondary": "…"}}` in JSON, or the
//!   same in TOML (`[gw1]` tables). Strict: a field other than `primary` and `secondary` (a
//!   misspelt `secundary` would otherwise leave a gateway without the key meant for it), a field
//!   given twice, or a gateway given twice (JSON maps would keep the last one silently) is
//!   refused, naming the gateway and the field.
//!
//! A key value is used without the whitespace around it, in every shape (as the command trims a
//! key file's final newline): Azure's keys are base64 text with none, and a key signed with a
//! stray space would make tokens Azure refuses. Whitespace or control characters inside a key
//! are refused by [`GatewayKey::new`](crate::GatewayKey::new).
//!
//! Parse errors are `InvalidKeyFile` (status 500) with the line (and for JSON the column), the
//! gateway and field where known, and a description of the expected shape. Gateway ids and
//! field names are the operator's and are shown (escaped); values never are, and neither are
//! serde's own messages, which can quote a value (a key). Texts are parsed from memory: reading
//! files is the caller's I/O.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
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

/// The keys of one gateway as read. Deriving `Deserialize` ignores unknown fields: that is the
/// lenient list-keys file; keystores read it through [`Fields`] instead.
#[derive(Deserialize, Default)]
struct RawPair {
    primary: Option<Zeroizing<String>>,
    secondary: Option<Zeroizing<String>>,
}

fn invalid(message: String) -> Error {
    Error::config(ErrorKind::InvalidKeyFile, Target::Key, message)
}

/// What a keystore's rules refused, or where parsing stopped, recorded beside the parser's error
/// as it happens: the parser's own message is never shown (it can quote a value).
enum Problem {
    /// Parsing stopped inside this gateway's entry (and this field's value).
    Within {
        gateway: String,
        field: Option<&'static str>,
    },
    UnknownField {
        gateway: String,
        field: String,
    },
    DuplicateField {
        gateway: String,
        field: String,
    },
    DuplicateGateway {
        gateway: String,
    },
}

type Trace = Cell<Option<Problem>>;

/// A name from the file (a gateway id, a field name) as a message shows it: escaped, so that no
/// control character reaches a log as is, and cut after 80 characters.
fn shown(name: &str) -> String {
    let mut out: String = name.chars().take(80).flat_map(char::escape_debug).collect();
    if name.chars().nth(80).is_some() {
        out.push('…');
    }
    out
}

impl Problem {
    /// The message, given where the parser stopped (`" at line 3, column 7"`) and what the
    /// parser found wrong in its own terms (`"JSON of the wrong shape at line 1, column 20"`).
    fn message(&self, at: &str, generic: &str) -> String {
        match self {
            Problem::Within {
                gateway,
                field: None,
            } => format!("gateway '{}': {generic}", shown(gateway)),
            Problem::Within {
                gateway,
                field: Some(field),
            } => format!("gateway '{}', field '{field}': {generic}", shown(gateway)),
            Problem::UnknownField { gateway, field } => format!(
                "gateway '{}': unknown field '{}'{at}; a gateway has only \"primary\" and \"secondary\"",
                shown(gateway),
                shown(field)
            ),
            Problem::DuplicateField { gateway, field } => format!(
                "gateway '{}': field '{}' is given twice,{at}",
                shown(gateway),
                shown(field)
            ),
            Problem::DuplicateGateway { gateway } => {
                format!("gateway '{}' is given twice,{at}", shown(gateway))
            }
        }
    }
}

/// Records `problem` and returns the error that stops the parser (its text is never shown).
fn refuse<E: de::Error>(trace: &Trace, problem: Problem) -> E {
    trace.set(Some(problem));
    E::custom("refused by the keystore's rules")
}

/// A keystore's gateways: a map of ids to [`Fields`], each id once.
struct Gateways<'t>(&'t Trace);

impl<'de> DeserializeSeed<'de> for Gateways<'_> {
    type Value = BTreeMap<String, RawPair>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Gateways<'_> {
    type Value = BTreeMap<String, RawPair>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("gateway ids mapped to their keys")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let trace = self.0;
        let mut gateways = BTreeMap::new();
        while let Some(id) = map.next_key::<String>()? {
            if gateways.contains_key(&id) {
                return Err(refuse(trace, Problem::DuplicateGateway { gateway: id }));
            }
            trace.set(Some(Problem::Within {
                gateway: id.clone(),
                field: None,
            }));
            let pair = map.next_value_seed(Fields {
                gateway: &id,
                trace,
            })?;
            trace.set(None);
            gateways.insert(id, pair);
        }
        Ok(gateways)
    }
}

/// One keystore gateway's keys: `primary` and `secondary`, each at most once, nothing else.
struct Fields<'a> {
    gateway: &'a str,
    trace: &'a Trace,
}

impl<'de> DeserializeSeed<'de> for Fields<'_> {
    type Value = RawPair;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<RawPair, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Fields<'_> {
    type Value = RawPair;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a gateway's primary and secondary keys")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawPair, A::Error> {
        let (trace, gateway) = (self.trace, self.gateway);
        let mut pair = RawPair::default();
        let (mut primary_seen, mut secondary_seen) = (false, false);
        while let Some(name) = map.next_key::<String>()? {
            let (field, slot, seen) = match name.as_str() {
                "primary" => ("primary", &mut pair.primary, &mut primary_seen),
                "secondary" => ("secondary", &mut pair.secondary, &mut secondary_seen),
                _ => {
                    return Err(refuse(
                        trace,
                        Problem::UnknownField {
                            gateway: gateway.to_owned(),
                            field: name,
                        },
                    ))
                }
            };
            // Before its value is read: the second value is never even held.
            if std::mem::replace(seen, true) {
                return Err(refuse(
                    trace,
                    Problem::DuplicateField {
                        gateway: gateway.to_owned(),
                        field: name,
                    },
                ));
            }
            trace.set(Some(Problem::Within {
                gateway: gateway.to_owned(),
                field: Some(field),
            }));
            *slot = map.next_value()?;
        }
        Ok(pair)
    }
}

/// What serde_json found wrong, in its own terms but without its message.
fn json_message(err: &serde_json::Error, shape: &str) -> String {
    use serde_json::error::Category;
    let what = match err.classify() {
        Category::Syntax => "not valid JSON",
        Category::Eof => "JSON ends too early",
        Category::Data | Category::Io => "JSON of the wrong shape",
    };
    format!("{what} at {}; {shape}", json_place(err))
}

/// `line L, column C`; serde_json says column 0 for an error before the line's first character
/// is consumed, which a reader counts as column 1.
fn json_place(err: &serde_json::Error) -> String {
    format!("line {}, column {}", err.line(), err.column().max(1))
}

fn json_error(err: &serde_json::Error, shape: &str) -> Error {
    invalid(json_message(err, shape))
}

/// A keystore's JSON error: the rule it broke where one did, else serde_json's category, with
/// the gateway and field it stopped in.
fn store_json_error(err: &serde_json::Error, trace: &Trace) -> Error {
    let generic = json_message(err, STORE_SHAPE);
    match trace.take() {
        Some(problem) => {
            let at = format!(" at {}", json_place(err));
            invalid(problem.message(&at, &generic))
        }
        None => invalid(generic),
    }
}

/// The line a TOML error points at, from its span.
fn toml_line(err: &toml::de::Error, text: &str) -> Option<usize> {
    line_at(text, err.span()?.start)
}

/// The line of byte offset `at`, counted from 1.
fn line_at(text: &str, at: usize) -> Option<usize> {
    let before = text.get(..at)?;
    Some(before.bytes().filter(|&b| b == b'\n').count() + 1)
}

/// The line of a gateway's field in a TOML document that parses (serde's error points at the
/// gateway's table, not at the field).
fn toml_field_line(text: &str, gateway: &str, field: &str) -> Option<usize> {
    let document = toml::de::DeTable::parse(text).ok()?;
    let (_, table) = document
        .get_ref()
        .iter()
        .find(|(id, _)| id.get_ref() == gateway)?;
    let toml::de::DeValue::Table(fields) = table.get_ref() else {
        return None;
    };
    let (name, _) = fields.iter().find(|(name, _)| name.get_ref() == field)?;
    line_at(text, name.span().start)
}

fn toml_message(err: &toml::de::Error, text: &str) -> String {
    match toml_line(err, text) {
        Some(line) => format!("not a valid TOML keystore at line {line}; {TOML_SHAPE}"),
        None => format!("not a valid TOML keystore; {TOML_SHAPE}"),
    }
}

fn toml_error(err: &toml::de::Error, text: &str) -> Error {
    invalid(toml_message(err, text))
}

/// A keystore's TOML error, as [`store_json_error`] (TOML errors carry a line, no column).
fn store_toml_error(err: &toml::de::Error, text: &str, trace: &Trace) -> Error {
    let problem = trace.take().or_else(|| toml_duplicate(err, text));
    match problem {
        Some(problem) => {
            let line = match &problem {
                Problem::UnknownField { gateway, field } => toml_field_line(text, gateway, field),
                _ => None,
            };
            let at = line
                .or_else(|| toml_line(err, text))
                .map_or(String::new(), |line| format!(" at line {line}"));
            invalid(problem.message(&at, &toml_message(err, text)))
        }
        None => toml_error(err, text),
    }
}

/// Names what a TOML "duplicate key" error is about. TOML's parser refuses a key given twice
/// before serde sees the document, pointing at the second spelling; the document as recovered
/// from the error says whose it is. `None` when it cannot be told for sure.
fn toml_duplicate(err: &toml::de::Error, text: &str) -> Option<Problem> {
    if err.message() != "duplicate key" {
        return None;
    }
    let span = err.span()?;
    let (document, _) = toml::de::DeTable::parse_recoverable(text);
    let document = document.get_ref();
    // A gateway's table given again: the recovered gateway carries the span of the repeat.
    if let Some((id, _)) = document.iter().find(|(id, _)| id.span() == span) {
        return Some(Problem::DuplicateGateway {
            gateway: id.get_ref().to_string(),
        });
    }
    // A field given again: its name, unquoted by TOML's own parser.
    let raw = text.get(span.clone())?;
    let field = toml::de::DeTable::parse(&format!("{raw} = 0"))
        .ok()?
        .get_ref()
        .iter()
        .next()
        .map(|(name, _)| name.get_ref().to_string())?;
    // The gateway whose header or fields come last before the repeat, if it has that field.
    let mut last: Option<(usize, &toml::de::DeTable<'_>, &str)> = None;
    for (id, value) in document.iter() {
        let toml::de::DeValue::Table(fields) = value.get_ref() else {
            continue;
        };
        let starts = [id.span().start, value.span().start]
            .into_iter()
            .chain(fields.iter().map(|(name, _)| name.span().start));
        for start in starts.filter(|&start| start <= span.start) {
            if last.is_none_or(|(best, _, _)| start > best) {
                last = Some((start, fields, id.get_ref()));
            }
        }
    }
    let (_, fields, gateway) = last?;
    fields
        .iter()
        .any(|(name, _)| name.get_ref() == field.as_str())
        .then(|| Problem::DuplicateField {
            gateway: gateway.to_owned(),
            field,
        })
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

    /// Parses `{"primary": "…", "secondary": "…"}`. Each key is used without the whitespace
    /// around it.
    ///
    /// ```
    /// use apim_sas::{KeyPair, KeyType, Signer, Format};
    /// let pair = KeyPair::from_json(r#"{"primary": "k1", "secondary": " k2\n"}"#)?;
    /// assert!(pair.get(KeyType::Secondary).is_ok());
    /// // " k2\n" signs as "k2" does.
    /// let trimmed = KeyPair::from_json(r#"{"secondary": "k2"}"#)?;
    /// let expiry = apim_sas::chrono::DateTime::UNIX_EPOCH;
    /// let sign = |pair: &KeyPair| -> Result<String, apim_sas::Error> {
    ///     let key = pair.get(KeyType::Secondary)?;
    ///     Ok(Signer::new("gw1", key)?.sign(expiry, Format::Compact)?.to_string())
    /// };
    /// assert_eq!(sign(&pair)?, sign(&trimmed)?);
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
                // Without the whitespace around it: see the module docs.
                GatewayKey::new(k.trim()).map_err(|e| {
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
    /// Parses `{"gw1": {"primary": "…", "secondary": "…"}, …}`. Each key is used without the
    /// whitespace around it.
    ///
    /// Strict: a field other than `primary` and `secondary`, or a gateway or field given twice,
    /// is `InvalidKeyFile`, naming the gateway and the field.
    ///
    /// ```
    /// use apim_sas::Keystore;
    /// let store = Keystore::from_json(r#"{"gw1": {"primary": "k1", "secondary": "k2"}}"#)?;
    /// assert_eq!(store.len(), 1);
    /// let err = Keystore::from_json(r#"{"gw1": {"primary": "k1", "secundary": "k2"}}"#).unwrap_err();
    /// assert_eq!(err.code(), "InvalidKeyFile");
    /// assert!(err.message().starts_with("gateway 'gw1': unknown field 'secundary' at line 1"));
    /// # Ok::<(), apim_sas::Error>(())
    /// ```
    pub fn from_json(text: &str) -> Result<Keystore, Error> {
        let trace = Trace::default();
        let mut de = serde_json::Deserializer::from_str(text);
        let raw = Gateways(&trace)
            .deserialize(&mut de)
            .and_then(|raw| de.end().map(|()| raw))
            .map_err(|e| store_json_error(&e, &trace))?;
        Keystore::from_raw(raw)
    }

    /// Parses the TOML keystore: `[gw1]` tables with `primary = "…"` and `secondary = "…"`,
    /// as strictly as [`Keystore::from_json`].
    ///
    /// ```
    /// use apim_sas::Keystore;
    /// let store = Keystore::from_toml("[gw1]\nprimary = \"k1\"\n\n[gw2]\nsecondary = \"k2\"\n")?;
    /// assert_eq!(store.len(), 2);
    /// let err = Keystore::from_toml("[gw1]\nprimary = \"k1\"\n\n[gw1]\nsecondary = \"k2\"\n");
    /// assert_eq!(err.unwrap_err().message(), "gateway 'gw1' is given twice, at line 4");
    /// # Ok::<(), apim_sas::Error>(())
    /// ```
    pub fn from_toml(text: &str) -> Result<Keystore, Error> {
        let trace = Trace::default();
        let raw = toml::de::Deserializer::parse(text)
            .and_then(|de| Gateways(&trace).deserialize(de))
            .map_err(|e| store_toml_error(&e, text, &trace))?;
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
