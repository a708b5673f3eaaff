//! Every error code the library produces (the table of `docs/format.md`), with its code, target
//! and HTTP status.

use apim_sas::chrono::{DateTime, TimeDelta, TimeZone, Utc};
use apim_sas::{
    Error, ErrorKind, Format, GatewayKey, KeyType, Policy, Signer, UntrustedToken, Verifier,
};

const SIG: &str =
    "iLiqU+8J+5eSSWAx2SvTqr7dAPvLQ5CHJhjCNl+/PVqaT620idctgK5WzF1WTlILVuNaO+lnclf1ZF8b13pjrA==";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, 21, 0, 0, 0).unwrap()
}

fn key() -> GatewayKey {
    GatewayKey::new("sample-key-do-not-use").unwrap()
}

fn verifier() -> Verifier {
    let mut v = Verifier::new(Policy::default());
    v.insert("gw1", KeyType::Primary, &key()).unwrap();
    v
}

fn token(expiry: DateTime<Utc>) -> String {
    Signer::new("gw1", &key())
        .unwrap()
        .sign(expiry, Format::Compact)
        .unwrap()
        .to_string()
}

#[track_caller]
fn expect(result: Result<impl std::fmt::Debug, Error>, code: &str, target: &str, status: u16) {
    let err = result.expect_err("an error");
    assert_eq!(
        (err.code(), err.target(), err.http_status()),
        (code, target, status),
        "{err}"
    );
    assert_eq!(err.kind().as_str(), code);
    assert!(!err.message().is_empty());
    assert!(err.to_string().starts_with(code));
}

fn parse(s: &str) -> Result<UntrustedToken<'_>, Error> {
    UntrustedToken::parse(s)
}

#[test]
fn empty_token() {
    expect(parse(""), "EmptyToken", "token", 401);
    expect(parse("   "), "EmptyToken", "token", 401);
    expect(parse("GatewayKey "), "EmptyToken", "token", 401);
    expect(verifier().verify("", now()), "EmptyToken", "token", 401);
}

#[test]
fn token_too_long() {
    let long = format!("{}&202604210044&{SIG}", "a".repeat(1024));
    expect(parse(&long), "TokenTooLong", "token", 401);
    expect(parse(&"x".repeat(1025)), "TokenTooLong", "token", 401);
    // 1024 bytes exactly is not too long (it fails on its id instead).
    let exact = format!("{}&202604210044&{SIG}", "a".repeat(1024 - 102));
    assert_eq!(exact.len(), 1024);
    expect(parse(&exact), "InvalidGatewayId", "id", 401);
}

#[test]
fn malformed_token() {
    expect(parse("gw1&202604210044"), "MalformedToken", "token", 401);
    expect(
        parse(&format!("gw1&202604210044&{SIG}&x")),
        "MalformedToken",
        "token",
        401,
    );
    expect(
        parse(&format!("gw1 &202604210044&{SIG}")),
        "MalformedToken",
        "token",
        401,
    );
    expect(
        parse(&format!("Bearer gw1&202604210044&{SIG}")),
        "MalformedToken",
        "scheme",
        401,
    );
    expect(
        parse(&format!("uid=gw1&sn={SIG}&ex=2026-04-21T00:44:00.0000000Z")),
        "MalformedToken",
        "token",
        401,
    );
    expect(
        parse(&format!("ex=2026-04-21T00:44:00.0000000Z&uid=gw1&sn={SIG}")),
        "MalformedToken",
        "token",
        401,
    );
    expect(
        UntrustedToken::parse_bytes(b"gw1&20260421004\xff&x"),
        "MalformedToken",
        "token",
        401,
    );
}

#[test]
fn invalid_gateway_id() {
    expect(
        parse(&format!("&202604210044&{SIG}")),
        "InvalidGatewayId",
        "id",
        401,
    );
    expect(
        parse(&format!("{}&202604210044&{SIG}", "a".repeat(81))),
        "InvalidGatewayId",
        "id",
        401,
    );
    expect(
        parse(&format!(
            "uid=uid=x&ex=2026-04-21T00:44:00.0000000Z&sn={SIG}"
        )),
        "InvalidGatewayId",
        "id",
        401,
    );
    expect(Signer::new("gw 1", &key()), "InvalidGatewayId", "id", 400);
    expect(
        Signer::new("uid=gw1", &key()),
        "InvalidGatewayId",
        "id",
        400,
    );
    expect(
        Verifier::default().insert("gw&1", KeyType::Primary, &key()),
        "InvalidGatewayId",
        "id",
        500,
    );
}

