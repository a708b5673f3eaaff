//! The Kubernetes Secret form: a `v1` Secret as `kubectl get secret NAME -o json` prints it, or as
//! `mint --output k8s-secret` writes it (YAML). The token is the value under one key, `GatewayKey
//! <token>`: in `stringData` when the manifest has it there (the API server lets it win over
//! `data`), else base64 in `data`. A renewal changes that value (in `data`, and in `stringData`
//! where it holds the key) and the `apim-sas/expiry` annotation, and nothing else: JSON stays JSON
//! with its indentation, YAML stays YAML, the order of fields stays.

use base64::Engine as _;
use serde_json::{Map, Value};

/// The annotation that says when the Secret's token expires (RFC 3339), for people and alerts.
pub(crate) const EXPIRY_ANNOTATION: &str = "apim-sas/expiry";
/// The annotation that names the gateway, written on a new Secret.
pub(crate) const GATEWAY_ANNOTATION: &str = "apim-sas/gateway-id";

/// How a Secret's file was written, so that a renewal writes it back the same way.
enum Style {
    /// JSON, indented with these bytes (none: on one line), ending in a newline or not.
    Json {
        indent: Option<Vec<u8>>,
        newline: bool,
    },
    Yaml,
}

/// The Secret in `bytes` (a byte-order mark dropped) as a JSON value, and how it was written; or
/// why it is not a Secret.
fn parse(bytes: &[u8]) -> Result<(Map<String, Value>, Style), String> {
    let text = crate::cli::input::strip_bom(bytes);
    let trimmed = text.trim_ascii();
    let (value, style) = if trimmed.first() == Some(&b'{') {
        let value: Value = serde_json::from_slice(trimmed)
            .map_err(|e| format!("JSON that does not parse ({e})"))?;
        let style = Style::Json {
            indent: json_indent(trimmed),
            newline: text.ends_with(b"\n"),
        };
        (value, style)
    } else {
        let value: Value = serde_norway::from_slice(trimmed)
            .map_err(|e| format!("YAML that does not parse ({e})"))?;
        (value, Style::Yaml)
    };
    let Value::Object(object) = value else {
        return Err("not a Kubernetes Secret (not an object)".to_owned());
    };
    match object.get("kind") {
        Some(Value::String(kind)) if kind == "Secret" => {}
        Some(Value::String(kind)) => {
            return Err(format!("not a Kubernetes Secret (its kind is {kind:?})"));
        }
        _ => return Err("not a Kubernetes Secret (it has no kind)".to_owned()),
    }
    for field in ["data", "stringData", "metadata"] {
        if object
            .get(field)
            .is_some_and(|v| !v.is_object() && !v.is_null())
        {
            return Err(format!("a Secret whose {field} is not an object"));
        }
    }
    Ok((object, style))
}

/// The indentation of the first nested line of a JSON document, `None` when it is on one line.
fn json_indent(text: &[u8]) -> Option<Vec<u8>> {
    let after = &text[memchr::memchr(b'\n', text)? + 1..];
    let indent: Vec<u8> = after
        .iter()
        .copied()
        .take_while(|b| *b == b' ' || *b == b'\t')
        .collect();
    (!indent.is_empty()).then_some(indent)
}

/// The token text the Secret holds under `key` (trimmed), `None` when it holds none. A `data`
/// value that is not base64 is returned as it is, so that it reads as the malformed token it is.
pub(crate) fn token(bytes: &[u8], key: &str) -> Result<Option<Vec<u8>>, String> {
    let (object, _) = parse(bytes)?;
    let string_data = object
        .get("stringData")
        .and_then(|d| d.get(key))
        .and_then(Value::as_str);
    let text = match string_data {
        Some(text) => text.as_bytes().to_vec(),
        None => match object
            .get("data")
            .and_then(|d| d.get(key))
            .and_then(Value::as_str)
        {
            Some(encoded) => base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .unwrap_or_else(|_| encoded.as_bytes().to_vec()),
            None => return Ok(None),
        },
    };
    let text = crate::cli::input::trim(crate::cli::input::strip_bom(&text)).to_vec();
    Ok((!text.is_empty()).then_some(text))
}

