//! The plugin's configuration: the JSON text Envoy hands the plugin (its `configuration`, a
//! `google.protobuf.StringValue`), read once when Envoy configures the plugin, into the header
//! to read and a [`Verifier`] with its verdict cache.
//!
//! | field | default | meaning |
//! | --- | --- | --- |
//! | `keystore_env` | — | the VM environment variable that holds the keystore's JSON |
//! | `keystore` | — | the keystore inline: `{"gw1": {"primary": "…", "secondary": "…"}}` |
//! | `header` | `authorization` | the request header that holds the token, any case |
//! | `leeway` | `60s` | how long after its expiry a token still verifies |
//! | `max_lifetime` | `30d` | a token expiring further ahead is `ExpiryTooFar`; `none`: no limit |
//! | `key_type` | `any` | `primary` or `secondary`: only that key verifies |
//! | `cache` | `1024` | the verdict cache's size in tokens (at most 1048576), or `off` |
//!
//! Exactly one of `keystore_env` and `keystore`. Durations read as the command's flags do (`90s`,
//! `12h`, `"1d 12h"`), key types in any case. A field this table does not name, a field given
//! twice, or any value that does not load is refused: the plugin then fails to start, so Envoy
//! refuses the filter, never runs one that lets requests through.

use apim_sas::chrono::TimeDelta;
use apim_sas::layer::{
    X_APIM_GATEWAY_ID, X_APIM_KEY_TYPE, X_APIM_TOKEN_EXPIRY, X_APIM_TOKEN_FORMAT,
};
use apim_sas::{KeyType, Keystore, Policy, Verifier};
use serde::Deserialize;
use serde_json::value::RawValue;
use zeroize::Zeroizing;

/// The header read when the configuration names none (Envoy's header names are lower case).
pub(crate) const DEFAULT_HEADER: &str = "authorization";
/// The largest verdict cache: 320 bytes a token, so at most 320 MiB per VM (as the nginx
/// module's `apim_sas_cache`).
pub(crate) const MAX_CACHE: usize = 1 << 20;

/// What one plugin configuration verifies with.
pub(crate) struct Plugin {
    /// The token's header, lower case.
    pub(crate) header: Box<str>,
    /// The keystore's keys (of the chosen type), the policy and the verdict cache.
    pub(crate) verifier: Verifier,
}

/// The configuration as written. `keystore` is kept as its JSON text, which
/// `Keystore::from_json` parses with its own strict rules.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw<'a> {
    #[serde(borrow, default)]
    keystore: Option<&'a RawValue>,
    keystore_env: Option<String>,
    header: Option<String>,
    leeway: Option<String>,
    max_lifetime: Option<String>,
    key_type: Option<String>,
    cache: Option<serde_json::Value>,
}

/// Looks up a variable of the VM's environment: its value, `None` when it is not set, or why it
/// cannot be read.
pub(crate) type Environment<'e> = &'e dyn Fn(&str) -> Result<Option<Zeroizing<Vec<u8>>>, String>;

/// What a configuration without a keystore is told to give.
const SHAPE: &str = concat!(
    r#"give {"keystore_env": "APIM_SAS_KEYSTORE"} (the keystore's JSON in that VM environment "#,
    r#"variable) or {"keystore": {"<gateway id>": {"primary": "<key>", "secondary": "<key>"}}}"#
);

