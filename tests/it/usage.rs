//! Mistakes a new operator makes, and the answer each one gets from the real binary: a mistyped
//! flag is clap's usage error (exit 2, with its did-you-mean tip), never a token; a bad value is
//! the tool's own error with its code; and the common slips (a file name for a token, several
//! tokens on stdin, the two key-file flags swapped) say what to type instead.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

use crate::common::Run;

const NOW: &str = "2026-04-21T00:00:00Z";
/// Sample keys, as the README's quick start uses them (public, never for a real gateway).
const KEYS: &str = r#"{"primary": "sample-primary-key", "secondary": "sample-secondary-key"}"#;

fn run_in(dir: &Path, args: &[&str], stdin: &str) -> Run {
    let out = Command::cargo_bin("apim-sas")
        .unwrap()
        .current_dir(dir)
        .env_remove("APIM_SAS_KEY")
        .args(args)
        .write_stdin(stdin.to_owned())
        .output()
        .unwrap();
    Run::from(out)
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }

    /// A private file (mode 600), so that no warning about its mode muddles stderr.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        path
    }

    fn run(&self, args: &[&str], stdin: &str) -> Run {
        run_in(self.0.path(), args, stdin)
    }

    /// A token for gw1 minted with the sample keys, valid from NOW for `ttl`.
    fn token(&self, ttl: &str) -> String {
        self.file("gw1.keys.json", KEYS);
        let r = self.run(
            &[
                "mint",
                "--id",
                "gw1",
                "--keys",
                "gw1.keys.json",
                "--now",
                NOW,
                "--ttl",
                ttl,
            ],
            "",
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout.trim().to_owned()
    }
}

#[track_caller]
fn assert_usage_error(r: &Run, first_lines: &str) {
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stdout, "");
    assert!(
        r.stderr.starts_with(first_lines),
        "stderr:\n{}\nexpected to start with:\n{first_lines}",
        r.stderr
    );
    assert!(
        r.stderr
            .ends_with("\nFor more information, try '--help'.\n"),
        "{}",
        r.stderr
    );
}

/// `{"error": {…}}` exactly, on stdout.
#[track_caller]
fn assert_json_error(r: &Run, exit: i32, code: &str, target: &str, message: &str) {
    assert_eq!(r.code, exit, "{} {}", r.stdout, r.stderr);
    let expected =
        serde_json::json!({"error": {"code": code, "message": message, "target": target}});
    assert_eq!(r.stdout, format!("{expected}\n"));
}

#[test]
fn a_mistyped_flag_is_a_usage_error_not_a_token() {
    let dir = Dir::new();
    let r = dir.run(&["verify", "--verbose"], "");
    assert_usage_error(
        &r,
        "error: unexpected argument '--verbose' found\n\n  tip: a similar argument exists: '--version'\n",
    );
    let r = dir.run(&["inspect", "--json"], "");
    assert_usage_error(
        &r,
        "error: unexpected argument '--json' found\n\n  tip: to pass '--json' as a value, use '-- --json'\n",
    );
    let r = dir.run(&["convert", "--to", "uid", "--sceme", "sas"], "");
    assert_usage_error(
        &r,
        "error: unexpected argument '--sceme' found\n\n  tip: a similar argument exists: '--scheme'\n",
    );
    let r = dir.run(&["mint", "--id", "gw1", "--ttl"], "");
    assert_usage_error(
        &r,
        "error: a value is required for '--ttl <DUR>' but none was supplied\n",
    );
    // -q belongs to --batch.
    let r = dir.run(&["verify", "-q", "--id", "gw1"], "");
    assert_usage_error(
        &r,
        "error: the following required arguments were not provided:\n  --batch\n",
    );
}