/// Refuses a Secret whose name or namespace is not the one the flags give (a `--secret-name`
/// names a new Secret; an existing one is renewed under its own name, so a different one is a
/// mistake about which file this is).
pub(crate) fn check_names(
    bytes: &[u8],
    name: Option<&str>,
    namespace: Option<&str>,
) -> Result<(), String> {
    let (object, _) = parse(bytes)?;
    let metadata = object.get("metadata");
    for (flag, field, wanted) in [
        ("--secret-name", "name", name),
        ("--namespace", "namespace", namespace),
    ] {
        let held = metadata.and_then(|m| m.get(field)).and_then(Value::as_str);
        if let (Some(wanted), Some(held)) = (wanted, held) {
            if wanted != held {
                return Err(format!(
                    "the Secret's {field} is {held:?}, not {flag} {wanted:?}"
                ));
            }
        }
    }
    Ok(())
}

/// What a new Secret is made of, when there is none yet.
pub(crate) struct NewSecret<'a> {
    pub(crate) name: &'a str,
    pub(crate) namespace: Option<&'a str>,
    pub(crate) id: &'a str,
}

/// The Secret in `bytes` with `value` under `key` and `expiry` in its annotation; or, without
/// `bytes`, a new Secret (JSON, indented as kubectl prints it).
pub(crate) fn renewed(
    bytes: Option<&[u8]>,
    key: &str,
    value: &str,
    expiry: &str,
    new: &NewSecret<'_>,
) -> Result<Vec<u8>, String> {
    let encoded = Value::String(base64::engine::general_purpose::STANDARD.encode(value));
    let (mut object, style) = match bytes {
        Some(bytes) => parse(bytes)?,
        None => (
            fresh(new),
            Style::Json {
                indent: Some(b"    ".to_vec()),
                newline: true,
            },
        ),
    };
    let data = object_at(&mut object, "data");
    data.insert(key.to_owned(), encoded);
    if let Some(Value::Object(string_data)) = object.get_mut("stringData") {
        if string_data.contains_key(key) {
            string_data.insert(key.to_owned(), Value::String(value.to_owned()));
        }
    }
    let annotations = object_at(object_at(&mut object, "metadata"), "annotations");
    annotations.insert(
        EXPIRY_ANNOTATION.to_owned(),
        Value::String(expiry.to_owned()),
    );
    write(&Value::Object(object), &style)
}

/// A new Secret's fields before its token: kubectl's order of fields.
fn fresh(new: &NewSecret<'_>) -> Map<String, Value> {
    let mut metadata = Map::new();
    metadata.insert("name".to_owned(), Value::String(new.name.to_owned()));
    if let Some(namespace) = new.namespace {
        metadata.insert("namespace".to_owned(), Value::String(namespace.to_owned()));
    }
    let mut annotations = Map::new();
    annotations.insert(
        GATEWAY_ANNOTATION.to_owned(),
        Value::String(new.id.to_owned()),
    );
    metadata.insert("annotations".to_owned(), Value::Object(annotations));
    let mut object = Map::new();
    object.insert("apiVersion".to_owned(), Value::String("v1".to_owned()));
    object.insert("kind".to_owned(), Value::String("Secret".to_owned()));
    object.insert("metadata".to_owned(), Value::Object(metadata));
    object.insert("type".to_owned(), Value::String("Opaque".to_owned()));
    object
}

/// The object under `field`, made (or made an object: `parse` allowed only `null`) when absent.
fn object_at<'m>(object: &'m mut Map<String, Value>, field: &str) -> &'m mut Map<String, Value> {
    let slot = object
        .entry(field.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(map) => map,
        _ => unreachable!("made an object above"),
    }
}

