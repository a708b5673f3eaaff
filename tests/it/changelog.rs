//! The changelog and the release metadata agree: `CHANGELOG.md` keeps Keep a Changelog's shape,
//! its newest release is the version of both crates, of the nginx module's Debian package and of
//! the example images; docs.rs renders every feature; and every guide the crate's front page
//! links exists and ships in the package.

use std::path::Path;

use apim_sas::chrono::NaiveDate;

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The lines of one TOML table (`[name]`), up to the next table header.
fn toml_section<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let header = format!("[{name}]");
    let mut lines = text.lines().skip_while(|l| l.trim() != header);
    assert!(lines.next().is_some(), "no {header} table");
    lines
        .take_while(|l| !l.trim_start().starts_with('['))
        .collect()
}

/// The value of `key = …` in a table's lines, as written (a string keeps its quotes).
fn toml_value<'a>(section: &[&'a str], key: &str) -> Option<&'a str> {
    section.iter().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.split(" #").next().unwrap_or(v).trim())
    })
}

/// The `version` of a manifest's `[package]`.
fn package_version(manifest: &str) -> String {
    let text = read(manifest);
    let value = toml_value(&toml_section(&text, "package"), "version")
        .unwrap_or_else(|| panic!("{manifest}: no version in [package]"));
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{manifest}: version {value} is not a string"))
        .to_owned()
}

/// `x.y.z`, each a number without leading zeros.
fn semver(version: &str) -> Option<(u64, u64, u64)> {
    let parts: Vec<&str> = version.split('.').collect();
    let [x, y, z] = parts[..] else { return None };
    let number = |p: &str| -> Option<u64> {
        let plain = !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && (p == "0" || !p.starts_with('0'));
        plain.then(|| p.parse().ok()).flatten()
    };
    Some((number(x)?, number(y)?, number(z)?))
}

/// One `## ` heading of the changelog.
#[derive(Debug, PartialEq)]
enum Heading {
    Unreleased,
    Release { version: String, date: NaiveDate },
}

/// Every `## ` heading, in order; a heading of any other shape fails with its line.
fn headings(changelog: &str) -> Vec<Heading> {
    changelog
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("## "))
        .map(|(i, line)| {
            let n = i + 1;
            if line == "## [Unreleased]" {
                return Heading::Unreleased;
            }
            let rest = line.strip_prefix("## [").unwrap_or_else(|| {
                panic!("CHANGELOG.md:{n}: {line:?} is neither `## [Unreleased]` nor `## [x.y.z] - YYYY-MM-DD`")
            });
            let (version, date) = rest.split_once("] - ").unwrap_or_else(|| {
                panic!("CHANGELOG.md:{n}: {line:?} is not `## [x.y.z] - YYYY-MM-DD`")
            });
            assert!(
                semver(version).is_some(),
                "CHANGELOG.md:{n}: version {version:?} is not x.y.z"
            );
            let shaped = date.len() == 10
                && date
                    .bytes()
                    .enumerate()
                    .all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
            let date = NaiveDate::parse_from_str(date, "%Y-%m-%d")
                .ok()
                .filter(|_| shaped)
                .unwrap_or_else(|| {
                    panic!("CHANGELOG.md:{n}: {date:?} is not a date in the form YYYY-MM-DD")
                });
            Heading::Release {
                version: version.to_owned(),
                date,
            }
        })
        .collect()
}

/// The first release after `[Unreleased]`: the version the repository is at.
fn changelog_version() -> String {
    let all = headings(&read("CHANGELOG.md"));
    all.into_iter()
        .find_map(|h| match h {
            Heading::Release { version, .. } => Some(version),
            Heading::Unreleased => None,
        })
        .expect("CHANGELOG.md has no `## [x.y.z] - YYYY-MM-DD` release")
}

