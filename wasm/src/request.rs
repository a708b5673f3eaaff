//! One request's decision, from its headers as Envoy holds them and the host's clock, apart from
//! proxy-wasm (so it is tested on the host): which of the client's headers go, and whether the
//! request goes on with the verified identity or is answered with the refusal.

use std::time::{SystemTime, UNIX_EPOCH};

use apim_sas::chrono::{DateTime, Utc};
use apim_sas::layer::{challenge_text, error_body, GatewayIdentity};
use apim_sas::{header, Error};

use crate::config::{is_identity_spelling, Plugin};

/// What the filter does with one request.
pub(crate) struct Decision<'h> {
    /// The names, as the request spells them, of every header a backend could take for one of
    /// the four identity headers: removed whatever the verdict.
    pub(crate) spoofed: Vec<&'h str>,
    /// The identity to set for the upstream, or why the request is refused.
    pub(crate) verdict: Result<GatewayIdentity, Error>,
}

/// Decides the request whose headers are `headers` (Envoy's names are lower case; compared
/// in any case all the same), at `now`.
pub(crate) fn decide<'h>(
    plugin: &Plugin,
    headers: &[(&'h [u8], &'h [u8])],
    now: DateTime<Utc>,
) -> Decision<'h> {
    let mut spoofed: Vec<&'h str> = Vec::new();
    for (name, _) in headers {
        if is_identity_spelling(name) {
            // A spelling is ASCII, so always a `str`.
            if let Ok(name) = std::str::from_utf8(name) {
                if !spoofed.contains(&name) {
                    spoofed.push(name);
                }
            }
        }
    }
    let wanted = plugin.header.as_bytes();
    let values = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(wanted))
        .map(|(_, value)| *value);
    let verdict = header::select(values)
        .and_then(|token| token.ok_or_else(header::missing))
        .and_then(|token| plugin.verifier.verify_bytes(token, now))
        .map(GatewayIdentity::from);
    Decision { spoofed, verdict }
}