#[test]
fn malformed_expiry() {
    expect(
        parse(&format!("gw1&202613010000&{SIG}")),
        "MalformedExpiry",
        "expiry",
        401,
    );
    expect(
        parse(&format!("UID=gw1&ex=2026-04-21T00:44:00.0000000Z&sn={SIG}")),
        "MalformedExpiry",
        "expiry",
        401,
    );
    expect(
        parse(&format!("uid=gw1&ex=2026-04-21T00:44:00Z&sn={SIG}")),
        "MalformedExpiry",
        "expiry",
        401,
    );
}

#[test]
fn malformed_signature() {
    expect(
        parse("gw1&202604210044&abc"),
        "MalformedSignature",
        "signature",
        401,
    );
    let url = SIG.replace('+', "%2B").replace('/', "%2F");
    let err = parse(&format!("gw1&202604210044&{url}")).unwrap_err();
    assert_eq!(err.code(), "MalformedSignature");
    assert!(err.message().contains("URL-encoded"), "{err}");
}

#[test]
fn gateway_not_exist() {
    let t = token(now() + TimeDelta::days(1)).replacen("gw1", "gw2", 1);
    expect(verifier().verify(&t, now()), "GatewayNotExist", "id", 401);
}

#[test]
fn signature_mismatch() {
    let t = token(now() + TimeDelta::days(1)).replacen("&2026", "&2027", 1);
    expect(
        verifier().verify(&t, now()),
        "SignatureMismatch",
        "signature",
        401,
    );
}

#[test]
fn token_expired() {
    let expiry = now() - TimeDelta::minutes(5);
    expect(
        verifier().verify(&token(expiry), now()),
        "TokenExpired",
        "expiry",
        401,
    );
    // Valid strictly before expiry + leeway, expired at that instant.
    let expiry = now();
    assert!(verifier()
        .verify(&token(expiry), now() + TimeDelta::seconds(59))
        .is_ok());
    expect(
        verifier().verify(&token(expiry), now() + TimeDelta::seconds(60)),
        "TokenExpired",
        "expiry",
        401,
    );
}

#[test]
fn expiry_too_far() {
    let far = now() + TimeDelta::days(31);
    expect(
        verifier().verify(&token(far), now()),
        "ExpiryTooFar",
        "expiry",
        401,
    );
    // max_lifetime + leeway is still fine, one minute more is not.
    let edge = now() + TimeDelta::days(30) + TimeDelta::seconds(60);
    assert!(verifier().verify(&token(edge), now()).is_ok());
    expect(
        verifier().verify(&token(edge + TimeDelta::minutes(1)), now()),
        "ExpiryTooFar",
        "expiry",
        401,
    );
    let signer = Signer::new("gw1", &key()).unwrap();
    expect(
        signer.mint(far, Format::Compact, now(), &Policy::default()),
        "ExpiryTooFar",
        "expiry",
        400,
    );
    // Off: no limit.
    let open = Policy::new().with_max_lifetime(None);
    assert!(signer.mint(far, Format::Compact, now(), &open).is_ok());
}

#[test]
fn empty_gateway_id() {
    expect(Signer::new("", &key()), "EmptyGatewayId", "id", 400);
    expect(
        Verifier::default().insert("", KeyType::Primary, &key()),
        "EmptyGatewayId",
        "id",
        500,
    );
}

#[test]
fn invalid_gateway_location() {
    expect(
        Signer::new("managed", &key()),
        "InvalidGatewayLocation",
        "id",
        400,
    );
    expect(
        Signer::new("Managed", &key()),
        "InvalidGatewayLocation",
        "id",
        400,
    );
}

