//! `inspect --output prometheus`, read back by a strict parser of the Prometheus text exposition
//! format (version 0.0.4) as node_exporter's textfile collector reads it, written here from the
//! format's description rather than from the tool's printer.

use assert_cmd::Command;
use serde_json::Value;

use crate::common::Run;

const NOW: &str = "2026-04-21T00:00:00Z";
const METRIC: &str = "apim_sas_token_expiry_timestamp_seconds";

fn run(args: &[&str], stdin: &str) -> Run {
    let out = Command::cargo_bin("apim-sas")
        .unwrap()
        .args(args)
        .env("APIM_SAS_KEY", "sample-key-for-prometheus-tests")
        .write_stdin(stdin.to_owned())
        .output()
        .unwrap();
    Run::from(out)
}

fn apim(args: &[&str]) -> Run {
    run(args, "")
}

fn mint(id: &str, extra: &[&str]) -> String {
    let id_arg = format!("--id={id}");
    let mut args = vec!["mint", &id_arg, "--now", NOW];
    args.extend_from_slice(extra);
    let r = apim(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout.trim().to_owned()
}

/// One metric family as the parser read it.
#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    kind: String,
    samples: Vec<Sample>,
}

#[derive(Debug)]
struct Sample {
    labels: Vec<(String, String)>,
    value: f64,
    /// The value exactly as written.
    text: String,
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

type Labels = Vec<(String, String)>;

/// Reads `{name="value",…}` from the start of `s`; the rest after `}`.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut rest = s.strip_prefix('{').ok_or("no {")?;
    let mut labels: Labels = Vec::new();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        if !labels.is_empty() {
            rest = rest.strip_prefix(',').ok_or("no , between labels")?;
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = &rest[..eq];
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        if labels.iter().any(|(n, _)| n == name) {
            return Err(format!("label {name} twice"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("dangling \\")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    other => return Err(format!("unknown escape \\{other}")),
                },
                (_, '\n') => return Err("raw newline in a label value".into()),
                (_, c) => value.push(c),
            }
        };
        labels.push((name.to_owned(), value));
        rest = &rest[end + 1..];
    }
}

/// A strict reader: every line ends with `\n`; `# HELP` then `# TYPE` before the samples of a
/// family; sample names match their family; no timestamps (the textfile collector refuses them);
/// values are Go floats.
fn parse(text: &str) -> Result<Vec<Family>, String> {
    let body = text.strip_suffix('\n').ok_or("no final newline")?;
    let mut families: Vec<Family> = Vec::new();
    for line in body.split('\n') {
        if let Some(help) = line.strip_prefix("# HELP ") {
            let (name, help) = help.split_once(' ').ok_or("HELP without text")?;
            if !is_metric_name(name) {
                return Err(format!("bad metric name {name:?}"));
            }
            if families.iter().any(|f| f.name == name) {
                return Err(format!("{name} described twice"));
            }
            let mut chars = help.chars();
            while let Some(c) = chars.next() {
                if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
                    return Err("bad escape in HELP".into());
                }
            }
            families.push(Family {
                name: name.to_owned(),
                help: help.to_owned(),
                kind: String::new(),
                samples: Vec::new(),
            });
        } else if let Some(kind) = line.strip_prefix("# TYPE ") {
            let (name, kind) = kind.split_once(' ').ok_or("TYPE without type")?;
            let family = families.last_mut().ok_or("TYPE before HELP")?;
            if family.name != name || !family.kind.is_empty() || !family.samples.is_empty() {
                return Err(format!("TYPE for {name} out of place"));
            }
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(format!("unknown type {kind}"));
            }
            family.kind = kind.to_owned();
        } else if line.starts_with('#') || line.trim().is_empty() {
            return Err(format!("unexpected line {line:?}"));
        } else {
            let split = line.find(['{', ' ']).ok_or("sample without value")?;
            let name = &line[..split];
            let family = families.last_mut().ok_or("sample before HELP")?;
            if family.name != name || family.kind.is_empty() {
                return Err(format!("sample {name} outside its family"));
            }
            let (labels, rest) = if line[split..].starts_with('{') {
                parse_labels(&line[split..])?
            } else {
                (Vec::new(), &line[split..])
            };
            let value_text = rest.strip_prefix(' ').ok_or("no space before the value")?;
            if value_text.contains(' ') {
                return Err("a timestamp (or trailing text) after the value".into());
            }
            let value: f64 = value_text
                .parse()
                .map_err(|_| format!("value {value_text:?} is not a float"))?;
            family.samples.push(Sample {
                labels,
                value,
                text: value_text.to_owned(),
            });
        }
    }
    Ok(families)
}