/// The refusal's answer, as `apim-sas serve` and the nginx module give it: `401`, the challenge,
/// the content type, and Azure's ErrorResponse body.
pub(crate) struct Refusal {
    pub(crate) status: u32,
    pub(crate) headers: [(&'static str, String); 2],
    pub(crate) body: Vec<u8>,
}

impl Refusal {
    pub(crate) fn of(error: &Error) -> Refusal {
        Refusal {
            status: 401,
            headers: [
                ("www-authenticate", challenge_text(error.kind())),
                ("content-type", "application/json".to_owned()),
            ],
            body: error_body(error).to_vec(),
        }
    }
}

/// The host's clock as a date; `None` when it is not one (before 1970 or beyond chrono's range),
/// and the request is then refused rather than judged against a made-up time.
pub(crate) fn instant(time: SystemTime) -> Option<DateTime<Utc>> {
    let since = time.duration_since(UNIX_EPOCH).ok()?;
    DateTime::from_timestamp(i64::try_from(since.as_secs()).ok()?, since.subsec_nanos())
}

/// The pairs of a header map as proxy-wasm serializes it: the number of pairs `n` (u32, little
/// endian), `n` pairs of lengths (name, value), then each name and value followed by a NUL.
/// `None` when the bytes are not such a map (the host's own bytes, never a client's; the filter
/// then judges a request without headers: `EmptyToken`). Names and values are bytes: a client's
/// may be anything Envoy's codecs let through.
pub(crate) fn pairs(map: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    if map.is_empty() {
        return Some(Vec::new());
    }
    let word = |at: usize| -> Option<usize> {
        let bytes: [u8; 4] = map.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(bytes)).ok()
    };
    let count = word(0)?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    if data > map.len() {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    let mut take = |len: usize| -> Option<&[u8]> {
        let end = data.checked_add(len)?;
        let field = map.get(data..end)?;
        if map.get(end) != Some(&0) {
            return None;
        }
        data = end + 1;
        Some(field)
    };
    for n in 0..count {
        let (name_len, value_len) = (word(4 + n * 8)?, word(8 + n * 8)?);
        let name = take(name_len)?;
        let value = take(value_len)?;
        out.push((name, value));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use apim_sas::chrono::{TimeDelta, TimeZone};
    use apim_sas::{Format, GatewayKey, Scheme, Signer};
    use zeroize::Zeroizing;

    fn plugin(rest: &str) -> Plugin {
        let store = r#"{"gw1": {"primary": "wasm-test-key-p1", "secondary": "wasm-test-key-s1"}}"#;
        let text = format!(r#"{{"keystore": {store}{rest}}}"#);
        let env = |_: &str| -> Result<Option<Zeroizing<Vec<u8>>>, String> { Ok(None) };
        config::load(text.as_bytes(), &env).unwrap()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 4, 21, 0, 0, 0).unwrap()
    }

    fn token(key: &str, format: Format) -> String {
        Signer::new("gw1", &GatewayKey::new(key).unwrap())
            .unwrap()
            .sign(now() + TimeDelta::days(1), format)
            .unwrap()
            .to_string()
    }

    fn serialize(headers: &[(&str, &[u8])]) -> Vec<u8> {
        let mut map = (headers.len() as u32).to_le_bytes().to_vec();
        for (name, value) in headers {
            map.extend((name.len() as u32).to_le_bytes());
            map.extend((value.len() as u32).to_le_bytes());
        }
        for (name, value) in headers {
            map.extend(name.as_bytes());
            map.push(0);
            map.extend(*value);
            map.push(0);
        }
        map
    }

    #[test]
    fn a_valid_token_passes_with_its_identity_and_the_spoofed_names_go() {
        let plugin = plugin("");
        let token = Scheme::SharedAccessSignature.apply(&token("wasm-test-key-s1", Format::Uid));
        let map = serialize(&[
            (":path", b"/"),
            ("x-apim-gateway-id", b"admin"),
            ("authorization", token.as_bytes()),
            ("x_apim_key_type", b"primary"),
            ("x-apim-gateway-id", b"admin2"),
            ("x-apim-other", b"kept"),
        ]);
        let headers = pairs(&map).unwrap();
        let decision = decide(&plugin, &headers, now());
        assert_eq!(decision.spoofed, ["x-apim-gateway-id", "x_apim_key_type"]);
        let identity: Vec<(String, String)> = decision
            .verdict
            .unwrap()
            .headers()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect();
        let expected = [
            ("x-apim-gateway-id", "gw1"),
            ("x-apim-key-type", "secondary"),
            ("x-apim-token-expiry", "2026-04-22T00:00:00Z"),
            ("x-apim-token-format", "uid"),
        ];
        assert_eq!(
            identity,
            expected.map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn the_token_header_is_read_by_the_rule_of_apim_sas_header() {
        let plugin = plugin(r#", "header": "X-Token""#);
        let good = token("wasm-test-key-p1", Format::Compact);
        let forged = token("other", Format::Compact);
        type Headers<'a> = Vec<(&'a str, &'a [u8])>;
        let cases: Vec<(Headers<'_>, Option<&str>)> = vec![
            (vec![("x-token", good.as_bytes())], None),
            (vec![("X-TOKEN", good.as_bytes())], None),
            (vec![("authorization", good.as_bytes())], Some("EmptyToken")),
            (vec![], Some("EmptyToken")),
            (vec![("x-token", b"")], Some("EmptyToken")),
            (
                vec![("x-token", good.as_bytes()), ("x-token", good.as_bytes())],
                Some("MalformedToken"),
            ),
            (vec![("x-token", b"\xff\xfe")], Some("MalformedToken")),
            (
                vec![("x-token", forged.as_bytes())],
                Some("SignatureMismatch"),
            ),
        ];
        for (headers, code) in cases {
            let map = serialize(&headers);
            let headers = pairs(&map).unwrap();
            let decision = decide(&plugin, &headers, now());
            assert_eq!(
                decision.verdict.err().map(|e| e.code()),
                code,
                "{headers:?}"
            );
        }
        let missing = decide(&plugin, &[], now()).verdict.unwrap_err();
        assert_eq!(missing, header::missing());
    }

    #[test]
    fn a_refusal_is_serves_answer() {
        let error = header::repeated();
        let refusal = Refusal::of(&error);
        assert_eq!(refusal.status, 401);
        assert_eq!(
            refusal.headers[0],
            (
                "www-authenticate",
                "SharedAccessSignature error=\"MalformedToken\"".to_owned()
            )
        );
        assert_eq!(refusal.headers[1].1, "application/json");
        assert_eq!(
            refusal.body,
            br#"{"error":{"code":"MalformedToken","message":"token: the header is given more than once","target":"token"}}"#
        );
    }

    #[test]
    fn the_clock_is_read_as_a_date_or_not_at_all() {
        let at = UNIX_EPOCH + std::time::Duration::new(1_776_729_600, 5);
        assert_eq!(
            instant(at),
            Some(Utc.timestamp_opt(1_776_729_600, 5).unwrap())
        );
        assert_eq!(
            instant(UNIX_EPOCH - std::time::Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn a_map_is_read_only_when_it_is_one() {
        let map = serialize(&[("a", b"1"), ("bb", b""), ("", b"\0x\xff")]);
        assert_eq!(
            pairs(&map).unwrap(),
            [(&b"a"[..], &b"1"[..]), (b"bb", b""), (b"", b"\0x\xff")]
        );
        assert_eq!(pairs(&[]).unwrap(), []);
        for cut in 1..map.len() {
            assert_eq!(pairs(&map[..cut]), None, "{cut}");
        }
        let mut unterminated = map.clone();
        let last = unterminated.len() - 1;
        unterminated[last] = b'!';
        assert_eq!(pairs(&unterminated), None);
        assert_eq!(pairs(&u32::MAX.to_le_bytes()), None);
        let mut huge = serialize(&[("a", b"1")]);
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(pairs(&huge), None);
    }
}