/// The plugin of configuration `text`, or what is wrong with it, in words for Envoy's log (never
/// a key: the library's keystore errors name the gateway and the field, not the value, and
/// serde's messages here quote names and non-string values only, as every field is a string or
/// taken whole).
pub(crate) fn load(text: &[u8], env: Environment<'_>) -> Result<Plugin, String> {
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err(format!("the plugin has no configuration: {SHAPE}"));
    }
    let text =
        std::str::from_utf8(text).map_err(|_| "the configuration is not UTF-8".to_owned())?;
    let raw: Raw<'_> =
        serde_json::from_str(text).map_err(|e| format!("the configuration is not valid: {e}"))?;

    let (keystore, from) = match (raw.keystore, raw.keystore_env.as_deref()) {
        (Some(inline), None) => (Keystore::from_json(inline.get()), "keystore".to_owned()),
        (None, Some(name)) => {
            let from = format!("keystore_env {name}");
            let text = keystore_text(name, env)?;
            (Keystore::from_json(strip_bom(&text)), from)
        }
        (Some(_), Some(_)) => {
            return Err("give keystore or keystore_env, not both".to_owned());
        }
        (None, None) => return Err(format!("no keystore: {SHAPE}")),
    };
    let keystore = keystore.map_err(|err| format!("{from}: {}: {}", err.code(), err.message()))?;

    let header = match raw.header {
        Some(name) => header(&name)?,
        None => DEFAULT_HEADER.into(),
    };
    let leeway = match raw.leeway {
        Some(text) => duration("leeway", &text)?,
        None => Policy::DEFAULT_LEEWAY,
    };
    let max_lifetime = match raw.max_lifetime {
        Some(text) if text.trim().eq_ignore_ascii_case("none") => None,
        Some(text) => Some(duration("max_lifetime", &text)?),
        None => Some(Policy::DEFAULT_MAX_LIFETIME),
    };
    let only = match raw.key_type.as_deref() {
        None => None,
        Some(text) if text.trim().eq_ignore_ascii_case("any") => None,
        Some(text) => Some(
            text.trim()
                .parse::<KeyType>()
                .map_err(|_| "key_type: any, primary or secondary".to_owned())?,
        ),
    };
    let cache = match raw.cache {
        None => Verifier::DEFAULT_CACHE_CAPACITY,
        Some(value) => cache(&value)?,
    };

    let policy = Policy::new()
        .with_leeway(leeway)
        .with_max_lifetime(max_lifetime);
    let mut verifier = Verifier::new(policy);
    for (id, pair) in keystore.iter() {
        for (key_type, key) in pair.keys() {
            if only.is_none_or(|only| only == key_type) {
                verifier
                    .insert(id, key_type, key)
                    .map_err(|err| format!("{from}: {}: {}", err.code(), err.message()))?;
            }
        }
    }
    Ok(Plugin {
        header,
        verifier: verifier.with_cache(cache),
    })
}

/// The keystore's text from the environment variable `name`.
fn keystore_text(name: &str, env: Environment<'_>) -> Result<Zeroizing<String>, String> {
    // Not shown unless it is a name: a key or a keystore pasted here must not reach the log.
    let variable = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    if name.is_empty()
        || name.starts_with(|c: char| c.is_ascii_digit())
        || !name.bytes().all(variable)
    {
        return Err(
            "keystore_env: not the name of an environment variable (letters, digits and _)"
                .to_owned(),
        );
    }
    let value = env(name)
        .map_err(|why| format!("keystore_env {name}: {why}"))?
        .ok_or_else(|| {
            format!(
                "keystore_env {name}: the VM has no such environment variable (Envoy passes the \
                 proxy's own with vm_config.environment_variables.host_env_keys: [\"{name}\"])"
            )
        })?;
    match String::from_utf8(value.to_vec()) {
        Ok(text) => Ok(Zeroizing::new(text)),
        Err(err) => {
            // The copy that failed is wiped too.
            drop(Zeroizing::new(err.into_bytes()));
            Err(format!("keystore_env {name}: not UTF-8"))
        }
    }
}