fn one_sample(text: &str) -> (Family, Sample) {
    let mut families = parse(text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    assert_eq!(families.len(), 1);
    let mut family = families.remove(0);
    assert_eq!(family.name, METRIC);
    assert_eq!(family.kind, "gauge");
    assert!(!family.help.is_empty());
    assert_eq!(family.samples.len(), 1);
    let sample = family.samples.remove(0);
    (family, sample)
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn the_parser_is_strict() {
    let good = "# HELP m h\n# TYPE m gauge\nm{a=\"x\\\"y\"} 1\n";
    assert!(parse(good).is_ok());
    for bad in [
        "# HELP m h\n# TYPE m gauge\nm{a=\"x\"} 1",
        "# HELP m h\n# TYPE m gauge\nm{a=\"x\"} 1 1700000000\n",
        "# HELP m h\n# TYPE m gauge\nm{a=\"x\\q\"} 1\n",
        "# HELP m h\n# TYPE m gauge\nm{__a=\"x\"} 1\n",
        "# HELP m h\n# TYPE m gauge\nm{a=\"x\",a=\"y\"} 1\n",
        "# HELP m h\n# TYPE m gauge\nm{a=\"x\"\"} 1\n",
        "# HELP m h\n# TYPE m gauge\nn 1\n",
        "# HELP m h\nm 1\n",
        "# HELP m h\n# TYPE m gauge\nm abc\n",
        "# HELP m a\\q\n# TYPE m gauge\nm 1\n",
        "# HELP m h\n# TYPE m gauge\n\nm 1\n",
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn the_expiry_as_node_exporter_reads_it() {
    let token = mint("gw1", &["--ttl", "7d", "--scheme", "gateway-key"]);
    let r = apim(&["inspect", "--output", "prometheus", &token]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stderr, "");
    // Exactly these bytes: 2026-04-28T00:00:00Z is 1777334400.
    assert_eq!(
        r.stdout,
        format!(
            "# HELP {METRIC} When the token expires, in Unix seconds (its own claim, read without \
             a key).\n# TYPE {METRIC} gauge\n{METRIC}{{gateway=\"gw1\",format=\"compact\"}} \
             1777334400\n"
        )
    );
    let (_, sample) = one_sample(&r.stdout);
    assert_eq!(
        sample.labels,
        labels(&[("gateway", "gw1"), ("format", "compact")])
    );
    assert_eq!(sample.value, 1_777_334_400.0);

    // From stdin too, in the portal form, with labels in the order given.
    let portal = format!(
        "SharedAccessSignature token=\"{}\",refresh=\"true\"",
        &token[11..]
    );
    let r = run(
        &[
            "inspect",
            "--output",
            "prometheus",
            "--label",
            "env=prod",
            "--label",
            "site=eu-west",
            "-",
        ],
        &format!("\u{feff}{portal}\n"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (_, sample) = one_sample(&r.stdout);
    assert_eq!(
        sample.labels,
        labels(&[
            ("gateway", "gw1"),
            ("format", "compact"),
            ("env", "prod"),
            ("site", "eu-west"),
        ])
    );
}

#[test]
fn label_values_are_escaped() {
    // An id may hold '"' and '\'; a label value may hold anything, newlines included.
    let token = mint(r#"g"w\1"#, &["--ttl", "1d"]);
    let r = apim(&[
        "inspect",
        "--output",
        "prometheus",
        "--label",
        "note=a \"quoted\" \\path\\\nsecond line=é",
        "--label",
        "empty=",
        &token,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(
            r#"{gateway="g\"w\\1",format="compact",note="a \"quoted\" \\path\\\nsecond line=é",empty=""}"#
        ),
        "{}",
        r.stdout
    );
    let (_, sample) = one_sample(&r.stdout);
    assert_eq!(
        sample.labels,
        labels(&[
            ("gateway", r#"g"w\1"#),
            ("format", "compact"),
            ("note", "a \"quoted\" \\path\\\nsecond line=é"),
            ("empty", ""),
        ])
    );
}

#[test]
fn sub_second_expiries_and_old_tokens_are_exact() {
    // The uid form carries 100 ns: the value keeps them, without float rounding.
    let token = mint(
        "gw1",
        &[
            "--format",
            "uid",
            "--expiry",
            "2026-04-22T10:00:30.1234567Z",
        ],
    );
    let r = apim(&["inspect", "--output", "prometheus", &token]);
    let (_, sample) = one_sample(&r.stdout);
    assert_eq!(sample.text, "1776852030.1234567");
    assert_eq!(
        sample.labels,
        labels(&[("gateway", "gw1"), ("format", "uid")])
    );
    // Azure's documentation token, long expired: still a metric (the alert fires).
    let doc = "SharedAccessSignature uid=53dd860e1b72ff0467030003&ex=2014-08-04T22:03:00.0000000Z&sn=ItH6scUyCazNKHULKA0Yv6T+Skk4bdVmLqcPPPdWoxl2n1+rVbhKlplFrqjkoUFRr0og4wjeDz4yfThC82OjfQ==";
    let r = apim(&["inspect", "--now", NOW, "--output", "prometheus", doc]);
    assert_eq!(r.code, 0);
    let (_, sample) = one_sample(&r.stdout);
    assert_eq!(sample.text, "1407189780");
    // Before 1970: negative, with its fraction on the right side.
    let old = "uid=gw1&ex=1969-12-31T23:59:59.5000000Z&sn=ItH6scUyCazNKHULKA0Yv6T+Skk4bdVmLqcPPPdWoxl2n1+rVbhKlplFrqjkoUFRr0og4wjeDz4yfThC82OjfQ==";
    let r = apim(&["inspect", "--output", "prometheus", old]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (_, sample) = one_sample(&r.stdout);
    assert_eq!((sample.text.as_str(), sample.value), ("-0.5", -0.5));
}

#[test]
fn a_refused_token_prints_no_metric() {
    for (token, code) in [
        ("gw1&2026042800&abc", "MalformedExpiry"),
        ("Bearer abc", "MalformedToken"),
        ("", "EmptyToken"),
    ] {
        let r = run(&["inspect", "--output", "prometheus", "-"], token);
        assert_eq!(r.code, 1, "{token}");
        assert_eq!(r.stdout, "", "{token}");
        assert!(
            r.stderr.starts_with(&format!("error: {code}: ")),
            "{token}: {}",
            r.stderr
        );
    }
}

#[test]
fn bad_labels_and_flags_are_refused() {
    let token = mint("gw1", &["--ttl", "1d"]);
    for label in [
        "1x=a",
        "a-b=c",
        "a.b=c",
        "=x",
        "noequals",
        "__name__=x",
        "__x=1",
        "gateway=other",
        "format=uid",
        "é=x",
    ] {
        let r = apim(&[
            "inspect",
            "--output",
            "prometheus",
            "--label",
            label,
            &token,
        ]);
        assert_eq!(r.code, 2, "{label}");
        assert_eq!(r.stdout, "", "{label}");
        assert!(
            r.stderr.starts_with("error: InvalidArgument: --label"),
            "{label}: {}",
            r.stderr
        );
    }
    let r = apim(&[
        "inspect",
        "--output",
        "prometheus",
        "--label",
        "a=1",
        "--label",
        "a=2",
        &token,
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("given twice"), "{}", r.stderr);
    // Labels with another output, and a window with this one, are refused (JSON shape).
    let r = apim(&["inspect", "--output", "json", "--label", "a=1", &token]);
    assert_eq!(r.code, 2);
    let doc: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(doc["error"]["code"], "InvalidArgument");
    assert_eq!(doc["error"]["target"], "label");
    let r = apim(&[
        "inspect",
        "--output",
        "prometheus",
        "--expires-within",
        "7d",
        &token,
    ]);
    assert_eq!((r.code, r.stdout.as_str()), (2, ""));
    assert!(
        r.stderr
            .starts_with("error: InvalidArgument: --expires-within"),
        "{}",
        r.stderr
    );
    // The label names Prometheus allows, leading underscore and digits included.
    let r = apim(&[
        "inspect",
        "--output",
        "prometheus",
        "--label",
        "_a1=x",
        "--label",
        "B_2=y",
        &token,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (_, sample) = one_sample(&r.stdout);
    assert_eq!(
        sample.labels[2..],
        labels(&[("_a1", "x"), ("B_2", "y")])[..]
    );
}
