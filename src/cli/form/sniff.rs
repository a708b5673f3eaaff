//! What a file holds, as far as a command must know before it reads a token out of it or
//! replaces it: a renewal never overwrites a file of another kind (an env file read as a token
//! file would lose every other line). Only the shape is looked at; the token itself is the
//! parser's.

use crate::cli::input::{strip_bom, trim};

/// The kinds of content told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Content {
    /// Nothing, or whitespace alone.
    Empty,
    /// NUL bytes: no text file of any form holds one.
    Binary,
    /// JSON (it starts with `{` or `[`).
    Json(Json),
    /// YAML of several lines (`key: value` lines, or `---`); `secret` when it says
    /// `kind: Secret`.
    Yaml { secret: bool },
    /// Lines of `NAME=value`, a Docker env file.
    DockerEnv,
    /// Several non-blank lines of something else.
    Lines(usize),
    /// One line of something else: a token, or what stands in for one.
    OneLine { token_like: bool },
}

/// The kinds of JSON told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Json {
    /// An object whose `kind` is `Secret`.
    Secret,
    /// One gateway's keys (`primary`, `secondary`) or a keystore of them.
    Keys,
    /// Any other JSON, or text that only starts like JSON.
    Other,
}

/// Tells what `bytes` hold (a byte-order mark is dropped first).
pub(crate) fn classify(bytes: &[u8]) -> Content {
    let text = strip_bom(bytes);
    if memchr::memchr(0, text).is_some() {
        return Content::Binary;
    }
    let text = trim(text);
    if text.is_empty() {
        return Content::Empty;
    }
    if matches!(text.first(), Some(b'{' | b'[')) {
        return Content::Json(json_kind(text));
    }
    let lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .map(trim)
        .filter(|line| !line.is_empty())
        .collect();
    if lines.iter().any(|line| is_env_assignment(line)) {
        return Content::DockerEnv;
    }
    match lines.as_slice() {
        [line] => Content::OneLine {
            token_like: looks_like_token(line),
        },
        _ if lines.iter().any(|line| is_yaml_line(line)) => Content::Yaml {
            secret: lines
                .iter()
                .any(|line| matches!(*line, b"kind: Secret" | b"kind: \"Secret\"")),
        },
        _ => Content::Lines(lines.len()),
    }
}

fn json_kind(text: &[u8]) -> Json {
    use serde_json::Value;
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(text) else {
        return Json::Other;
    };
    let is_pair = |o: &serde_json::Map<String, Value>| {
        o.contains_key("primary") || o.contains_key("secondary")
    };
    if object.get("kind").and_then(Value::as_str) == Some("Secret") {
        Json::Secret
    } else if is_pair(&object)
        || (!object.is_empty() && object.values().all(|v| v.as_object().is_some_and(is_pair)))
    {
        Json::Keys
    } else {
        Json::Other
    }
}

/// `NAME=…`, as a Docker env file line (optionally after `export `): a name of letters, digits,
/// `_` and `.`, not starting with a digit. `uid=` starts a token of the uid form, not a variable.
fn is_env_assignment(line: &[u8]) -> bool {
    let line = line.strip_prefix(b"export ").unwrap_or(line);
    let Some(eq) = memchr::memchr(b'=', line) else {
        return false;
    };
    let name = &line[..eq];
    name != b"uid"
        && name
            .first()
            .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.'))
}

/// `key:` or `key: value` (a YAML mapping entry), `- item`, or a document marker.
fn is_yaml_line(line: &[u8]) -> bool {
    if line == b"---" || line.starts_with(b"- ") {
        return true;
    }
    let Some(colon) = memchr::memchr(b':', line) else {
        return false;
    };
    let (key, rest) = line.split_at(colon);
    let key = key.strip_prefix(b"\"").unwrap_or(key);
    !key.is_empty()
        && key
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/' | b'"'))
        && (rest.len() == 1 || rest.get(1).is_some_and(u8::is_ascii_whitespace))
}

/// Whether one line has a token's shape: its `&`s, a scheme in front, or both URL-encoded.
pub(crate) fn looks_like_token(line: &[u8]) -> bool {
    let starts = |prefix: &[u8]| {
        line.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    };
    memchr::memchr(b'&', line).is_some()
        || starts(b"GatewayKey ")
        || starts(b"SharedAccessSignature ")
        || memchr::memmem::find(&line.to_ascii_lowercase(), b"%26").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let token = b"GatewayKey gw1&202604210044&sig==\n";
        assert_eq!(classify(token), Content::OneLine { token_like: true });
        assert_eq!(
            classify(b"uid=gw1&ex=2026-04-21T00:44:00.0000000Z&sn=x\n"),
            Content::OneLine { token_like: true }
        );
        assert_eq!(
            classify(b"not a token\n"),
            Content::OneLine { token_like: false }
        );
        assert_eq!(classify(b"\xEF\xBB\xBF \n\r\n"), Content::Empty);
        assert_eq!(classify(b"GatewayKey a\0b"), Content::Binary);
        assert_eq!(
            classify(b"config.service.auth=GatewayKey gw1&202604210044&sig==\n"),
            Content::DockerEnv
        );
        assert_eq!(
            classify(b"# gateway\nconfig.service.endpoint=https://x\n"),
            Content::DockerEnv
        );
        assert_eq!(
            classify(br#"{"kind": "Secret", "data": {}}"#),
            Content::Json(Json::Secret)
        );
        assert_eq!(
            classify(br#"{"primary": "a", "secondary": "b"}"#),
            Content::Json(Json::Keys)
        );
        assert_eq!(
            classify(br#"{"gw1": {"primary": "a"}}"#),
            Content::Json(Json::Keys)
        );
        assert_eq!(classify(b"[1, 2]"), Content::Json(Json::Other));
        assert_eq!(classify(b"{ not json"), Content::Json(Json::Other));
        assert_eq!(
            classify(b"apiVersion: v1\nkind: Secret\ndata:\n  value: eA==\n"),
            Content::Yaml { secret: true }
        );
        assert_eq!(classify(b"---\nname: x\n"), Content::Yaml { secret: false });
        assert_eq!(
            classify(b"GatewayKey gw1&1&x\nGatewayKey gw1&2&y\n"),
            Content::Lines(2)
        );
    }
}