#[test]
fn invalid_key_type() {
    expect(
        "tertiary".parse::<KeyType>(),
        "InvalidKeyType",
        "keyType",
        400,
    );
    assert_eq!("PRIMARY".parse::<KeyType>().unwrap(), KeyType::Primary);
    assert_eq!("Secondary".parse::<KeyType>().unwrap(), KeyType::Secondary);
}

#[test]
fn empty_key_and_invalid_key() {
    expect(GatewayKey::new(""), "EmptyKey", "key", 500);
    expect(GatewayKey::new("abc\n"), "InvalidKey", "key", 500);
    expect(GatewayKey::new("a\tb"), "InvalidKey", "key", 500);
}

/// Control and format characters (Unicode category Cf: a byte-order mark, a zero-width space, a
/// soft hyphen, direction marks, tags) are invisible when pasted with a key; the error names the
/// character and where it is, never the key.
#[test]
fn invalid_key_names_the_invisible_character_and_its_place() {
    let cases = [
        (
            "\u{feff}sample-key",
            "key: a format character (U+FEFF) at character 1; \
             a byte-order mark or zero-width space pasted with it?",
        ),
        (
            "sample\u{200b}-key",
            "key: a format character (U+200B) at character 7; \
             a byte-order mark or zero-width space pasted with it?",
        ),
        (
            "sample-keé\u{ad}",
            "key: a format character (U+00AD) at character 11; \
             a byte-order mark or zero-width space pasted with it?",
        ),
        (
            "sample-key\n",
            "key: a control character (U+000A) at character 11; \
             a newline or tab pasted with it?",
        ),
        (
            "a\u{85}b",
            "key: a control character (U+0085) at character 2; \
             a newline or tab pasted with it?",
        ),
    ];
    for (key, message) in cases {
        let err = GatewayKey::new(key).unwrap_err();
        assert_eq!(
            (err.code(), err.target(), err.http_status(), err.message()),
            ("InvalidKey", "key", 500, message)
        );
    }
    for c in [
        '\u{200c}',
        '\u{200d}',
        '\u{200e}',
        '\u{200f}',
        '\u{202e}',
        '\u{2060}',
        '\u{2066}',
        '\u{061c}',
        '\u{180e}',
        '\u{fff9}',
        '\u{110bd}',
        '\u{1d173}',
        '\u{e0001}',
        '\u{e0041}',
    ] {
        let err = GatewayKey::new(format!("sample{c}key")).unwrap_err();
        assert_eq!(err.code(), "InvalidKey", "U+{:04X}", c as u32);
        assert!(err.message().contains("at character 7"), "{err}");
        assert!(!err.message().contains("sample"), "{err}");
    }
    // Visible non-ASCII and spaces are key text like any other.
    for key in [
        "clé",
        "key with spaces",
        "ключ",
        "\u{a0}nbsp",
        "emoji-\u{1f511}",
    ] {
        assert!(GatewayKey::new(key).is_ok(), "{key:?}");
    }
}

#[test]
fn expiry_in_past() {
    let signer = Signer::new("gw1", &key()).unwrap();
    let p = Policy::default();
    expect(
        signer.mint(now(), Format::Compact, now(), &p),
        "ExpiryInPast",
        "expiry",
        400,
    );
    // Floored before the check: 30 s ahead floors to the current minute.
    expect(
        signer.mint(now() + TimeDelta::seconds(30), Format::Compact, now(), &p),
        "ExpiryInPast",
        "expiry",
        400,
    );
    assert!(signer
        .mint(now() + TimeDelta::seconds(30), Format::Uid, now(), &p)
        .is_ok());
}

#[test]
fn invalid_expiry() {
    let signer = Signer::new("gw1", &key()).unwrap();
    let beyond = Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap();
    expect(
        signer.sign(beyond, Format::Uid),
        "InvalidExpiry",
        "expiry",
        400,
    );
    let before = Utc.with_ymd_and_hms(0, 12, 31, 0, 0, 0).unwrap();
    expect(
        signer.sign(before, Format::Compact),
        "InvalidExpiry",
        "expiry",
        400,
    );
}