fn write(value: &Value, style: &Style) -> Result<Vec<u8>, String> {
    use serde::Serialize as _;
    match style {
        Style::Json { indent, newline } => {
            let mut out = Vec::new();
            let written = match indent {
                Some(indent) => {
                    let formatter = serde_json::ser::PrettyFormatter::with_indent(indent);
                    value.serialize(&mut serde_json::Serializer::with_formatter(
                        &mut out, formatter,
                    ))
                }
                None => value.serialize(&mut serde_json::Serializer::new(&mut out)),
            };
            written.map_err(|e| e.to_string())?;
            if *newline {
                out.push(b'\n');
            }
            Ok(out)
        }
        Style::Yaml => {
            let mut out = String::new();
            yaml(value, 0, &mut out);
            Ok(out.into_bytes())
        }
    }
}

/// Whether a string can be written as a plain YAML scalar that every reader (YAML 1.1 and 1.2)
/// reads back as that string: a letter first (no number, date or timestamp), then letters,
/// digits and `._/-`, and none of the words YAML 1.1 reads as booleans or null.
fn is_plain(text: &str) -> bool {
    const WORDS: [&str; 11] = [
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf",
    ];
    text.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b))
        && !WORDS.iter().any(|word| text.eq_ignore_ascii_case(word))
}

/// YAML in the style `mint --output k8s-secret` writes: block mappings indented by two spaces;
/// strings plain where no reader could take them for anything else, otherwise double-quoted
/// (JSON's string syntax is a subset of YAML's), so that no reader takes `2026-06-14T00:00:00Z`
/// for a timestamp or `yes` for a boolean; sequences and empty mappings in flow style (JSON,
/// which YAML reads as it is).
fn yaml(value: &Value, indent: usize, out: &mut String) {
    let map = match value {
        Value::Object(map) if !map.is_empty() => map,
        Value::String(text) if is_plain(text) => {
            out.push_str(text);
            out.push('\n');
            return;
        }
        _ => {
            out.push_str(&serde_json::to_string(value).unwrap_or_default());
            out.push('\n');
            return;
        }
    };
    for (key, item) in map {
        out.extend(std::iter::repeat_n(' ', indent));
        if is_plain(key) {
            out.push_str(key);
        } else {
            out.push_str(&serde_json::to_string(key).unwrap_or_default());
        }
        out.push(':');
        match item {
            Value::Object(inner) if !inner.is_empty() => {
                out.push('\n');
                yaml(item, indent + 2, out);
            }
            _ => {
                out.push(' ');
                yaml(item, indent, out);
            }
        }
    }
}

/// `<id>-token` made a valid Kubernetes object name (a DNS-1123 subdomain): lower case; every
/// character other than `a-z 0-9 - .` becomes `-`; each dot-separated part loses its leading and
/// trailing `-`, and empty parts are dropped. `gw._x` gives `gw.x-token`, `My_GW.1` gives
/// `my-gw.1-token`. The last part always keeps `token`, and an id is at most 80 bytes, so the name
/// is never empty nor over 253 characters. Ids that differ only in case or punctuation share a
/// name: give those `--secret-name`.
pub(crate) fn default_secret_name(id: &str) -> String {
    let mapped: String = format!("{id}-token")
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-' | '.') => c,
            _ => '-',
        })
        .collect();
    mapped
        .split('.')
        .map(|part| part.trim_matches('-'))
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(".")
}

/// A DNS-1123 label without its length limit: `a-z 0-9 -`, starting and ending alphanumeric.
fn is_dns_label(part: &str) -> bool {
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = part.as_bytes();
    bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes.iter().all(|b| alnum(b) || *b == b'-')
}

/// A DNS-1123 subdomain, what the API server requires of a Secret's name: at most 253
/// characters, dot-separated labels.
pub(crate) fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

