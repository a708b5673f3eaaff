//! The developer portal's spelling, `SharedAccessSignature token="…",refresh="true"`: every golden
//! vector verifies the same way in it, it is written only when asked (`--scheme portal`), and
//! every near miss is refused with its code.

use apim_sas::chrono::{DateTime, Utc};
use apim_sas::{GatewayKey, KeyType, Policy, Scheme, UntrustedToken, Verifier};
use assert_cmd::Command;

fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn portal(bare: &str, refresh: Option<&str>) -> String {
    match refresh {
        Some(r) => format!("SharedAccessSignature token=\"{bare}\",refresh=\"{r}\""),
        None => format!("SharedAccessSignature token=\"{bare}\""),
    }
}

#[test]
fn every_golden_vector_verifies_in_the_portal_form() {
    for v in crate::common::load("tests/vectors/golden.json") {
        let key = GatewayKey::new(v.key.clone()).unwrap();
        let mut verifier = Verifier::new(Policy::new().with_max_lifetime(None));
        verifier.insert(&v.id, KeyType::Primary, &key).unwrap();
        let now = instant(&v.now);
        let bare = verifier.verify(&v.token, now).map(|ok| ok.expiry());
        for refresh in [Some("true"), Some("false"), None] {
            let text = portal(&v.token, refresh);
            if text.len() > apim_sas::MAX_TOKEN_LEN {
                let err = UntrustedToken::parse(&text).unwrap_err();
                assert_eq!(err.code(), "TokenTooLong", "{text}");
                continue;
            }
            if v.token.contains('"') {
                // An id holding a quote cannot be carried in the quoted form.
                let err = UntrustedToken::parse(&text).unwrap_err();
                assert_eq!(err.code(), "MalformedToken", "{text}");
                continue;
            }
            let parsed = UntrustedToken::parse(&text).unwrap();
            assert_eq!(parsed.scheme(), Some(Scheme::Portal));
            assert_eq!(parsed.id(), v.id);
            assert_eq!(
                verifier.verify(&text, now).map(|ok| ok.expiry()),
                bare,
                "{text}"
            );
        }
    }
}

