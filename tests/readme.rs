//! The README's recipes work when pasted: every ```yaml block parses (each document of it), and
//! its Kubernetes objects are complete and refer to each other by the right names; every ```sh
//! block marked `<!-- test: run -->` runs, with the real binary on PATH, in a fresh directory
//! holding a copy of `examples/`; every other ```sh block is at least valid shell; and the
//! Dockerfile of the renewal job's image names files and stages that exist. (The README's Rust
//! snippets are compiled as doc tests, from `src/lib.rs`.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_norway::Value;

/// A fenced code block: its info string, text, and whether it is marked runnable.
#[derive(Debug)]
struct Block {
    info: String,
    text: String,
    runnable: bool,
    line: usize,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines().enumerate().peekable();
    let mut previous = "";
    while let Some((n, line)) = lines.next() {
        if let Some(info) = line.strip_prefix("```") {
            let mut text = String::new();
            for (_, inner) in lines.by_ref() {
                if inner == "```" {
                    break;
                }
                text.push_str(inner);
                text.push('\n');
            }
            blocks.push(Block {
                info: info.trim().to_owned(),
                text,
                runnable: previous.trim() == "<!-- test: run -->",
                line: n + 1,
            });
        }
        previous = line;
    }
    blocks
}

fn readme() -> String {
    std::fs::read_to_string("README.md").unwrap()
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut at = value;
    for key in path {
        at = at.get(*key)?;
    }
    at.as_str()
}

/// Every Kubernetes object of every ```yaml block, parsed.
fn kubernetes_objects() -> Vec<Value> {
    let mut objects = Vec::new();
    let mut yaml_blocks = 0;
    for block in blocks(&readme()).iter().filter(|b| b.info == "yaml") {
        yaml_blocks += 1;
        for document in serde_norway::Deserializer::from_str(&block.text) {
            let value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("README line {}: YAML does not parse: {e}", block.line));
            let is_object = value.get("kind").is_some() || value.get("apiVersion").is_some();
            if is_object {
                for field in [&["apiVersion"][..], &["kind"], &["metadata", "name"]] {
                    assert!(
                        str_at(&value, field).is_some_and(|s| !s.is_empty()),
                        "README line {}: a Kubernetes object without {}",
                        block.line,
                        field.join(".")
                    );
                }
                objects.push(value);
            } else {
                assert!(
                    value.is_mapping(),
                    "README line {}: a YAML block that is neither an object nor a fragment",
                    block.line
                );
            }
        }
    }
    assert!(yaml_blocks >= 2, "README has {yaml_blocks} yaml blocks");
    objects
}

fn named<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|o| str_at(o, &["kind"]) == Some(kind))
        .collect()
}

