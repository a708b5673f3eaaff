//! A catalogue of hostile tokens, each refused with its exact code: by the library, and by the
//! command (`verify` reading stdin, exit 1, the same code in JSON). Nothing here may panic.

use apim_sas::chrono::{TimeZone, Utc};
use apim_sas::{GatewayKey, KeyType, Policy, UntrustedToken, Verifier};
use assert_cmd::Command;

/// A canonical 88-character signature (any 64 bytes; verification is not the point here).
const SIG: &str =
    "FWBrF2PBYVEZgpoyaPWNKIBIGLQxbJAw6A3Lu4EB78aooaZldHXZTZBkqyMWlLdrpK5/q3BFDgj9vqX1vrR0ww==";
const EX: &str = "2026-04-21T00:44:00.0000000Z";

fn catalogue() -> Vec<(String, Vec<u8>, &'static str)> {
    let mut c: Vec<(String, Vec<u8>, &'static str)> = Vec::new();
    let mut add = |name: &str, token: &[u8], code: &'static str| {
        c.push((name.to_owned(), token.to_vec(), code));
    };
    let compact = |id: &str, exp: &str, sig: &str| format!("{id}&{exp}&{sig}");
    let uid = |id: &str, ex: &str, sn: &str| format!("uid={id}&ex={ex}&sn={sn}");

    // Empty and whitespace.
    add("empty", b"", "EmptyToken");
    add("spaces only", b"   ", "EmptyToken");
    add("tabs and newlines only", b"\t\r\n", "EmptyToken");
    add("scheme alone", b"GatewayKey ", "EmptyToken");
    add("scheme name alone", b"gatewaykey", "EmptyToken");
    add(
        "sas scheme and spaces",
        b"SharedAccessSignature    ",
        "EmptyToken",
    );

    // Length.
    add("1025 bytes", "a".repeat(1025).as_bytes(), "TokenTooLong");
    let long = format!("GatewayKey {}&202604210044&{SIG}", "a".repeat(1025 - 113));
    add("1025 bytes with scheme", long.as_bytes(), "TokenTooLong");

    // Structure.
    add("one field", b"gw1", "MalformedToken");
    add("two fields", b"gw1&202604210044", "MalformedToken");
    add(
        "four fields",
        compact("gw1", "202604210044", &format!("{SIG}&x")).as_bytes(),
        "MalformedToken",
    );
    add(
        "uid two fields",
        format!("uid=gw1&ex={EX}").as_bytes(),
        "MalformedToken",
    );
    add(
        "uid extra field",
        format!("{}&x=1", uid("gw1", EX, SIG)).as_bytes(),
        "MalformedToken",
    );
    add(
        "uid wrong order sn ex",
        format!("uid=gw1&sn={SIG}&ex={EX}").as_bytes(),
        "MalformedToken",
    );
    add(
        "uid wrong order ex first",
        format!("ex={EX}&uid=gw1&sn={SIG}").as_bytes(),
        "MalformedToken",
    );
    add(
        "uid EX upper case",
        format!("uid=gw1&EX={EX}&sn={SIG}").as_bytes(),
        "MalformedToken",
    );
    add(
        "uid SN upper case",
        format!("uid=gw1&ex={EX}&SN={SIG}").as_bytes(),
        "MalformedToken",
    );
    add(
        "UID upper case reads as compact",
        format!("UID=gw1&ex={EX}&sn={SIG}").as_bytes(),
        "MalformedExpiry",
    );
    add(
        "bearer scheme",
        format!("Bearer {}", compact("gw1", "202604210044", SIG)).as_bytes(),
        "MalformedToken",
    );
    add("basic scheme", b"Basic dXNlcjpwYXNz", "MalformedToken");
    add(
        "scheme with tab",
        format!("GatewayKey\t{}", compact("gw1", "202604210044", SIG)).as_bytes(),
        "MalformedToken",
    );
    add(
        "inner space in id",
        compact("gw 1", "202604210044", SIG).as_bytes(),
        "MalformedToken",
    );
    add(
        "inner space in expiry",
        compact("gw1", "2026 4210044", SIG).as_bytes(),
        "MalformedToken",
    );
    add(
        "space before sig",
        compact("gw1", "202604210044", &format!(" {SIG}")).as_bytes(),
        "MalformedToken",
    );
    add(
        "no-break space",
        compact("gw\u{a0}1", "202604210044", SIG).as_bytes(),
        "MalformedToken",
    );
    add(
        "em space",
        compact("gw1", "202604210044\u{2003}", SIG).as_bytes(),
        "MalformedToken",
    );
    add(
        "NUL in id",
        compact("gw\u{0}1", "202604210044", SIG).as_bytes(),
        "MalformedToken",
    );
    add(
        "DEL in sig",
        compact("gw1", "202604210044", &format!("{}\u{7f}", &SIG[..87])).as_bytes(),
        "MalformedToken",
    );
    add(
        "escape char",
        compact("gw\u{1b}[31m1", "202604210044", SIG).as_bytes(),
        "MalformedToken",
    );
    let mut bad_utf8 = compact("gw1", "202604210044", SIG).into_bytes();
    bad_utf8[1] = 0xff;
    add("invalid UTF-8", &bad_utf8, "MalformedToken");
    add(
        "lone continuation byte",
        b"\x80gw1&202604210044&x",
        "MalformedToken",
    );
    add(
        "fullwidth ampersands",
        format!("gw1\u{ff06}202604210044\u{ff06}{SIG}").as_bytes(),
        "MalformedToken",
    );
    add(
        "line separator",
        compact("gw1\u{2028}", "202604210044", SIG).as_bytes(),
        "MalformedToken",
    );

    // Ids.
    add(
        "empty id",
        compact("", "202604210044", SIG).as_bytes(),
        "InvalidGatewayId",
    );
    add(
        "81-byte id",
        compact(&"a".repeat(81), "202604210044", SIG).as_bytes(),
        "InvalidGatewayId",
    );
    add(
        "uid empty id",
        uid("", EX, SIG).as_bytes(),
        "InvalidGatewayId",
    );
    add(
        "uid id starting uid=",
        uid("uid=gw1", EX, SIG).as_bytes(),
        "InvalidGatewayId",
    );
    add(
        "zero-width space in id",
        compact("gw\u{200b}1", "202604210044", SIG).as_bytes(),
        "InvalidGatewayId",
    );
    add(
        "cyrillic a in id",
        compact("g\u{430}teway", "202604210044", SIG).as_bytes(),
        "InvalidGatewayId",
    );
    add(
        "fullwidth letters id",
        compact("\u{ff47}\u{ff57}1", "202604210044", SIG).as_bytes(),
        "InvalidGatewayId",
    );

    // Compact expiry.
    for (name, exp) in [
        ("month 13", "202613010000"),
        ("month 00", "202600010000"),
        ("day 00", "202604000000"),
        ("Feb 30", "202602300000"),
        ("2027-02-29", "202702290000"),
        ("Apr 31", "202604310000"),
        ("hour 24", "202604212400"),
        ("minute 60", "202604210060"),
        ("year 0000", "000001010000"),
        ("11 digits", "20260421004"),
        ("13 digits", "2026042100440"),
        ("plus sign", "+20260421004"),
        ("minus sign", "-20260421004"),
        ("letter", "2026042100a4"),
        ("hex digits", "0x2026042100"),
        ("fullwidth digit", "20260421004\u{ff11}"),
        ("empty expiry", ""),
        ("O form in compact", EX),
    ] {
        add(
            &format!("compact {name}"),
            compact("gw1", exp, SIG).as_bytes(),
            "MalformedExpiry",
        );
    }
    // Uid expiry.
    for (name, ex) in [
        ("second 60", "2026-04-21T00:44:60.0000000Z"),
        ("hour 24", "2026-04-21T24:00:00.0000000Z"),
        ("Feb 29 2027", "2027-02-29T00:00:00.0000000Z"),
        ("6 fraction digits", "2026-04-21T00:44:00.000000Z"),
        ("8 fraction digits", "2026-04-21T00:44:00.00000000Z"),
        ("no fraction", "2026-04-21T00:44:00Z"),
        ("offset", "2026-04-21T00:44:00.0000000+00:00"),
        ("lower-case z", "2026-04-21T00:44:00.0000000z"),
        ("lower-case t", "2026-04-21t00:44:00.0000000Z"),
        ("compact in uid", "202604210044"),
        ("year 0000", "0000-01-01T00:00:00.0000000Z"),
        ("sign in fraction", "2026-04-21T00:44:00.-000000Z"),
    ] {
        add(
            &format!("uid {name}"),
            uid("gw1", ex, SIG).as_bytes(),
            "MalformedExpiry",
        );
    }

    // Signatures.
    let url_safe = SIG.replace('+', "-").replace('/', "_");
    let percent = SIG
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let non_canonical = format!("{}x==", &SIG[..85]);
    for (name, sig) in [
        ("86 characters", SIG[..86].to_owned()),
        ("87 characters", SIG[..87].to_owned()),
        ("89 characters", format!("{SIG}=")),
        ("missing padding", SIG.trim_end_matches('=').to_owned()),
        ("one pad only, 88 chars", format!("{}A=", &SIG[..86])),
        ("three pads", format!("{}===", &SIG[..85])),
        ("url-safe alphabet", url_safe),
        ("percent-encoded", percent),
        ("non-canonical last character", non_canonical),
        ("padding inside", format!("{}=A{}", &SIG[..40], &SIG[42..])),
        ("zero-width space", format!("{}\u{200b}", &SIG[..85])),
        ("empty signature", String::new()),
    ] {
        add(
            &format!("signature {name}"),
            compact("gw1", "202604210044", &sig).as_bytes(),
            "MalformedSignature",
        );
        add(
            &format!("uid signature {name}"),
            uid("gw1", EX, &sig).as_bytes(),
            "MalformedSignature",
        );
    }
    c
}