/// Without the UTF-8 byte-order mark Windows tools write first, as the command reads key files.
fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Whether `name` is one of the four identity headers in some client's spelling: any case, and
/// `_` for any `-` (CGI, WSGI and PHP backends read `x_apim_gateway_id` as `x-apim-gateway-id`).
pub(crate) fn is_identity_spelling(name: &[u8]) -> bool {
    // The four headers the filter sets for the upstream: the library's names, which
    // `GatewayIdentity::headers` sets (constants: no allocation).
    let identity = [
        X_APIM_GATEWAY_ID,
        X_APIM_KEY_TYPE,
        X_APIM_TOKEN_EXPIRY,
        X_APIM_TOKEN_FORMAT,
    ];
    identity.iter().any(|identity| {
        let identity = identity.as_str();
        identity.len() == name.len()
            && identity.bytes().zip(name).all(|(want, &got)| {
                want == got.to_ascii_lowercase() || (want == b'-' && got == b'_')
            })
    })
}

/// The `header` setting: an HTTP field name (RFC 9110's token characters), lower-cased as
/// Envoy's header maps hold names; never one of the identity headers, which the filter removes.
/// What is not a name is not shown: it could be a key pasted in the wrong place.
fn header(name: &str) -> Result<Box<str>, String> {
    let token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    if name.is_empty() || !name.bytes().all(token) {
        return Err("header: not a header name (letters, digits and !#$%&'*+-.^_`|~)".to_owned());
    }
    if is_identity_spelling(name.as_bytes()) {
        return Err(format!(
            "header: {name} is one of the headers the filter sets for the upstream (and removes \
             from the client's request)"
        ));
    }
    Ok(name.to_ascii_lowercase().into())
}

/// A duration as the command's flags read it (`30d`, `12h`, `90m`, `"1d 12h"`), never negative.
fn duration(field: &str, text: &str) -> Result<TimeDelta, String> {
    let text = text.trim();
    if text.starts_with('-') {
        return Err(format!(
            "{field}: a duration cannot be negative; give a length of time such as 60s or 30d"
        ));
    }
    let std = humantime::parse_duration(text)
        .map_err(|_| format!("{field}: not a duration, e.g. 60s, 30d, 12h, \"1d 12h\""))?;
    TimeDelta::from_std(std).map_err(|_| format!("{field}: duration too long"))
}