#[test]
fn expiry_not_whole_minute() {
    let signer = Signer::new("gw1", &key()).unwrap();
    let t = signer
        .sign(now() + TimeDelta::seconds(90), Format::Uid)
        .unwrap();
    expect(
        t.convert(Format::Compact),
        "ExpiryNotWholeMinute",
        "expiry",
        400,
    );
    let text = t.to_string();
    expect(
        UntrustedToken::parse(&text)
            .unwrap()
            .convert(Format::Compact),
        "ExpiryNotWholeMinute",
        "expiry",
        400,
    );
}

#[test]
fn every_kind_has_its_design_code() {
    let codes: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        codes,
        [
            "EmptyToken",
            "TokenTooLong",
            "MalformedToken",
            "InvalidGatewayId",
            "MalformedExpiry",
            "MalformedSignature",
            "GatewayNotExist",
            "SignatureMismatch",
            "TokenExpired",
            "ExpiryTooFar",
            "EmptyGatewayId",
            "InvalidGatewayLocation",
            "InvalidKeyType",
            "EmptyKey",
            "InvalidKey",
            "KeyNotFound",
            "ExpiryInPast",
            "InvalidExpiry",
            "ExpiryNotWholeMinute",
            "InvalidKeyFile",
            "UnreadableInput",
            "InvalidArgument",
        ]
    );
}

#[test]
fn key_not_found() {
    let pair = apim_sas::KeyPair::from_json(r#"{"primary": "k1"}"#).unwrap();
    assert!(pair.get(KeyType::Primary).is_ok());
    expect(pair.get(KeyType::Secondary), "KeyNotFound", "key", 500);
}

#[test]
fn invalid_key_file_never_quotes_the_file() {
    use apim_sas::{KeyPair, Keystore};
    const CANARY: &str = "CANARY-KEY-5f2b9c";
    let pair = |t: &str| KeyPair::from_json(t).map(|_| ());
    let json = |t: &str| Keystore::from_json(t).map(|_| ());
    let toml = |t: &str| Keystore::from_toml(t).map(|_| ());
    type Parse<'a> = &'a dyn Fn(&str) -> Result<(), Error>;
    let cases: [(Parse<'_>, String); 7] = [
        (&pair, format!(r#"{{"primary": ["{CANARY}"]}}"#)),
        (&pair, format!(r#"{{"primary": "{CANARY}""#)),
        (&pair, "{}".to_owned()),
        (&json, format!(r#"{{"gw1": "{CANARY}"}}"#)),
        (
            &toml,
            format!("[gw1]\nprimary = \"{CANARY}\"\nprimary = 1\n"),
        ),
        (&toml, format!("[gw1]\nprimary = {CANARY}\n")),
        (&toml, format!("gw1 = \"{CANARY}\"\n")),
    ];
    for (parse, text) in cases {
        let err = parse(&text).unwrap_err();
        assert_eq!(
            (err.code(), err.target(), err.http_status()),
            ("InvalidKeyFile", "key", 500),
            "{err}"
        );
        assert!(!err.to_string().contains(CANARY), "{err}");
        assert!(!format!("{err:?}").contains(CANARY), "{err:?}");
    }
    // Line numbers point at the problem.
    let err = apim_sas::Keystore::from_toml("[gw1]\nprimary = \"a\"\n\n[gw2]\nprimary = 7\n")
        .unwrap_err();
    assert!(err.message().contains("line 5"), "{err}");
    let err =
        apim_sas::KeyPair::from_json("{\n\"primary\": \"a\",\n\"secondary\": 1\n}").unwrap_err();
    assert!(err.message().contains("line 3"), "{err}");
}

#[test]
fn keystore_key_errors_name_the_gateway() {
    let err = apim_sas::Keystore::from_json(r#"{"gw1": {"primary": ""}}"#).unwrap_err();
    assert_eq!(
        (err.code(), err.target(), err.http_status()),
        ("EmptyKey", "key", 500)
    );
    assert!(
        err.message().contains("gw1") && err.message().contains("primary"),
        "{err}"
    );
    let err = apim_sas::Keystore::from_json(r#"{"": {"primary": "k"}}"#).unwrap_err();
    assert_eq!((err.code(), err.http_status()), ("EmptyGatewayId", 500));
}