#[test]
fn yaml_blocks_parse_and_refer_to_each_other() {
    let objects = kubernetes_objects();
    let names = |kind: &str| -> BTreeSet<String> {
        named(&objects, kind)
            .iter()
            .filter_map(|o| str_at(o, &["metadata", "name"]).map(str::to_owned))
            .collect()
    };
    let accounts = names("ServiceAccount");
    let roles = names("Role");
    assert!(
        !accounts.is_empty() && !roles.is_empty(),
        "no RBAC in README"
    );
    // Each binding binds a Role and ServiceAccounts the README defines.
    let bindings = named(&objects, "RoleBinding");
    assert!(!bindings.is_empty());
    for binding in &bindings {
        let role = str_at(binding, &["roleRef", "name"]).unwrap();
        assert!(roles.contains(role), "RoleBinding refers to Role {role}");
        for subject in binding["subjects"].as_sequence().unwrap() {
            let account = str_at(subject, &["name"]).unwrap();
            assert!(
                accounts.contains(account),
                "RoleBinding refers to {account}"
            );
        }
    }
    // Each CronJob runs as a ServiceAccount the README defines, and its Role lets it apply the
    // Secret (get, create, patch) and restart the deployment (get, patch).
    for job in named(&objects, "CronJob") {
        let spec = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        if let Some(account) = str_at(spec, &["serviceAccountName"]) {
            assert!(accounts.contains(account), "CronJob runs as {account}");
        }
    }
    let verbs = |resource: &str| -> BTreeSet<String> {
        named(&objects, "Role")
            .iter()
            .flat_map(|r| r["rules"].as_sequence().unwrap().iter())
            .filter(|rule| {
                rule["resources"]
                    .as_sequence()
                    .is_some_and(|rs| rs.iter().any(|r| r.as_str() == Some(resource)))
            })
            .flat_map(|rule| rule["verbs"].as_sequence().unwrap().iter())
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    for verb in ["get", "create", "patch"] {
        assert!(verbs("secrets").contains(verb), "secrets: {verb}");
    }
    for verb in ["get", "patch"] {
        assert!(verbs("deployments").contains(verb), "deployments: {verb}");
    }
}

#[test]
fn the_security_context_lets_a_non_root_job_read_its_key() {
    let fragment = blocks(&readme())
        .into_iter()
        .filter(|b| b.info == "yaml")
        .filter_map(|b| serde_norway::from_str::<Value>(&b.text).ok())
        .find(|v| v.get("securityContext").is_some() && v.get("kind").is_none())
        .expect("a securityContext fragment in README");
    let pod = &fragment["securityContext"];
    assert_eq!(pod["runAsNonRoot"].as_bool(), Some(true));
    let group = pod["fsGroup"].as_u64().expect("fsGroup");
    assert_ne!(pod["runAsUser"].as_u64(), Some(0));
    assert_eq!(pod["runAsGroup"].as_u64(), Some(group));
    let keys = fragment["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v.get("secret").is_some())
        .expect("a secret volume");
    // A decimal number: YAML parsers disagree about a leading 0 (Kubernetes reads 0440 as
    // octal, YAML 1.2 parsers as decimal or text).
    let mode = keys["secret"]["defaultMode"]
        .as_u64()
        .expect("defaultMode, a number");
    assert_eq!(mode & 0o040, 0o040, "group read");
    assert_eq!(mode & 0o007, 0, "nothing for others");
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_apim-sas"))
        .parent()
        .unwrap()
        .to_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let path = entry.path();
        if path.is_file() {
            std::fs::copy(&path, to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn runnable_sh_recipes_run_as_pasted() {
    let runnable: Vec<Block> = blocks(&readme())
        .into_iter()
        .filter(|b| b.runnable)
        .collect();
    assert!(runnable.len() >= 2, "{runnable:?}");
    let path = std::env::join_paths(
        std::iter::once(bin_dir()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    for block in &runnable {
        assert_eq!(block.info, "sh", "README line {}: only sh runs", block.line);
        let dir = tempfile::tempdir().unwrap();
        copy_dir(Path::new("examples"), &dir.path().join("examples"));
        let out = Command::new("bash")
            .args([
                "--norc",
                "--noprofile",
                "-euo",
                "pipefail",
                "-c",
                &block.text,
            ])
            .current_dir(dir.path())
            .env("PATH", &path)
            .env_remove("APIM_SAS_KEY")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "README line {}: the recipe failed ({:?}):\n{}\n{stderr}",
            block.line,
            out.status,
            block.text
        );
        assert!(
            !stderr.contains("error") && !stderr.contains("warning"),
            "README line {}: {stderr}",
            block.line
        );
        // What the first recipe leaves behind is what the gateway reads.
        let env_file = dir.path().join("gw1.env");
        if env_file.exists() {
            let text = std::fs::read_to_string(&env_file).unwrap();
            assert!(
                text.starts_with("config.service.auth=GatewayKey gw1&"),
                "{text}"
            );
        }
        let secret = dir.path().join("gw1-token.yaml");
        if secret.exists() {
            let value: Value =
                serde_norway::from_str(&std::fs::read_to_string(&secret).unwrap()).unwrap();
            assert_eq!(str_at(&value, &["kind"]), Some("Secret"));
            assert_eq!(str_at(&value, &["metadata", "name"]), Some("gw1-token"));
            assert!(str_at(&value, &["stringData", "value"])
                .is_some_and(|v| v.starts_with("GatewayKey gw1&")));
        }
    }
}

#[test]
fn every_sh_block_is_valid_shell() {
    for block in blocks(&readme()).iter().filter(|b| b.info == "sh") {
        let out = Command::new("bash")
            .args(["-n", "-c", &block.text])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "README line {}: {}",
            block.line,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_block_has_a_language_and_rust_ones_are_doc_tested() {
    for block in blocks(&readme()) {
        assert!(
            !block.info.is_empty(),
            "README line {}: a block without a language is compiled as Rust by the doc tests",
            block.line
        );
    }
    let rust = blocks(&readme())
        .into_iter()
        .filter(|b| b.info.starts_with("rust"))
        .count();
    assert!(rust >= 2);
    let lib = std::fs::read_to_string("src/lib.rs").unwrap();
    assert!(lib.contains("#[doc = include_str!(\"../README.md\")]"));
}

/// Dockerfile instructions, continuation lines joined, comments dropped.
fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, rest) = current.split_once(' ').unwrap_or((&current, ""));
        out.push((keyword.to_owned(), rest.trim().to_owned()));
        current.clear();
    }
    assert!(
        current.is_empty(),
        "a continuation line ends the Dockerfile"
    );
    out
}

#[test]
fn the_dockerfile_names_what_exists() {
    let dockerfile = std::fs::read_to_string("examples/Dockerfile").unwrap();
    let ignore = std::fs::read_to_string("examples/Dockerfile.dockerignore").unwrap();
    assert!(readme().contains("docker build -f examples/Dockerfile "));
    let known = [
        "FROM",
        "RUN",
        "COPY",
        "ARG",
        "ENV",
        "WORKDIR",
        "USER",
        "ENTRYPOINT",
        "CMD",
        "LABEL",
    ];
    let mut stages: Vec<String> = Vec::new();
    let mut user = None;
    for (keyword, rest) in instructions(&dockerfile) {
        assert!(
            known.contains(&keyword.as_str()),
            "unknown instruction {keyword}"
        );
        match keyword.as_str() {
            "FROM" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                if let [_, as_, name] = words[..] {
                    assert!(as_.eq_ignore_ascii_case("AS"));
                    stages.push(name.to_owned());
                }
                user = None;
            }
            "COPY" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let (sources, from) = match words.first() {
                    Some(w) if w.starts_with("--from=") => (&words[1..words.len() - 1], Some(w)),
                    _ => (&words[..words.len() - 1], None),
                };
                assert!(!sources.is_empty(), "COPY {rest}");
                if let Some(from) = from {
                    let stage = from.trim_start_matches("--from=");
                    assert!(
                        stages.iter().any(|s| s == stage),
                        "COPY from unknown {stage}"
                    );
                    continue;
                }
                for source in sources {
                    // The build context is the repository root; the ignore file lets it through.
                    assert!(Path::new(source).exists(), "COPY of missing {source}");
                    let top = source.split('/').next().unwrap();
                    assert!(
                        ignore
                            .lines()
                            .any(|l| l.trim_start_matches('!').trim_end_matches('/') == top),
                        "{source} is excluded by examples/Dockerfile.dockerignore"
                    );
                }
            }
            "USER" => user = Some(rest.clone()),
            _ => {}
        }
    }
    assert!(stages.len() >= 2, "{stages:?}");
    let user = user.expect("the final stage sets USER");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric USER");
    assert_ne!(uid, 0, "the image runs as root");
    // The binary is installed where the final stage copies it from.
    assert!(dockerfile.contains("cargo install --locked --path . --root /out"));
    assert!(dockerfile.contains("COPY --from=build /out/bin/apim-sas "));
}