/// The `cache` setting: a number of tokens, or `"off"` (as `0`).
fn cache(value: &serde_json::Value) -> Result<usize, String> {
    const WHAT: &str = "cache: a number of tokens (at most 1048576), or \"off\"";
    if value.as_str() == Some("off") {
        return Ok(0);
    }
    match value.as_u64().map(usize::try_from) {
        Some(Ok(n)) if n <= MAX_CACHE => Ok(n),
        _ => Err(WHAT.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const STORE: &str =
        r#"{"gw1": {"primary": "wasm-test-key-p1", "secondary": "wasm-test-key-s1"}}"#;

    fn no_env(_: &str) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
        Ok(None)
    }

    fn with(config: &str) -> Result<Plugin, String> {
        load(config.as_bytes(), &no_env)
    }

    fn inline(rest: &str) -> Result<Plugin, String> {
        with(&format!(r#"{{"keystore": {STORE}{rest}}}"#))
    }

    #[track_caller]
    fn refused(result: Result<Plugin, String>) -> String {
        match result {
            Ok(_) => panic!("loaded"),
            Err(problem) => problem,
        }
    }

    #[test]
    fn defaults_are_serves() {
        let plugin = inline("").unwrap();
        assert_eq!(&*plugin.header, "authorization");
        assert_eq!(*plugin.verifier.policy(), Policy::default());
        assert_eq!(plugin.verifier.cache_capacity(), 1024);
        assert_eq!(plugin.verifier.len(), 1);
    }

    #[test]
    fn every_setting_is_read() {
        let plugin = inline(
            r#", "header": "X-Token", "leeway": "1m 30s", "max_lifetime": "none",
                "key_type": "Secondary", "cache": 16"#,
        )
        .unwrap();
        assert_eq!(&*plugin.header, "x-token");
        assert_eq!(plugin.verifier.policy().leeway(), TimeDelta::seconds(90));
        assert_eq!(plugin.verifier.policy().max_lifetime(), None);
        assert_eq!(plugin.verifier.cache_capacity(), 16);
        let plugin =
            inline(r#", "max_lifetime": "7d", "key_type": "any", "cache": "off""#).unwrap();
        assert_eq!(
            plugin.verifier.policy().max_lifetime(),
            Some(TimeDelta::days(7))
        );
        assert_eq!(plugin.verifier.cache_capacity(), 0);
        assert_eq!(
            inline(r#", "cache": 0"#).unwrap().verifier.cache_capacity(),
            0
        );
    }

    #[test]
    fn the_keystore_comes_from_the_named_variable() {
        let env = |name: &str| -> Result<Option<Zeroizing<Vec<u8>>>, String> {
            let vars = BTreeMap::from([
                ("APIM_SAS_KEYSTORE", format!("\u{feff}{STORE}\n")),
                (
                    "BAD",
                    r#"{"gw1": {"primary": "k", "secundary": "k"}}"#.to_owned(),
                ),
            ]);
            Ok(vars
                .get(name)
                .map(|v| Zeroizing::new(v.clone().into_bytes())))
        };
        let plugin = load(br#"{"keystore_env": "APIM_SAS_KEYSTORE"}"#, &env).unwrap();
        assert!(plugin.verifier.contains("gw1"));
        assert_eq!(
            refused(load(br#"{"keystore_env": "BAD"}"#, &env)),
            "keystore_env BAD: InvalidKeyFile: gateway 'gw1': unknown field 'secundary' at line 1, \
             column 36; a gateway has only \"primary\" and \"secondary\""
        );
        assert!(
            refused(load(br#"{"keystore_env": "MISSING"}"#, &env)).starts_with(
                "keystore_env MISSING: the VM has no such environment variable (Envoy passes"
            )
        );
        let broken = |_: &str| -> Result<Option<Zeroizing<Vec<u8>>>, String> {
            Ok(Some(Zeroizing::new(vec![b'{', 0xff])))
        };
        assert_eq!(
            refused(load(br#"{"keystore_env": "X"}"#, &broken)),
            "keystore_env X: not UTF-8"
        );
    }

    #[test]
    fn a_configuration_that_does_not_load_is_refused_with_the_reason() {
        let cases: &[(&str, &str)] = &[
            ("", "the plugin has no configuration: give {"),
            ("  \n", "the plugin has no configuration: give {"),
            ("{}", "no keystore: give {"),
            (r#"{"keystore": null}"#, "no keystore: give {"),
            (
                "not json",
                "the configuration is not valid: expected ident at line 1 column 2",
            ),
            (
                r#"{"keystore_env": "A", "keystore": {}}"#,
                "give keystore or keystore_env, not both",
            ),
            (
                r#"{"keystore_env": "A", "kestore": {}}"#,
                "the configuration is not valid: unknown field `kestore`, expected one of",
            ),
            (
                r#"{"keystore_env": "A", "keystore_env": "B"}"#,
                "the configuration is not valid: duplicate field `keystore_env`",
            ),
            (
                r#"{"keystore_env": ["A"]}"#,
                "the configuration is not valid: invalid type: sequence, expected a string",
            ),
            (
                r#"{"keystore_env": ""}"#,
                "keystore_env: not the name of an environment variable",
            ),
            (
                r#"{"keystore_env": "1X"}"#,
                "keystore_env: not the name of an environment variable",
            ),
            (
                r#"{"keystore_env": "A-B"}"#,
                "keystore_env: not the name of an environment variable",
            ),
            (
                r#"{"keystore": {"gw1": {"primary": "k"}, "gw1": {"primary": "k"}}}"#,
                "keystore: InvalidKeyFile: gateway 'gw1' is given twice",
            ),
            (
                r#"{"keystore": {"gw 1": {"primary": "k"}}}"#,
                "keystore: InvalidGatewayId: ",
            ),
            (r#"{"keystore": "k"}"#, "keystore: InvalidKeyFile: "),
        ];
        for (config, starts) in cases {
            let problem = refused(with(config));
            assert!(problem.starts_with(starts), "{config}: {problem}");
        }
        let settings: &[(&str, &str)] = &[
            (r#""header": """#, "header: not a header name"),
            (r#""header": "x token""#, "header: not a header name"),
            (r#""header": ":authority""#, "header: not a header name"),
            (
                r#""header": "X_Apim_Gateway_Id""#,
                "header: X_Apim_Gateway_Id is one of the",
            ),
            (
                r#""leeway": "-1s""#,
                "leeway: a duration cannot be negative",
            ),
            (r#""leeway": "soon""#, "leeway: not a duration, e.g. 60s"),
            (
                r#""leeway": 60"#,
                "the configuration is not valid: invalid type: integer `60`",
            ),
            (
                r#""max_lifetime": "30 days or so""#,
                "max_lifetime: not a duration",
            ),
            (r#""max_lifetime": "off""#, "max_lifetime: not a duration"),
            (
                r#""key_type": "tertiary""#,
                "key_type: any, primary or secondary",
            ),
            (r#""cache": -1"#, "cache: a number of tokens"),
            (r#""cache": 1.5"#, "cache: a number of tokens"),
            (r#""cache": "1024""#, "cache: a number of tokens"),
            (
                r#""cache": 1048577"#,
                "cache: a number of tokens (at most 1048576)",
            ),
            (r#""cache": true"#, "cache: a number of tokens"),
        ];
        for (setting, starts) in settings {
            let problem = refused(inline(&format!(", {setting}")));
            assert!(problem.starts_with(starts), "{setting}: {problem}");
        }
        assert_eq!(
            inline(r#", "cache": 1048576"#)
                .unwrap()
                .verifier
                .cache_capacity(),
            MAX_CACHE
        );
    }

    #[test]
    fn no_problem_quotes_a_key() {
        let secret = "wasm-canary-key-7f3a";
        let configs = [
            format!(r#"{{"keystore": {{"gw1": {{"primary": "{secret}", "primary": "x"}}}}}}"#),
            format!(r#"{{"keystore": {{"gw1": {{"primary": "{secret}", "extra": 1}}}}}}"#),
            format!(r#"{{"keystore": {{"gw1": {{"primary": "{secret}\t{secret}"}}}}}}"#),
            format!(r#"{{"keystore": {{"gw1": "{secret}"}}}}"#),
            format!(r#"{{"keystore": "{secret}"}}"#),
            format!(r#"{{"keystore": {{"gw1": {{"primary": "{secret}"}}}}, "x": "{secret}"}}"#),
            format!(r#"{{"keystore": {{"gw1": {{"primary": "{secret}"}}}}"#),
            format!(r#"{{"keystore_env": "{{\"gw1\": {{\"primary\": \"{secret}\"}}}}"}}"#),
            format!(r#"{{"keystore": {{}}, "header": "{secret}/+="}}"#),
        ];
        for config in configs {
            let problem = with(&config)
                .err()
                .unwrap_or_else(|| panic!("loaded: {config}"));
            assert!(!problem.contains(secret), "{problem}");
        }
    }

    #[test]
    fn identity_spellings_are_any_case_with_dashes_or_underscores() {
        for name in [
            "x-apim-gateway-id",
            "X-Apim-Gateway-Id",
            "X_APIM_GATEWAY_ID",
            "x-apim_key-type",
            "x_apim-token-expiry",
            "X-APIM-TOKEN-FORMAT",
        ] {
            assert!(is_identity_spelling(name.as_bytes()), "{name}");
        }
        for name in [
            "x-apim-gateway",
            "x-apim-gateway-idx",
            "x.apim.gateway.id",
            "xapim-gateway-id",
            "authorization",
            "x-apim-gateway-id ",
        ] {
            assert!(!is_identity_spelling(name.as_bytes()), "{name}");
        }
    }
}