#[test]
fn the_library_refuses_each_with_its_code() {
    let mut verifier = Verifier::new(Policy::default());
    verifier
        .insert("gw1", KeyType::Primary, &GatewayKey::new("k").unwrap())
        .unwrap();
    let now = Utc.with_ymd_and_hms(2026, 4, 20, 0, 0, 0).unwrap();
    for (name, token, code) in catalogue() {
        let parsed = UntrustedToken::parse_bytes(&token).map(|_| ()).unwrap_err();
        assert_eq!(parsed.code(), code, "{name}: {parsed}");
        assert_eq!(parsed.http_status(), 401, "{name}");
        let verified = verifier.verify_bytes(&token, now).map(|_| ()).unwrap_err();
        assert_eq!(verified.code(), code, "{name}: {verified}");
        if let Ok(text) = std::str::from_utf8(&token) {
            assert_eq!(
                verifier.verify(text, now).map(|_| ()).unwrap_err().code(),
                code,
                "{name}"
            );
        }
    }
}

#[test]
fn percent_encoding_gets_a_hint() {
    let percent = SIG.replace('+', "%2B").replace('/', "%2F");
    let err = UntrustedToken::parse(&format!("gw1&202604210044&{percent}")).unwrap_err();
    assert!(err.message().contains("URL-encoded"), "{err}");
    let url_safe = SIG.replace('+', "-").replace('/', "_");
    let err = UntrustedToken::parse(&format!("gw1&202604210044&{url_safe}")).unwrap_err();
    assert!(err.message().contains("URL-safe"), "{err}");
}