/// A DNS-1123 label of at most 63 characters, what the API server requires of a namespace.
pub(crate) fn is_namespace(name: &str) -> bool {
    name.len() <= 63 && is_dns_label(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: NewSecret<'static> = NewSecret {
        name: "gw1-token",
        namespace: Some("apim"),
        id: "gw1",
    };

    #[test]
    fn kubectl_json_changes_in_two_places() {
        let before = "{\n    \"apiVersion\": \"v1\",\n    \"data\": {\n        \"other\": \"eA==\",\n        \"value\": \"b2xk\"\n    },\n    \"kind\": \"Secret\",\n    \"metadata\": {\n        \"name\": \"gw1-token\",\n        \"resourceVersion\": \"42\"\n    },\n    \"type\": \"Opaque\"\n}\n";
        assert_eq!(
            token(before.as_bytes(), "value").unwrap(),
            Some(b"old".to_vec())
        );
        assert_eq!(token(before.as_bytes(), "gateway-key").unwrap(), None);
        let after = renewed(
            Some(before.as_bytes()),
            "value",
            "new",
            "2026-05-01T00:00:00Z",
            &NEW,
        )
        .unwrap();
        let expected = "{\n    \"apiVersion\": \"v1\",\n    \"data\": {\n        \"other\": \"eA==\",\n        \"value\": \"bmV3\"\n    },\n    \"kind\": \"Secret\",\n    \"metadata\": {\n        \"name\": \"gw1-token\",\n        \"resourceVersion\": \"42\",\n        \"annotations\": {\n            \"apim-sas/expiry\": \"2026-05-01T00:00:00Z\"\n        }\n    },\n    \"type\": \"Opaque\"\n}\n";
        assert_eq!(String::from_utf8(after).unwrap(), expected);
    }

    #[test]
    fn string_data_wins_and_is_renewed_where_present() {
        let yaml = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: gw1-token\nstringData:\n  value: \"plain\"\ndata:\n  value: b2xk\n";
        assert_eq!(
            token(yaml.as_bytes(), "value").unwrap(),
            Some(b"plain".to_vec())
        );
        let after = renewed(Some(yaml.as_bytes()), "value", "new", "t", &NEW).unwrap();
        let value: Value = serde_norway::from_slice(&after).unwrap();
        assert_eq!(value["stringData"]["value"], "new");
        assert_eq!(value["data"]["value"], "bmV3");
        assert_eq!(value["metadata"]["annotations"][EXPIRY_ANNOTATION], "t");
    }

    #[test]
    fn yaml_strings_stay_strings() {
        let yaml_in = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: gw1-token\n  labels: {}\n  finalizers: [a, b]\ndata:\n  value: b2xk\n";
        let after = renewed(
            Some(yaml_in.as_bytes()),
            "value",
            "new",
            "2026-06-14T00:00:00Z",
            &NEW,
        )
        .unwrap();
        let expected = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: gw1-token\n  labels: {}\n  finalizers: [\"a\",\"b\"]\n  annotations:\n    apim-sas/expiry: \"2026-06-14T00:00:00Z\"\ndata:\n  value: bmV3\n";
        assert_eq!(String::from_utf8(after.clone()).unwrap(), expected);
        let back: Value = serde_norway::from_slice(&after).unwrap();
        assert_eq!(
            back["metadata"]["annotations"][EXPIRY_ANNOTATION],
            "2026-06-14T00:00:00Z"
        );
    }

    #[test]
    fn a_new_secret() {
        let made = renewed(None, "gateway-key", "new", "t", &NEW).unwrap();
        let value: Value = serde_json::from_slice(&made).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "gw1-token", "namespace": "apim",
                    "annotations": {GATEWAY_ANNOTATION: "gw1", EXPIRY_ANNOTATION: "t"}},
                "type": "Opaque", "data": {"gateway-key": "bmV3"}
            })
        );
    }

    #[test]
    fn not_secrets() {
        for (text, why) in [
            ("{\"kind\": \"List\"}", "its kind is \"List\""),
            ("{\"apiVersion\": \"v1\"}", "it has no kind"),
            (
                "{\"kind\": \"Secret\", \"data\": []}",
                "data is not an object",
            ),
            ("{ nope", "does not parse"),
        ] {
            let err = token(text.as_bytes(), "value").unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }
}