#[test]
fn near_misses_are_refused_with_their_code() {
    let bare = "gw1&201904210044&zmRTy/y/ZUvcawhcLqqzjokg9xBTfIbf6Pz6dIuYRdudTvugivgkOvnSesSDKCrypoYNeA5u65jjGcO73Gfoiw==";
    let uid = "uid=gw1&ex=2019-04-21T00:44:00.0000000Z&sn=zmRTy/y/ZUvcawhcLqqzjokg9xBTfIbf6Pz6dIuYRdudTvugivgkOvnSesSDKCrypoYNeA5u65jjGcO73Gfoiw==";
    assert!(UntrustedToken::parse(&portal(bare, Some("true"))).is_ok());
    assert!(UntrustedToken::parse(&portal(uid, Some("false"))).is_ok());
    assert!(UntrustedToken::parse(&format!("sharedaccesssignature   token=\"{bare}\"")).is_ok());
    let cases = [
        // Missing quotes, one or both.
        (
            format!("SharedAccessSignature token={bare}"),
            "MalformedToken",
        ),
        (
            format!("SharedAccessSignature token=\"{bare}"),
            "MalformedToken",
        ),
        (
            format!("SharedAccessSignature token={bare}\""),
            "MalformedToken",
        ),
        (
            format!("SharedAccessSignature token='{bare}'"),
            "MalformedToken",
        ),
        // Unknown or misspelt parameters, anything after refresh, a refresh that is not a boolean.
        (
            format!("SharedAccessSignature token=\"{bare}\",expires=\"1\""),
            "MalformedToken",
        ),
        (
            format!("SharedAccessSignature token=\"{bare}\",refresh=\"yes\""),
            "MalformedToken",
        ),
        (
            format!("SharedAccessSignature token=\"{bare}\",refresh=true"),
            "MalformedToken",
        ),
        (
            format!("SharedAccessSignature token=\"{bare}\",refresh=\"true\","),
            "MalformedToken",
        ),
        (
            format!("SharedAccessSignature token=\"{bare}\", refresh=\"true\""),
            "MalformedToken",
        ),
        (
            format!("SharedAccessSignature token=\"{bare}\",refresh=\"true\",x=\"y\""),
            "MalformedToken",
        ),
        (
            format!("SharedAccessSignature Token=\"{bare}\""),
            "MalformedToken",
        ),
        (
            format!("SharedAccessSignature refresh=\"true\",token=\"{bare}\""),
            "MalformedToken",
        ),
        // Only SharedAccessSignature carries it: under GatewayKey it is a compact token gone wrong.
        (format!("GatewayKey token=\"{bare}\""), "MalformedSignature"),
        // A scheme, or a nested portal form, inside.
        (
            format!("SharedAccessSignature token=\"GatewayKey {bare}\""),
            "MalformedToken",
        ),
        (
            format!("SharedAccessSignature token=\"SharedAccessSignature token=\"{bare}\"\""),
            "MalformedToken",
        ),
        // Empty inside, and over 1024 bytes in all.
        ("SharedAccessSignature token=\"\"".to_owned(), "EmptyToken"),
        (
            "SharedAccessSignature token=\"\",refresh=\"true\"".to_owned(),
            "EmptyToken",
        ),
        (
            format!(
                "SharedAccessSignature token=\"{}&201904210044&{}\"",
                "g".repeat(80),
                "A".repeat(1000)
            ),
            "TokenTooLong",
        ),
        // Whitespace or a control character inside the quotes.
        (
            format!("SharedAccessSignature token=\" {bare}\""),
            "MalformedToken",
        ),
        (
            format!("SharedAccessSignature token=\"{bare}\t\""),
            "MalformedToken",
        ),
    ];
    for (text, code) in cases {
        let err = UntrustedToken::parse(&text).expect_err(&text);
        assert_eq!(err.code(), code, "{text}");
        assert_eq!(err.http_status(), 401, "{text}");
        assert!(
            !err.message().contains("zmRTy"),
            "never echoes the token: {err}"
        );
    }
}

fn apim_sas() -> Command {
    let mut cmd = Command::cargo_bin("apim-sas").unwrap();
    cmd.env_remove("APIM_SAS_KEY");
    cmd
}

#[test]
fn the_command_reads_and_writes_the_portal_form() {
    let bare = "gw1&201904210044&zmRTy/y/ZUvcawhcLqqzjokg9xBTfIbf6Pz6dIuYRdudTvugivgkOvnSesSDKCrypoYNeA5u65jjGcO73Gfoiw==";
    let sig = &bare[bare.len() - 88..];
    let out = apim_sas()
        .args(["convert", "--to", "uid", "--scheme", "portal"])
        .arg(portal(bare, Some("true")))
        .assert()
        .success();
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout),
        format!(
            "SharedAccessSignature token=\"uid=gw1&ex=2019-04-21T00:44:00.0000000Z&sn={sig}\",refresh=\"true\"\n"
        )
    );
    let out = apim_sas()
        .args([
            "inspect",
            "--now",
            "2019-04-20T00:00:00Z",
            "--output",
            "json",
        ])
        .arg(portal(bare, None))
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(json["scheme"], "portal");
    assert_eq!(json["id"], "gw1");
    let out = apim_sas()
        .args(["mint", "--id", "gw1", "--keys", "examples/gw1.keys.json"])
        .args([
            "--now",
            "2026-04-21T00:00:00Z",
            "--ttl",
            "1d",
            "--scheme",
            "portal",
        ])
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(
        text.starts_with("SharedAccessSignature token=\"gw1&202604220000&"),
        "{text}"
    );
    assert!(text.ends_with("==\",refresh=\"true\"\n"), "{text}");
    apim_sas()
        .args(["verify", "--id", "gw1", "--keys", "examples/gw1.keys.json"])
        .args(["--now", "2026-04-21T00:00:00Z"])
        .arg(text.trim())
        .assert()
        .success();
}