#[test]
fn the_changelog_keeps_keep_a_changelog_shape() {
    let changelog = read("CHANGELOG.md");
    assert_eq!(
        changelog.lines().next(),
        Some("# Changelog"),
        "CHANGELOG.md starts with `# Changelog`"
    );
    for needed in [
        "https://keepachangelog.com/en/1.1.0/",
        "[Semantic Versioning](https://semver.org/spec/v2.0.0.html)",
    ] {
        assert!(
            changelog.contains(needed),
            "the intro of CHANGELOG.md names {needed}"
        );
    }

    let all = headings(&changelog);
    assert_eq!(
        all.first(),
        Some(&Heading::Unreleased),
        "the first section of CHANGELOG.md is `## [Unreleased]`"
    );
    assert_eq!(
        all.iter().filter(|h| **h == Heading::Unreleased).count(),
        1,
        "CHANGELOG.md has one `## [Unreleased]` section"
    );
    let releases: Vec<(&str, NaiveDate)> = all
        .iter()
        .filter_map(|h| match h {
            Heading::Release { version, date } => Some((version.as_str(), *date)),
            Heading::Unreleased => None,
        })
        .collect();
    assert!(!releases.is_empty(), "CHANGELOG.md has no release section");
    for pair in releases.windows(2) {
        let [(newer, newer_date), (older, older_date)] = pair else {
            unreachable!()
        };
        assert!(
            semver(newer) > semver(older),
            "CHANGELOG.md: [{newer}] comes before [{older}], so it must be the higher version"
        );
        assert!(
            newer_date >= older_date,
            "CHANGELOG.md: [{newer}] - {newer_date} comes before [{older}] - {older_date}: dates descend"
        );
    }

    // Keep a Changelog's kinds of change, and nothing else, under a section.
    for (i, line) in changelog.lines().enumerate() {
        if let Some(kind) = line.strip_prefix("### ") {
            assert!(
                ["Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"].contains(&kind),
                "CHANGELOG.md:{}: `### {kind}` is not one of Added, Changed, Deprecated, Removed, Fixed, Security",
                i + 1
            );
        }
    }
}

#[test]
fn the_newest_release_is_the_version_of_both_crates() {
    let released = changelog_version();
    assert_eq!(
        package_version("Cargo.toml"),
        released,
        "Cargo.toml's version is the newest release of CHANGELOG.md"
    );
    assert_eq!(
        package_version("nginx/Cargo.toml"),
        released,
        "nginx/Cargo.toml's version is the newest release of CHANGELOG.md"
    );
}

#[test]
fn the_debian_package_is_named_with_the_release() {
    // nginx/build.sh names the package from its crate's version (held to the changelog above).
    let build = read("nginx/build.sh");
    for needed in [
        r#"crate_version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/Cargo.toml" | head -n 1)"#,
        "name=libnginx-mod-http-apim-sas",
        r#"package="$out/${name}_${crate_version}-1_${arch}.deb""#,
    ] {
        assert!(
            build.lines().any(|l| l.trim() == needed),
            "nginx/build.sh no longer has the line `{needed}`: check how it names the .deb"
        );
    }

    // And every place that names the .deb names that one.
    let released = changelog_version();
    let expected = format!("libnginx-mod-http-apim-sas_{released}-1_amd64.deb");
    let mut seen = 0;
    for file in ["README.md", "docs/nginx.md"] {
        let text = read(file);
        for (i, _) in text.match_indices("libnginx-mod-http-apim-sas_") {
            let named: String = text[i..]
                .chars()
                .take_while(|c| !c.is_whitespace() && !"`)\"'".contains(*c))
                .collect();
            assert_eq!(
                named, expected,
                "{file} names the package of another version"
            );
            seen += 1;
        }
    }
    assert!(
        seen > 0,
        "neither README.md nor docs/nginx.md names the .deb"
    );
}

#[test]
fn the_example_images_are_tagged_with_the_release() {
    let released = changelog_version();
    for (file, image) in [
        (
            "examples/Dockerfile",
            "registry.example.com/apim-sas-kubectl:",
        ),
        (
            "examples/serve.Dockerfile",
            "registry.example.com/apim-sas:",
        ),
    ] {
        let text = read(file);
        let tags: Vec<&str> = text
            .match_indices(image)
            .map(|(i, _)| {
                let tag = &text[i + image.len()..];
                &tag[..tag.find(|c: char| c.is_whitespace()).unwrap_or(tag.len())]
            })
            .collect();
        assert!(!tags.is_empty(), "{file} names no {image}<version> image");
        for tag in tags {
            assert_eq!(
                tag, released,
                "{file}: the image {image}{tag} is not tagged with the newest release"
            );
        }
    }
}