#[test]
fn dash_is_stdin_and_double_dash_passes_a_token_that_starts_with_a_hyphen() {
    let dir = Dir::new();
    let token = dir.token("7d");
    for args in [
        &["inspect", "--now", NOW, "-"][..],
        &["inspect", "--now", NOW],
    ] {
        let r = dir.run(args, &format!("{token}\n"));
        assert_eq!(r.code, 0, "{args:?} {}", r.stderr);
        assert!(r.stdout.starts_with("id:       gw1\n"), "{}", r.stdout);
    }
    // After `--`, a word starting with '-' is the token (and refused as one: exit 1).
    let r = dir.run(&["inspect", "--output", "json", "--", "-gw1&2026&x"], "");
    assert_json_error(
        &r,
        1,
        "MalformedExpiry",
        "expiry",
        "expiry: the compact form is exactly 12 digits, yyyyMMddHHmm",
    );
}

#[test]
fn negative_and_missing_durations_are_the_tools_errors() {
    let dir = Dir::new();
    dir.file("gw1.keys.json", KEYS);
    let negative = "a duration cannot be negative; give a length of time such as 30d or 12h";
    let base = ["--now", NOW, "--output", "json"];
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "mint",
                "--id",
                "gw1",
                "--keys",
                "gw1.keys.json",
                "--ttl",
                "-1d",
            ],
            "--ttl",
        ),
        (
            &[
                "mint",
                "--id",
                "gw1",
                "--keys",
                "gw1.keys.json",
                "--max-lifetime",
                "-1d",
            ],
            "--max-lifetime",
        ),
        (
            &[
                "verify",
                "--id",
                "gw1",
                "--keys",
                "gw1.keys.json",
                "--leeway",
                "-5s",
                "x",
            ],
            "--leeway",
        ),
        (
            &["inspect", "--expires-within", "-7d", "x"],
            "--expires-within",
        ),
    ];
    for (args, flag) in cases {
        let mut args = args.to_vec();
        args.extend(base);
        let r = dir.run(&args, "");
        assert_json_error(
            &r,
            2,
            "InvalidExpiry",
            "expiry",
            &format!("{flag}: {negative}"),
        );
    }
    // A duration flag whose value was forgotten swallows the next flag: the message says so.
    let r = dir.run(
        &[
            "verify",
            "--id",
            "gw1",
            "--keys",
            "gw1.keys.json",
            "--batch",
            "--leeway",
            "--quiet",
        ],
        "",
    );
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "error: InvalidExpiry: --leeway: needs a duration such as 30d or 12h, but got the flag --quiet\n"
    );
}