/// The command reads each from stdin (so NUL and invalid UTF-8 get through) and answers exit 1
/// with the same code. It trims surrounding whitespace first, which only changes the cases that
/// are whitespace at their edges (none in the catalogue but whitespace-only, still EmptyToken).
#[test]
fn the_command_refuses_each_with_exit_1_and_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    std::fs::write(&keys, r#"{"primary": "k"}"#).unwrap();
    // One batch run for the whole catalogue (one token per line), then the single-token path
    // for a sample: the same codes both ways.
    let cases: Vec<_> = catalogue()
        .into_iter()
        .filter(|(_, t, _)| !t.contains(&b'\n') && !t.contains(&b'\r'))
        .collect();
    let mut input = Vec::new();
    for (_, token, _) in &cases {
        input.extend_from_slice(token);
        input.push(b'\n');
    }
    let out = Command::cargo_bin("apim-sas")
        .unwrap()
        .args(["verify", "--batch", "--id", "gw1", "--keys"])
        .arg(&keys)
        .args(["--now", "2026-04-20T00:00:00Z"])
        .write_stdin(input)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), cases.len());
    for ((name, _, code), line) in cases.iter().zip(&lines) {
        assert_eq!(line["valid"], false, "{name}");
        assert_eq!(line["error"]["code"], *code, "{name}");
    }
    for (name, token, code) in cases.iter().step_by(7) {
        let out = Command::cargo_bin("apim-sas")
            .unwrap()
            .args(["verify", "--id", "gw1", "--keys"])
            .arg(&keys)
            .args(["--output", "json", "-"])
            .write_stdin(token.clone())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["error"]["code"], *code, "{name}");
    }
}

/// A line of any size is refused (`TokenTooLong`) without being held: 256 MiB on stdin, peak
/// resident memory under 32 MiB, for `verify --batch` (which goes on to the next line) and for a
/// single token read from stdin. Measured with GNU time's maximum resident set size.
#[test]
fn huge_lines_are_refused_in_constant_memory() {
    if !std::path::Path::new("/usr/bin/time").exists() {
        panic!("this test measures peak memory with /usr/bin/time (GNU time); install it");
    }
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    std::fs::write(&keys, r#"{"primary": "k"}"#).unwrap();
    let bin = assert_cmd::cargo::cargo_bin("apim-sas");
    for (args, expect_lines) in [
        (
            vec![
                "verify",
                "--batch",
                "--id",
                "gw1",
                "--keys",
                keys.to_str().unwrap(),
            ],
            2,
        ),
        (vec!["inspect", "--output", "json", "-"], 1),
    ] {
        let mut child = std::process::Command::new("/usr/bin/time")
            .args(["-f", "maxrss_kib=%M"])
            .arg(&bin)
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let chunk = vec![b'A'; 1 << 20];
            for _ in 0..256 {
                stdin.write_all(&chunk).unwrap();
            }
            if expect_lines == 2 {
                stdin.write_all(b"\nnext line\n").unwrap();
            }
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<serde_json::Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), expect_lines, "{stdout}");
        let code = |doc: &serde_json::Value| doc["error"]["code"].as_str().unwrap().to_owned();
        assert_eq!(code(&lines[0]), "TokenTooLong");
        if expect_lines == 2 {
            assert_eq!(lines[1]["line"], 2);
            assert_eq!(code(&lines[1]), "MalformedToken");
        }
        let stderr = String::from_utf8(out.stderr).unwrap();
        let kib: u64 = stderr
            .lines()
            .find_map(|l| l.strip_prefix("maxrss_kib="))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(kib < 32 * 1024, "{args:?}: peak resident memory {kib} KiB");
    }
}