#[test]
fn docs_rs_renders_every_feature_with_its_requirements() {
    let manifest = read("Cargo.toml");
    let docs_rs = toml_section(&manifest, "package.metadata.docs.rs");
    assert_eq!(
        toml_value(&docs_rs, "all-features"),
        Some("true"),
        "[package.metadata.docs.rs] has all-features = true"
    );
    assert_eq!(
        toml_value(&docs_rs, "rustdoc-args"),
        Some(r#"["--cfg", "docsrs"]"#),
        "[package.metadata.docs.rs] has rustdoc-args = [\"--cfg\", \"docsrs\"]"
    );
    let lib = read("src/lib.rs");
    assert!(
        lib.lines()
            .any(|l| l.trim() == "#![cfg_attr(docsrs, feature(doc_cfg))]"),
        "src/lib.rs turns on doc_cfg under docsrs, so that gated items name their feature"
    );
}

const GUIDE_LINK: &str = "https://docs.rs/crate/apim-sas/latest/source/";

/// The repository paths (`docs/….md`) of the guides the crate's front page links.
fn linked_guides() -> Vec<String> {
    let lib = read("src/lib.rs");
    let front: String = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        front.lines().any(|l| l.trim() == "# Guides"),
        "the crate's front page has a `# Guides` section"
    );
    let guides: Vec<String> = front
        .match_indices(GUIDE_LINK)
        .map(|(i, _)| {
            let rest = &front[i + GUIDE_LINK.len()..];
            rest[..rest.find(')').expect("a guide link ends with `)`")].to_owned()
        })
        .collect();
    assert!(!guides.is_empty(), "the crate's front page links no guide");
    for guide in &guides {
        assert!(
            guide.starts_with("docs/") && guide.ends_with(".md") && !guide[5..].contains('/'),
            "the front page links {GUIDE_LINK}{guide}, not a guide of docs/"
        );
    }
    guides
}

/// Whether a gitignore-style pattern of Cargo's `exclude` could match `path` (`*` and `?` over
/// any characters, which errs on the side of excluding).
fn excludes(pattern: &str, path: &str) -> bool {
    fn matches(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => matches(&p[1..], s) || (!s.is_empty() && matches(p, &s[1..])),
            (Some(b'?'), Some(_)) => matches(&p[1..], &s[1..]),
            (Some(a), Some(b)) => a == b && matches(&p[1..], &s[1..]),
            _ => false,
        }
    }
    let pattern = pattern.trim_start_matches('/').trim_end_matches('/');
    // The path itself, each folder above it, and (for a pattern without a slash) any of its
    // trailing components.
    let mut candidates: Vec<&str> = vec![path];
    candidates.extend(path.match_indices('/').map(|(i, _)| &path[..i]));
    candidates.extend(path.match_indices('/').map(|(i, _)| &path[i + 1..]));
    candidates
        .iter()
        .any(|c| matches(pattern.as_bytes(), c.as_bytes()))
}

#[test]
fn every_linked_guide_exists_and_ships_in_the_package() {
    let manifest = read("Cargo.toml");
    let package = toml_section(&manifest, "package");
    assert!(
        toml_value(&package, "include").is_none(),
        "Cargo.toml has an include list: check that it ships docs/"
    );
    let exclude: Vec<String> = toml_value(&package, "exclude")
        .map(|list| {
            list.trim_start_matches('[')
                .trim_end_matches(']')
                .split(',')
                .map(|p| p.trim().trim_matches('"').to_owned())
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default();

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut missing = Vec::new();
    for guide in linked_guides() {
        for pattern in &exclude {
            assert!(
                !excludes(pattern, &guide),
                "Cargo.toml's exclude {pattern:?} leaves {guide} out of the package, yet the crate docs link it"
            );
        }
        if !root.join(&guide).is_file() {
            missing.push(guide);
        }
    }
    assert!(
        missing.is_empty(),
        "the crate's front page links guides that do not exist: {missing:?}"
    );
}

#[test]
fn the_exclude_check_sees_what_would_leave_docs_out() {
    for pattern in [
        "docs/",
        "/docs",
        "docs",
        "*.md",
        "docs/*",
        "/docs/library.md",
        "lib*",
    ] {
        assert!(excludes(pattern, "docs/library.md"), "{pattern}");
    }
    for pattern in [".ci/", "fuzz/", "doc/", "docs/other.md", "*.rs"] {
        assert!(!excludes(pattern, "docs/library.md"), "{pattern}");
    }
}