#[test]
fn key_type_is_read_by_the_tool_in_any_case_and_refused_with_its_code() {
    let dir = Dir::new();
    dir.file("gw1.keys.json", KEYS);
    let mint = |key_type: &str| {
        dir.run(
            &[
                "mint",
                "--id",
                "gw1",
                "--keys",
                "gw1.keys.json",
                "--now",
                NOW,
                "--ttl",
                "1d",
                "--key-type",
                key_type,
                "--output",
                "json",
            ],
            "",
        )
    };
    let r = mint("Secondary");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["keyType"], "secondary");
    let message = "keyType: the key type must be primary or secondary";
    assert_json_error(&mint("tertiary"), 2, "InvalidKeyType", "keyType", message);
    let r = dir.run(
        &[
            "verify",
            "--id",
            "gw1",
            "--keys",
            "gw1.keys.json",
            "--key-type",
            "both",
            "--output",
            "json",
            "x",
        ],
        "",
    );
    assert_json_error(&r, 2, "InvalidKeyType", "keyType", message);
    // --help still lists the two.
    let r = dir.run(&["mint", "--help"], "");
    assert!(
        r.stdout.contains("[possible values: primary, secondary]"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_file_name_given_as_the_token_says_how_to_read_the_file() {
    let dir = Dir::new();
    let token = dir.token("7d");
    dir.file("token.txt", &format!("{token}\n"));
    let r = dir.run(&["inspect", "--output", "json", "token.txt"], "");
    assert_json_error(
        &r,
        1,
        "MalformedToken",
        "token",
        "token: the compact form has three fields, id&yyyyMMddHHmm&signature; \
         'token.txt' is a file: to read the token in it, use - < token.txt",
    );
    // The same in text, and for verify and convert.
    let r = dir.run(&["convert", "--to", "uid", "token.txt"], "");
    assert_eq!(r.code, 1);
    assert!(r.stderr.ends_with("use - < token.txt\n"), "{}", r.stderr);
    let r = dir.run(
        &[
            "verify",
            "--id",
            "gw1",
            "--keys",
            "gw1.keys.json",
            "token.txt",
        ],
        "",
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.ends_with("use - < token.txt\n"), "{}", r.stderr);
    // What the hint says works.
    let r = dir.run(
        &["inspect", "--now", NOW, "-"],
        &std::fs::read_to_string(dir.0.path().join("token.txt")).unwrap(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // A word that names no file gets no file hint (only the one for a word without '&', which
    // is what the shell leaves of an unquoted token: tests/it/slips.rs).
    let r = dir.run(&["inspect", "--output", "json", "nothing.txt"], "");
    assert_json_error(
        &r,
        1,
        "MalformedToken",
        "token",
        "token: the compact form has three fields, id&yyyyMMddHHmm&signature; it has no '&': the \
         shell splits an unquoted token at each '&'; quote it: 'gw1&yyyyMMddHHmm&signature'",
    );
}

#[test]
fn several_tokens_on_stdin_without_batch_point_to_batch() {
    let dir = Dir::new();
    let token = dir.token("7d");
    let stdin = format!("{token}\n{token}\n\n{token}\n");
    let r = dir.run(
        &[
            "verify",
            "--id",
            "gw1",
            "--keys",
            "gw1.keys.json",
            "--now",
            NOW,
            "--output",
            "json",
        ],
        &stdin,
    );
    assert_eq!(r.code, 1);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["error"]["code"], "MalformedToken");
    assert!(
        doc["error"]["message"].as_str().unwrap().ends_with(
            "; stdin holds 3 lines but one token was expected (verify --batch reads one token per line)"
        ),
        "{doc}"
    );
    // With --batch they verify, one JSON line each (the blank line is refused as EmptyToken).
    let r = dir.run(
        &[
            "verify",
            "--batch",
            "--id",
            "gw1",
            "--keys",
            "gw1.keys.json",
            "--now",
            NOW,
        ],
        &stdin,
    );
    assert_eq!(r.code, 1);
    assert_eq!(r.stdout.lines().count(), 4);
}

#[test]
fn swapped_key_file_flags_say_which_flag_fits() {
    let dir = Dir::new();
    dir.file("gw1.keys.json", KEYS);
    dir.file(
        "gateways.json",
        r#"{"gw1": {"primary": "sample-primary-key"}, "gw2": {"primary": "sample-2"}}"#,
    );
    dir.file("gateways.toml", "[gw1]\nprimary = \"sample-primary-key\"\n");
    let mint = |flag: &str, file: &str| {
        dir.run(
            &[
                "mint", "--id", "gw1", flag, file, "--now", NOW, "--output", "json",
            ],
            "",
        )
    };
    for store in ["gateways.json", "gateways.toml"] {
        let r = mint("--keys", store);
        assert_eq!(r.code, 2);
        let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(doc["error"]["code"], "InvalidKeyFile", "{doc}");
        let message = doc["error"]["message"].as_str().unwrap();
        assert!(
            message.ends_with(&format!(
                "; it holds keys of gateways by id, a keystore: use --keystore {store}"
            )),
            "{message}"
        );
    }
    let r = mint("--keystore", "gw1.keys.json");
    assert_eq!(r.code, 2);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["error"]["code"], "InvalidKeyFile", "{doc}");
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(
        message.ends_with(
            "; it holds one gateway's keys, as list-keys returns them: \
             use --keys gw1.keys.json --id <gateway id>"
        ),
        "{message}"
    );
    // An empty object is neither: no hint.
    dir.file("empty.json", "{}");
    let r = mint("--keys", "empty.json");
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(
        !doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--keystore"),
        "{doc}"
    );
    // And the hints are right: the suggested flags work.
    assert_eq!(mint("--keystore", "gateways.json").code, 0);
    assert_eq!(mint("--keys", "gw1.keys.json").code, 0);
}

#[test]
fn token_expired_says_when() {
    let dir = Dir::new();
    let token = dir.token("1h");
    let r = dir.run(
        &[
            "verify",
            "--id",
            "gw1",
            "--keys",
            "gw1.keys.json",
            "--now",
            "2026-04-22T00:00:00Z",
            "--output",
            "json",
            &token,
        ],
        "",
    );
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stdout,
        "{\"valid\":false,\"error\":{\"code\":\"TokenExpired\",\"message\":\"expiry: the token has \
         expired (at 2026-04-21T01:00:00Z, 23h ago)\",\"target\":\"expiry\"}}\n"
    );
    // The same message in text and in a --batch line.
    let r = dir.run(
        &[
            "verify",
            "--id",
            "gw1",
            "--keys",
            "gw1.keys.json",
            "--now",
            "2026-04-22T00:00:00Z",
            &token,
        ],
        "",
    );
    assert_eq!(
        r.stderr,
        "invalid: TokenExpired: expiry: the token has expired (at 2026-04-21T01:00:00Z, 23h ago)\n"
    );
    let r = dir.run(
        &[
            "verify",
            "--batch",
            "-q",
            "--id",
            "gw1",
            "--keys",
            "gw1.keys.json",
            "--now",
            "2026-04-22T00:00:00Z",
        ],
        &format!("{token}\n"),
    );
    assert_eq!(
        r.stdout,
        "{\"line\":1,\"valid\":false,\"error\":{\"code\":\"TokenExpired\",\"message\":\"expiry: the \
         token has expired (at 2026-04-21T01:00:00Z, 23h ago)\",\"target\":\"expiry\"}}\n"
    );
    // A forged token is a SignatureMismatch whatever it claims: its expiry is not told.
    let forged = token.replace("&20260421", "&20260420");
    let r = dir.run(
        &[
            "verify",
            "--id",
            "gw1",
            "--keys",
            "gw1.keys.json",
            "--now",
            "2026-04-22T00:00:00Z",
            &forged,
        ],
        "",
    );
    assert!(
        r.stderr.starts_with("invalid: SignatureMismatch: "),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("ago"), "{}", r.stderr);
}

#[test]
fn quiet_silences_the_batch_summary_only() {
    let dir = Dir::new();
    let token = dir.token("7d");
    let stdin = format!("{token}\nnot a token\n{token}\n");
    let args = [
        "verify",
        "--batch",
        "--id",
        "gw1",
        "--keys",
        "gw1.keys.json",
        "--now",
        NOW,
    ];
    let loud = dir.run(&args, &stdin);
    assert_eq!(loud.code, 1);
    let summary = loud.stderr.trim_end();
    // "apim-sas: 3 tokens, 2 valid, 1 refused, in 0.001 s (2,345 tokens/s)": a whole rate.
    let rest = summary
        .strip_prefix("apim-sas: 3 tokens, 2 valid, 1 refused, in ")
        .unwrap_or_else(|| panic!("{summary}"));
    let (seconds, rate) = rest.split_once(" s (").unwrap();
    assert!(seconds.parse::<f64>().is_ok() && seconds.split('.').nth(1).unwrap().len() == 3);
    let rate = rate.strip_suffix(" tokens/s)").unwrap();
    assert!(
        !rate.is_empty() && rate.chars().all(|c| c.is_ascii_digit() || c == ','),
        "{summary}"
    );
    let mut quiet_args = args.to_vec();
    quiet_args.push("--quiet");
    let quiet = dir.run(&quiet_args, &stdin);
    assert_eq!((quiet.code, quiet.stderr.as_str()), (1, ""));
    assert_eq!(quiet.stdout, loud.stdout);
    quiet_args.pop();
    quiet_args.push("-q");
    assert_eq!(dir.run(&quiet_args, &stdin).stderr, "");
}

#[test]
fn key_file_dash_reads_the_key_from_stdin() {
    let dir = Dir::new();
    dir.file("key.txt", "sample-primary-key\n");
    let args = |source: &str| {
        vec![
            "mint".to_owned(),
            "--id".into(),
            "gw1".into(),
            "--key-file".into(),
            source.into(),
            "--now".into(),
            NOW.into(),
            "--ttl".into(),
            "1d".into(),
        ]
    };
    let from_file = dir.run(
        &args("key.txt")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        "",
    );
    let from_stdin = dir.run(
        &args("-").iter().map(String::as_str).collect::<Vec<_>>(),
        "sample-primary-key\n",
    );
    assert_eq!(
        (from_file.code, from_stdin.code),
        (0, 0),
        "{}",
        from_stdin.stderr
    );
    assert_eq!(from_stdin.stdout, from_file.stdout);
    assert!(from_stdin.stdout.starts_with("gw1&202604220000&"));
    // An empty stdin is an empty key, with its code.
    let r = dir.run(
        &args("-").iter().map(String::as_str).collect::<Vec<_>>(),
        "",
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.starts_with("error: EmptyKey: key file (stdin): "),
        "{}",
        r.stderr
    );
}

#[test]
fn expiry_too_far_on_mint_says_the_limit_and_how_to_lift_it() {
    let dir = Dir::new();
    dir.file("gw1.keys.json", KEYS);
    let r = dir.run(
        &[
            "mint",
            "--id",
            "gw1",
            "--keys",
            "gw1.keys.json",
            "--now",
            NOW,
            "--ttl",
            "31d",
        ],
        "",
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.starts_with("error: ExpiryTooFar: "),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("(30d)"), "{}", r.stderr);
    assert!(r.stderr.contains("--max-lifetime"), "{}", r.stderr);
}

#[test]
fn text_and_json_tell_the_same_story() {
    let dir = Dir::new();
    dir.file("gw1.keys.json", KEYS);
    // A uid token whose expiry has a fraction: both outputs show its 7 digits.
    let r = dir.run(
        &[
            "mint",
            "--id",
            "gw1",
            "--keys",
            "gw1.keys.json",
            "--now",
            NOW,
            "--format",
            "uid",
            "--expiry",
            "2026-04-22T10:20:30.12345678Z",
        ],
        "",
    );
    let token = r.stdout.trim().to_owned();
    assert!(
        token.contains("&ex=2026-04-22T10:20:30.1234567Z&"),
        "{token}"
    );
    let text = dir.run(&["inspect", "--now", NOW, &token], "").stdout;
    let json = dir
        .run(&["inspect", "--now", NOW, "--output", "json", &token], "")
        .stdout;
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["expiry"], "2026-04-22T10:20:30.1234567Z");
    assert!(
        text.contains("\nexpiry:   2026-04-22T10:20:30.1234567Z\n"),
        "{text}"
    );
    // A bare token: `none` in text, null in JSON.
    assert!(text.contains("\nscheme:   none\n"), "{text}");
    assert!(doc["scheme"].is_null());
    // verify: the same expiry in its text line and its JSON.
    let args = [
        "verify",
        "--id",
        "gw1",
        "--keys",
        "gw1.keys.json",
        "--now",
        NOW,
        &token,
    ];
    let text = dir.run(&args, "").stdout;
    assert!(
        text.starts_with(
            "valid: gateway gw1, primary key, uid form, expires 2026-04-22T10:20:30.1234567Z (in "
        ),
        "{text}"
    );
    let mut json_args = args.to_vec();
    json_args.extend(["--output", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&dir.run(&json_args, "").stdout).unwrap();
    assert_eq!(doc["expiry"], "2026-04-22T10:20:30.1234567Z");
    // With a scheme, both name it.
    let sas = format!("SharedAccessSignature {token}");
    let text = dir.run(&["inspect", "--now", NOW, &sas], "").stdout;
    assert!(
        text.contains("\nscheme:   SharedAccessSignature\n"),
        "{text}"
    );
    let json = dir
        .run(&["inspect", "--now", NOW, "--output", "json", &sas], "")
        .stdout;
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["scheme"], "SharedAccessSignature");
    // Errors: `invalid:` for verify's verdict, `error:` for everything else.
    let r = dir.run(
        &["verify", "--id", "gw1", "--keys", "gw1.keys.json", "x&y&z"],
        "",
    );
    assert!(
        r.stderr.starts_with("invalid: MalformedExpiry: "),
        "{}",
        r.stderr
    );
    let r = dir.run(&["inspect", "x&y&z"], "");
    assert!(
        r.stderr.starts_with("error: MalformedExpiry: "),
        "{}",
        r.stderr
    );
}
