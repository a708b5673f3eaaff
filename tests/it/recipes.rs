//! The recipes of the README and of every guide in `docs/` work when pasted. Every ```yaml block
//! parses (each document of it), and its Kubernetes objects are complete and refer to each other
//! by the right names; every ```sh block marked `<!-- test: run -->` runs, with the real binary
//! on PATH, in a fresh directory holding a copy of `examples/`; every other ```sh block is at
//! least valid shell; every systemd unit (an ```ini block naming its path under
//! `/etc/systemd/system/`) passes `systemd-analyze verify`, and the `apim-sas` command lines in it
//! parse; every Rust block is compiled as a doc test (from `src/lib.rs`); every link points to a
//! file and a heading that exist; and the Dockerfile of the renewal job's image names files and
//! stages that exist (tests/it/images.rs builds what it copies).
//!
//! The scheduled recipes run as their scheduler runs them, in a temporary directory standing for
//! `/` with `apim-sas` in /usr/local/bin: the systemd timer's unit under systemd's environment
//! (its `PATH` alone) with a stand-in `systemctl`; each entry of a `/etc/cron.d` file (a block
//! marked `<!-- test: cron -->`) under cron's (`PATH=/usr/bin:/bin`), the monitoring scripts it
//! runs on an env file with two auth lines and on a Secret from a stand-in `kubectl`; the CronJob's
//! script with a fake `kubectl` that keeps the Secret as an API server would, on a `PATH` that
//! holds only what `examples/Dockerfile`'s final stage provides. One expiry-alert threshold, below
//! renew's window, in every guide, every `--help` and the command's hint. The nginx blocks are
//! held to `examples/` by `tests/it/nginx.rs`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_norway::Value;

use crate::common::dockerfile::{instructions, Ignore};
use crate::common::markdown::{self, Block};

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut at = value;
    for key in path {
        at = at.get(*key)?;
    }
    at.as_str()
}

/// Every Kubernetes object of every ```yaml block of every document, parsed.
fn kubernetes_objects() -> Vec<Value> {
    let mut objects = Vec::new();
    let mut yaml_blocks = 0;
    for block in markdown::blocks_in("yaml") {
        yaml_blocks += 1;
        for document in serde_norway::Deserializer::from_str(&block.text) {
            let value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{}: YAML does not parse: {e}", block.at()));
            let is_object = value.get("kind").is_some() || value.get("apiVersion").is_some();
            if is_object {
                for field in [&["apiVersion"][..], &["kind"], &["metadata", "name"]] {
                    assert!(
                        str_at(&value, field).is_some_and(|s| !s.is_empty()),
                        "{}: a Kubernetes object without {}",
                        block.at(),
                        field.join(".")
                    );
                }
                objects.push(value);
            } else {
                // A fragment: a mapping (a pod spec's fields), or a list of them (containers).
                let fragment = value.is_mapping()
                    || value
                        .as_sequence()
                        .is_some_and(|items| items.iter().all(Value::is_mapping));
                assert!(
                    fragment,
                    "{}: a YAML block that is neither an object nor a fragment",
                    block.at()
                );
            }
        }
    }
    assert!(
        yaml_blocks >= 2,
        "the guides have {yaml_blocks} yaml blocks"
    );
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
        "no RBAC in the guides"
    );
    // Each binding binds a Role and ServiceAccounts the guides define.
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
    // Each CronJob runs as a ServiceAccount the guides define, and its Role lets it apply the
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
    let fragment = markdown::document("docs/kubernetes.md");
    let fragment = markdown::blocks_of("docs/kubernetes.md", &fragment)
        .into_iter()
        .filter(|b| b.info == "yaml")
        .filter_map(|b| serde_norway::from_str::<Value>(&b.text).ok())
        .find(|v| v.get("securityContext").is_some() && v.get("kind").is_none())
        .expect("a securityContext fragment in docs/kubernetes.md");
    let pod = &fragment["securityContext"];
    assert_eq!(pod["runAsNonRoot"].as_bool(), Some(true));
    let group = pod["fsGroup"].as_u64().expect("fsGroup");
    assert_ne!(pod["runAsUser"].as_u64(), Some(0));
    assert_eq!(pod["runAsGroup"].as_u64(), Some(group));
    crate::common::kubernetes::assert_secret_volume_group_readable(&fragment);
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
    let runnable: Vec<Block> = markdown::blocks()
        .into_iter()
        .filter(|b| b.runnable)
        .collect();
    assert!(runnable.len() >= 2, "{runnable:?}");
    let path = std::env::join_paths(
        std::iter::once(bin_dir()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    for block in &runnable {
        assert_eq!(block.info, "sh", "{}: only sh runs", block.at());
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
            "{}: the recipe failed ({:?}):\n{}\n{stderr}",
            block.at(),
            out.status,
            block.text
        );
        assert!(
            !stderr.contains("error") && !stderr.contains("warning"),
            "{}: {stderr}",
            block.at()
        );
        // What the recipes leave behind is what the gateway reads.
        let env_file = dir.path().join("gw1.env");
        if env_file.exists() {
            let text = std::fs::read_to_string(&env_file).unwrap();
            assert!(
                text.lines()
                    .any(|l| l.starts_with("config.service.auth=GatewayKey gw1&")),
                "{text}"
            );
        }
        let secret_json = dir.path().join("gw1-token.json");
        if secret_json.exists() {
            let secret: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&secret_json).unwrap()).unwrap();
            assert_eq!(secret["kind"], "Secret");
            assert_eq!(secret["metadata"]["name"], "gw1-token");
            assert_eq!(secret["metadata"]["namespace"], "apim");
            let value = base64_decode(secret["data"]["gateway-key"].as_str().unwrap());
            assert!(value.starts_with("GatewayKey gw1&"), "{value}");
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
fn every_toml_block_parses() {
    let blocks = markdown::blocks_in("toml");
    assert!(!blocks.is_empty());
    for block in blocks {
        let table: toml::Table = toml::from_str(&block.text)
            .unwrap_or_else(|e| panic!("{}: TOML does not parse: {e}", block.at()));
        // A Cargo.toml fragment depends on this crate under its name.
        if let Some(dependencies) = table.get("dependencies") {
            assert!(
                dependencies.get(env!("CARGO_PKG_NAME")).is_some(),
                "{}: no {} dependency",
                block.at(),
                env!("CARGO_PKG_NAME")
            );
        }
    }
}

#[test]
fn every_sh_block_is_valid_shell() {
    for block in markdown::blocks_in("sh") {
        let out = Command::new("bash")
            .args(["-n", "-c", &block.text])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            block.at(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_block_has_a_language_and_rust_ones_are_doc_tested() {
    let lib = std::fs::read_to_string("src/lib.rs").unwrap();
    let mut rust = 0;
    for (file, text) in markdown::documents() {
        let blocks = markdown::blocks_of(&file, &text);
        for block in &blocks {
            assert!(
                !block.info.is_empty(),
                "{}: a block without a language (a doc test would compile it as Rust)",
                block.at()
            );
        }
        let here = blocks.iter().filter(|b| b.info.starts_with("rust")).count();
        if here > 0 {
            let include = format!("#[doc = include_str!(\"../{file}\")]");
            assert!(
                lib.contains(&include),
                "{file} holds {here} Rust blocks, but src/lib.rs does not compile them: {include}"
            );
        }
        rust += here;
    }
    assert!(rust >= 2);
}

#[test]
fn the_dockerfile_names_what_exists() {
    let dockerfile = std::fs::read_to_string("examples/Dockerfile").unwrap();
    let ignore =
        Ignore::parse(&std::fs::read_to_string("examples/Dockerfile.dockerignore").unwrap());
    assert!(markdown::all_text().contains("docker build -f examples/Dockerfile "));
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
                    // The build context is the repository root; the ignore file lets it through
                    // (tests/it/images.rs builds what the stage copies).
                    assert!(Path::new(source).exists(), "COPY of missing {source}");
                    assert!(
                        !ignore.excludes(source.trim_end_matches('/')),
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

// ---------------------------------------------------------------------------------------------
// The renewal recipes, run as their users run them.

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as the API server stores a Secret's `data`.
fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(BASE64[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> String {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().take_while(|&c| c != b'=') {
        let v = BASE64
            .iter()
            .position(|&b| b == c)
            .unwrap_or_else(|| panic!("not base64: {text}"));
        bits = bits << 6 | v as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    String::from_utf8(out).unwrap()
}

/// The one ```sh block of all the documents that holds `marker`.
fn sh_block(marker: &str) -> String {
    let found: Vec<Block> = markdown::blocks_in("sh")
        .into_iter()
        .filter(|b| b.text.contains(marker))
        .collect();
    assert_eq!(found.len(), 1, "sh blocks holding {marker}: {found:?}");
    found.into_iter().next().unwrap().text
}

/// Writes an executable file (`chmod +x`, as the guides say for their scripts).
fn executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The sample keys, copied to `path` with `mode`.
fn sample_keys(path: &Path, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::copy("examples/gw1.keys.json", path).unwrap();
    set_mode(path, mode);
}

// ---------------------------------------------------------------------------------------------
// The schedulers' own environments. cron runs a job through `/bin/sh -c`, in its user's home, with
// `PATH=/usr/bin:/bin`, `SHELL=/bin/sh`, `HOME` and `LOGNAME` and nothing else; systemd starts a
// system service (no `User=`) with `PATH` alone, its default for services. A recipe runs in a
// temporary directory that stands for `/`, its absolute paths moved there: the directories the
// guides install into (/usr/local/bin, /usr/local/sbin) hold only what the guides put there
// (`apim-sas` in /usr/local/bin), the system's (/usr/bin, /bin, …) the host's programs, but for
// those the test stands in for (systemctl, kubectl).

/// cron's `PATH` for jobs (Debian's cron, and every Vixie cron).
const CRON_PATH: &str = "/usr/bin:/bin";

/// systemd's `PATH` for services (`systemd-path search-binaries-default` on Debian 12; systemd
/// built for a merged /usr leaves out `/sbin:/bin`, the same programs there).
const SYSTEMD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The directories under which a recipe's absolute paths are moved into the temporary root.
const RELOCATED: &[&str] = &[
    "/etc/apim-sas",
    "/usr/local/bin",
    "/usr/local/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/bin",
    "/sbin",
    "/var/lib/node_exporter",
];

/// A temporary directory standing for a host's `/`, with `apim-sas` installed where the README's
/// Install puts it, `/usr/local/bin/apim-sas`.
struct Host {
    root: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let host = Host {
            root: tempfile::tempdir().unwrap(),
        };
        for dir in ["/usr/bin", "/usr/sbin", "/bin", "/sbin"] {
            let here = host.at(dir);
            std::fs::create_dir_all(here.parent().unwrap()).unwrap();
            if let Ok(target) = std::fs::read_link(dir) {
                // /bin -> usr/bin on a merged /usr: the same link here.
                std::os::unix::fs::symlink(target, &here).unwrap();
                continue;
            }
            std::fs::create_dir_all(&here).unwrap();
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                // What the guides install, and what acts on a real system, only as stood in.
                let name = entry.file_name();
                if !["apim-sas", "systemctl", "kubectl", "docker"]
                    .contains(&name.to_str().unwrap_or(""))
                {
                    std::os::unix::fs::symlink(entry.path(), here.join(entry.file_name())).unwrap();
                }
            }
        }
        std::fs::create_dir_all(host.at("/usr/local/sbin")).unwrap();
        std::fs::create_dir_all(host.at("/usr/local/bin")).unwrap();
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_apim-sas"),
            host.at("/usr/local/bin/apim-sas"),
        )
        .unwrap();
        host
    }

    /// Where the absolute `path` is in this host.
    fn at(&self, path: &str) -> PathBuf {
        self.root.path().join(path.trim_start_matches('/'))
    }

    /// A program standing in for the host's at `path` (`/usr/bin/systemctl`).
    fn stand_in(&self, path: &str, script: &str) {
        let at = self.at(path);
        let _ = std::fs::remove_file(&at);
        executable(&at, script);
    }

    /// `path` (`CRON_PATH`), each directory in this host.
    fn path(&self, path: &str) -> std::ffi::OsString {
        std::env::join_paths(path.split(':').map(|dir| self.at(dir))).unwrap()
    }

    /// `text` with its absolute paths under [`RELOCATED`] moved into this host. Any other path
    /// under /etc, /usr or /var is a recipe writing outside the layout the test knows: refused.
    fn relocate(&self, text: &str) -> String {
        let root = self.root.path().to_str().unwrap();
        let boundary_before = |c: Option<char>| c.is_none_or(|c| " \t\n=:'\"(!".contains(c));
        let boundary_after = |c: Option<char>| c.is_none_or(|c| " \t\n/:'\");".contains(c));
        let mut out = String::new();
        let mut rest = text;
        let mut previous = None;
        'scan: while let Some(c) = rest.chars().next() {
            if c == '/' && boundary_before(previous) {
                for dir in RELOCATED {
                    if let Some(after) = rest.strip_prefix(dir) {
                        if boundary_after(after.chars().next()) {
                            out.push_str(root);
                            out.push_str(dir);
                            rest = after;
                            previous = dir.chars().last();
                            continue 'scan;
                        }
                    }
                }
                for outside in ["/etc/", "/usr/", "/var/"] {
                    assert!(
                        !rest.starts_with(outside),
                        "the recipe names {}, outside the paths the guides use:\n{text}",
                        rest.split_whitespace().next().unwrap()
                    );
                }
            }
            out.push(c);
            rest = &rest[c.len_utf8()..];
            previous = Some(c);
        }
        out
    }

    /// Installs the guides' script that names its path in its opening comment (`#
    /// /usr/local/sbin/NAME: …`), made executable (`chmod +x`, as the guides say).
    fn install(&self, script: &str) -> PathBuf {
        let path = script
            .lines()
            .find_map(|l| l.strip_prefix("# /"))
            .and_then(|l| l.split([':', ' ', ',']).next())
            .unwrap_or_else(|| panic!("a script that does not name its path:\n{script}"));
        let at = self.at(path);
        executable(&at, &self.relocate(script));
        at
    }

    /// Runs `command` as cron runs a job of root's (`/etc/cron.d` line `… root COMMAND`).
    fn cron(&self, command: &str) -> Ran {
        let home = self.at("/root");
        std::fs::create_dir_all(&home).unwrap();
        ran(Command::new("/bin/sh")
            .arg("-c")
            .arg(self.relocate(command))
            .env_clear()
            .env("PATH", self.path(CRON_PATH))
            .env("SHELL", "/bin/sh")
            .env("HOME", &home)
            .env("LOGNAME", "root")
            .current_dir(&home)
            .output()
            .unwrap())
    }

    /// Runs a unit's `ExecStart=` command as systemd starts a system service without `User=`.
    fn systemd(&self, exec_start: &str) -> Ran {
        assert!(
            !exec_start.contains(['"', '\'', '$', '%']),
            "quoting and specifiers are not read here: {exec_start}"
        );
        let words: Vec<String> = self
            .relocate(exec_start)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        ran(Command::new(&words[0])
            .args(&words[1..])
            .env_clear()
            .env("PATH", self.path(SYSTEMD_PATH))
            .current_dir(self.root.path())
            .output()
            .unwrap())
    }
}

/// The real binary, run directly.
fn apim_sas(args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_apim-sas"))
        .args(args)
        .env_remove("APIM_SAS_KEY")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "apim-sas {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A token of the sample gateway that expires in `ttl`, so that renew's default window
/// (`--renew-within 7d`) finds it due.
fn token(keys: &Path, ttl: &str) -> String {
    apim_sas(
        &[
            "mint",
            "--id",
            "gw1",
            "--keys",
            keys.to_str().unwrap(),
            "--ttl",
            ttl,
        ],
        "",
    )
    .trim()
    .to_owned()
}

/// Whether `value` (`GatewayKey <token>`) verifies with the sample keys.
fn verifies(keys: &Path, value: &str) -> bool {
    Command::new(env!("CARGO_BIN_EXE_apim-sas"))
        .args([
            "verify",
            "--id",
            "gw1",
            "--keys",
            keys.to_str().unwrap(),
            value,
        ])
        .env_remove("APIM_SAS_KEY")
        .output()
        .unwrap()
        .status
        .success()
}

/// The hook markers renew keeps in `dir` (dot-files whose names hold `apim-sas-hook`).
fn markers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n.contains("apim-sas-hook"))
        .collect()
}

/// What one run of a recipe gave.
#[derive(Debug)]
struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn ran(out: std::process::Output) -> Ran {
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The `ExecStart=` of the unit at `/etc/systemd/system/NAME` in the guides.
fn exec_start(unit: &str) -> String {
    let blocks: Vec<Block> = markdown::blocks_in("ini")
        .into_iter()
        .filter(|b| {
            b.text
                .starts_with(&format!("# /etc/systemd/system/{unit}\n"))
        })
        .collect();
    assert_eq!(blocks.len(), 1, "the unit {unit}: {blocks:?}");
    let starts: Vec<String> = exec_lines(&blocks[0].text)
        .into_iter()
        .zip(blocks[0].text.lines().filter(|l| l.starts_with("Exec")))
        .filter(|(_, line)| line.starts_with("ExecStart="))
        .map(|(words, _)| words.join(" "))
        .collect();
    assert_eq!(starts.len(), 1, "{unit}: {starts:?}");
    starts.into_iter().next().unwrap()
}

#[test]
fn the_systemd_timer_restarts_the_gateway_exactly_when_it_renewed_under_systemds_environment() {
    let script = sh_block("# /usr/local/sbin/apim-gw1-renew");
    assert!(!script.contains("jq"), "the script needs jq:\n{script}");
    assert!(
        script.contains("--deploy-hook 'systemctl restart apim-gw1.service'"),
        "{script}"
    );
    let host = Host::new();
    let keys = host.at("/etc/apim-sas/gw1.keys.json");
    sample_keys(&keys, 0o600);
    // The env file, created private as the guide says, with the gateway's other settings.
    let env_file = host.at("/etc/apim-sas/gw1.env");
    let endpoint = "config.service.endpoint=apim-example.configuration.azure-api.net";
    std::fs::write(&env_file, format!("{endpoint}\n")).unwrap();
    set_mode(&env_file, 0o600);
    host.install(&script);
    // systemctl records its arguments, and fails while `fail` exists.
    let log = host.at("/systemctl.log");
    let fail = host.at("/fail");
    host.stand_in(
        "/usr/bin/systemctl",
        &format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nif [ -e '{}' ]; then echo 'Job failed' >&2; exit 1; fi\n",
            log.display(),
            fail.display()
        ),
    );
    // What `systemctl start apim-gw1-renew.service` runs, as systemd runs it.
    let command = exec_start("apim-gw1-renew.service");
    let run = || host.systemd(&command);
    let restarts = || lines_of(&log).len();
    let etc = host.at("/etc/apim-sas");

    // The first run writes the token and restarts the gateway.
    let r = run();
    assert!(r.ok, "{r:?}");
    assert!(r.stdout.starts_with("renewed (missing): expires "), "{r:?}");
    assert_eq!(r.stderr, "", "{r:?}");
    assert_eq!(lines_of(&log), ["restart apim-gw1.service"]);
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(env.starts_with(&format!("{endpoint}\n")), "{env}");
    let auth = env
        .lines()
        .find_map(|l| l.strip_prefix("config.service.auth="))
        .expect("an auth line");
    assert!(verifies(&keys, auth), "{env}");

    // The second keeps it, and leaves the gateway alone.
    let r = run();
    assert!(r.ok, "{r:?}");
    assert!(r.stdout.starts_with("kept: expires "), "{r:?}");
    assert_eq!(restarts(), 1);

    // A token about to expire (on an indented line, as Docker reads it) is renewed; the restart
    // fails, the unit fails, and the next run restarts the gateway.
    let soon = token(&keys, "2d");
    std::fs::write(
        &env_file,
        format!("{endpoint}\n  config.service.auth=GatewayKey {soon}\n"),
    )
    .unwrap();
    std::fs::write(&fail, "").unwrap();
    let r = run();
    assert!(!r.ok, "{r:?}");
    assert!(
        r.stdout.starts_with("renewed (expiring): expires "),
        "{r:?}"
    );
    assert!(
        r.stderr.contains("error: InvalidArgument: --deploy-hook"),
        "{r:?}"
    );
    assert_eq!(restarts(), 2);
    assert_eq!(markers(&etc).len(), 1, "{:?}", markers(&etc));
    std::fs::remove_file(&fail).unwrap();
    let r = run();
    assert!(r.ok, "{r:?}");
    assert!(r.stdout.starts_with("kept: expires "), "{r:?}");
    assert_eq!(restarts(), 3, "the failed restart is retried");
    assert!(markers(&etc).is_empty(), "{:?}", markers(&etc));
    let r = run();
    assert!(r.ok && r.stdout.starts_with("kept: "), "{r:?}");
    assert_eq!(restarts(), 3);
}

/// The CronJob of docs/kubernetes.md: its image, command and script.
struct CronJob {
    image: String,
    command: Vec<String>,
    script: String,
}

fn cronjob() -> CronJob {
    let objects = kubernetes_objects();
    let jobs = named(&objects, "CronJob");
    let job = jobs
        .iter()
        .find(|j| str_at(j, &["metadata", "name"]) == Some("gw1-token-renewal"))
        .expect("the CronJob gw1-token-renewal");
    let container = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let strings = |v: &Value| -> Vec<String> {
        v.as_sequence()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let args = strings(&container["args"]);
    assert_eq!(args.len(), 1, "{args:?}");
    CronJob {
        image: str_at(container, &["image"]).unwrap().to_owned(),
        command: strings(&container["command"]),
        script: args.into_iter().next().unwrap(),
    }
}

/// The final stage of examples/Dockerfile: its base image, and the commands it copies into
/// `/usr/local/bin`.
fn final_stage() -> (String, Vec<String>) {
    let dockerfile = std::fs::read_to_string("examples/Dockerfile").unwrap();
    let mut base = String::new();
    let mut copied = Vec::new();
    for (keyword, rest) in instructions(&dockerfile) {
        match keyword.as_str() {
            "FROM" => {
                base = rest.split_whitespace().next().unwrap().to_owned();
                copied.clear();
            }
            "COPY" => {
                let target = rest.split_whitespace().last().unwrap();
                if let Some(name) = target.strip_prefix("/usr/local/bin/") {
                    copied.push(name.to_owned());
                }
            }
            _ => {}
        }
    }
    (base, copied)
}

/// What the final stage's Debian base provides besides its shell: coreutils.
const DEBIAN_COREUTILS: &[&str] = &[
    "base64", "basename", "cat", "chmod", "cp", "cut", "date", "dirname", "echo", "env", "false",
    "head", "ln", "ls", "mkdir", "mktemp", "mv", "printf", "rm", "sleep", "sort", "tail", "tee",
    "test", "touch", "tr", "true", "wc",
];

#[test]
fn the_cronjob_runs_the_image_examples_dockerfile_builds() {
    let job = cronjob();
    let readme = markdown::all_text();
    let dockerfile = std::fs::read_to_string("examples/Dockerfile").unwrap();
    // One tag: the CronJob's image is what the guides and the Dockerfile tell you to build.
    let build = format!("docker build -f examples/Dockerfile -t {} .", job.image);
    assert!(readme.contains(&build), "no guide says: {build}");
    assert!(
        dockerfile.contains(&build),
        "examples/Dockerfile lacks: {build}"
    );
    let repository = job.image.rsplit_once(':').unwrap().0;
    for text in [&readme, &dockerfile] {
        for (at, _) in text.match_indices(&format!("{repository}:")) {
            let rest = &text[at + repository.len() + 1..];
            let tag: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || ".-_".contains(*c))
                .collect();
            assert_eq!(
                format!("{repository}:{tag}"),
                job.image,
                "another tag of the job's image"
            );
        }
    }
    // The final stage holds what the script calls: the shell of its command (and of renew's
    // deploy hook), apim-sas and kubectl; and no jq.
    assert_eq!(job.command, ["/bin/sh", "-euc"]);
    let (base, copied) = final_stage();
    assert!(
        base.starts_with("debian:") && base.ends_with("-slim"),
        "{base}: a base without /bin/sh and coreutils"
    );
    for needed in ["apim-sas", "kubectl"] {
        assert!(copied.iter().any(|c| c == needed), "{copied:?}");
    }
    assert!(job.script.contains("apim-sas renew "), "{}", job.script);
    assert!(job.script.contains("--form k8s-secret"), "{}", job.script);
    assert!(!job.script.contains("jq"), "{}", job.script);
    assert!(!dockerfile.contains("jq "), "the image installs jq");
    assert!(!readme.contains("| jq"), "a recipe pipes into jq");
}

/// A fake `kubectl` and the API server behind it: `get` prints the stored Secret (as kubectl
/// prints it) or fails as for a Secret that does not exist, `apply -f FILE` keeps the file,
/// `rollout restart` is recorded. `apply` and `rollout` fail while `fail-apply` or
/// `fail-rollout` exists.
struct Cluster {
    state: PathBuf,
    resource_version: u32,
}

impl Cluster {
    fn new(state: &Path, bin: &Path) -> Cluster {
        std::fs::create_dir_all(state).unwrap();
        let fake = r#"#!/bin/sh
PATH=/usr/bin:/bin
state='STATE'
echo "$*" >> "$state/kubectl.log"
case "$*" in
  "get secret gw1-token -n apim -o json")
    if [ -f "$state/secret.json" ]; then cat "$state/secret.json"; exit 0; fi
    echo 'Error from server (NotFound): secrets "gw1-token" not found' >&2
    exit 1 ;;
  "apply -f "*)
    [ $# -eq 3 ] || exit 64
    if [ -e "$state/fail-apply" ]; then echo 'error: the server is unreachable' >&2; exit 1; fi
    cp "$3" "$state/applied.json"
    echo 'secret/gw1-token configured' ;;
  "rollout restart deployment/apim-gw1-azure-api-management-gateway -n apim")
    if [ -e "$state/fail-rollout" ]; then echo 'error: the server is unreachable' >&2; exit 1; fi
    echo 'deployment.apps/apim-gw1-azure-api-management-gateway restarted' ;;
  *)
    echo "fake kubectl: unexpected arguments: $*" >&2
    exit 64 ;;
esac
"#;
        executable(
            &bin.join("kubectl"),
            &fake.replace("STATE", state.to_str().unwrap()),
        );
        Cluster {
            state: state.to_owned(),
            resource_version: 1000,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.state.join(name)
    }

    /// The verbs of the kubectl calls since the last look.
    fn calls(&self) -> Vec<String> {
        let log = self.file("kubectl.log");
        let calls = lines_of(&log)
            .iter()
            .map(|l| l.split_whitespace().next().unwrap_or("").to_owned())
            .collect();
        let _ = std::fs::remove_file(&log);
        calls
    }

    /// What `apply` sent, taken in by the server; `None` when nothing was applied.
    fn take_applied(&mut self) -> Option<serde_json::Value> {
        let applied = self.file("applied.json");
        let text = std::fs::read_to_string(&applied).ok()?;
        std::fs::remove_file(&applied).unwrap();
        let sent: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("kubectl apply of a file that is not JSON ({e}): {text}"));
        let mut stored = sent.clone();
        self.resource_version += 1;
        let metadata = stored["metadata"].as_object_mut().unwrap();
        metadata
            .entry("uid")
            .or_insert_with(|| "0b5f4e8e-2c1a-4a55-9d0e-3c7d0f1f8a11".into());
        metadata
            .entry("creationTimestamp")
            .or_insert_with(|| "2026-01-01T00:00:00Z".into());
        metadata.entry("managedFields").or_insert_with(
            || serde_json::json!([{"manager": "kubectl-client-side-apply", "operation": "Update"}]),
        );
        metadata.insert(
            "resourceVersion".into(),
            self.resource_version.to_string().into(),
        );
        metadata
            .entry("annotations")
            .or_insert_with(|| serde_json::json!({}))
            .as_object_mut()
            .unwrap()
            .entry("example.com/owner")
            .or_insert_with(|| "platform".into());
        stored.as_object_mut().unwrap().remove("stringData");
        self.store(&stored);
        Some(sent)
    }

    /// Stores `secret` as `kubectl get -o json` prints it: keys in order, 4-space indentation.
    fn store(&self, secret: &serde_json::Value) {
        use serde::Serialize;
        let mut text = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut serializer = serde_json::Serializer::with_formatter(&mut text, formatter);
        secret.serialize(&mut serializer).unwrap();
        text.push(b'\n');
        std::fs::write(self.file("secret.json"), text).unwrap();
    }

    fn secret(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.file("secret.json")).unwrap()).unwrap()
    }

    /// The stored Secret's token, `GatewayKey <token>`.
    fn value(&self) -> String {
        base64_decode(self.secret()["data"]["gateway-key"].as_str().unwrap())
    }

    /// The stored Secret now holds `GatewayKey <token>`.
    fn set_token(&self, token: &str) {
        let inspected: serde_json::Value =
            serde_json::from_str(&apim_sas(&["inspect", "--output", "json", token], "")).unwrap();
        let mut secret = self.secret();
        secret["metadata"]["annotations"]["apim-sas/expiry"] = inspected["expiry"].clone();
        secret["data"]["gateway-key"] =
            base64_encode(format!("GatewayKey {token}").as_bytes()).into();
        self.store(&secret);
    }

    fn fail(&self, what: &str, on: bool) {
        let flag = self.file(&format!("fail-{what}"));
        if on {
            std::fs::write(flag, "").unwrap();
        } else {
            let _ = std::fs::remove_file(flag);
        }
    }
}

#[test]
fn the_cronjob_renews_applies_and_restarts_exactly_when_due() {
    let job = cronjob();
    let root = tempfile::tempdir().unwrap();
    // What the pod mounts: the keys Secret (0440, as the guide's defaultMode 288 gives).
    let keys = root.path().join("keys/keys.json");
    sample_keys(&keys, 0o440);
    // The image's PATH: what examples/Dockerfile's final stage provides, and nothing else.
    let image_bin = root.path().join("image/usr/local/bin");
    std::fs::create_dir_all(&image_bin).unwrap();
    let (_, copied) = final_stage();
    for name in &copied {
        match name.as_str() {
            "apim-sas" => {
                std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_apim-sas"), image_bin.join(name))
                    .unwrap()
            }
            "kubectl" => {}
            other => panic!("the image copies {other}, which this test does not know"),
        }
    }
    let base_bin = root.path().join("image/bin");
    std::fs::create_dir_all(&base_bin).unwrap();
    for name in DEBIAN_COREUTILS {
        for dir in ["/usr/bin", "/bin"] {
            let host = Path::new(dir).join(name);
            if host.exists() {
                std::os::unix::fs::symlink(&host, base_bin.join(name)).unwrap();
                break;
            }
        }
    }
    let mut cluster = Cluster::new(&root.path().join("cluster"), &image_bin);
    let path = std::env::join_paths([&image_bin, &base_bin]).unwrap();
    // One pod: a fresh emptyDir at /tmp (or `tmp`, a volume that outlives the pods).
    let pods = std::cell::Cell::new(0);
    let run_in = |tmp: &Path| {
        std::fs::create_dir_all(tmp).unwrap();
        let script = job
            .script
            .replace("/tmp/", &format!("{}/", tmp.display()))
            .replace("/keys/", &format!("{}/", keys.parent().unwrap().display()));
        ran(Command::new(&job.command[0])
            .args(&job.command[1..])
            .arg(&script)
            .env_clear()
            .env("PATH", &path)
            .env("HOME", tmp)
            .output()
            .unwrap())
    };
    let pod = || {
        pods.set(pods.get() + 1);
        run_in(&root.path().join(format!("pod{}", pods.get())))
    };
    let soon = || token(&keys, "2d");
    let verbs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // No Secret yet: renew writes one, the hook creates it and rolls the gateway.
    let r = pod();
    assert!(r.ok, "{r:?}");
    assert!(r.stdout.starts_with("renewed (missing): expires "), "{r:?}");
    assert_eq!(
        cluster.calls(),
        verbs(&["get", "apply", "rollout"]),
        "{r:?}"
    );
    let sent = cluster.take_applied().expect("a Secret applied");
    assert_eq!(sent["apiVersion"], "v1");
    assert_eq!(sent["kind"], "Secret");
    assert_eq!(sent["type"], "Opaque");
    assert_eq!(sent["metadata"]["name"], "gw1-token");
    assert_eq!(sent["metadata"]["namespace"], "apim");
    let value = cluster.value();
    assert!(value.starts_with("GatewayKey gw1&"), "{value}");
    assert!(verifies(&keys, &value), "{value}");

    // The Secret is good: kept, byte for byte, and nothing applied or restarted.
    let r = pod();
    assert!(r.ok, "{r:?}");
    assert!(r.stdout.starts_with("kept: expires "), "{r:?}");
    assert_eq!(cluster.calls(), verbs(&["get"]), "{r:?}");
    assert_eq!(
        std::fs::read(
            root.path()
                .join(format!("pod{}/gw1-token.json", pods.get()))
        )
        .unwrap(),
        std::fs::read(cluster.file("secret.json")).unwrap()
    );

    // A token about to expire: renewed in the Secret as the server holds it, every server field
    // kept, then applied, and the gateway rolled.
    cluster.set_token(&soon());
    let before = cluster.secret();
    let r = pod();
    assert!(r.ok, "{r:?}");
    assert!(
        r.stdout.starts_with("renewed (expiring): expires "),
        "{r:?}"
    );
    assert_eq!(
        cluster.calls(),
        verbs(&["get", "apply", "rollout"]),
        "{r:?}"
    );
    let sent = cluster.take_applied().unwrap();
    for field in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "managedFields",
    ] {
        assert_eq!(
            sent["metadata"][field], before["metadata"][field],
            "{field}"
        );
    }
    assert_eq!(
        sent["metadata"]["annotations"]["example.com/owner"],
        "platform"
    );
    let expiry = r.stdout.trim().rsplit(' ').next().unwrap();
    assert_eq!(sent["metadata"]["annotations"]["apim-sas/expiry"], expiry);
    assert_ne!(before["metadata"]["annotations"]["apim-sas/expiry"], expiry);
    assert!(verifies(&keys, &cluster.value()));
    assert_ne!(sent["data"], before["data"]);

    // A failed apply: the job fails, the server keeps the old token, so the next pod renews
    // again and runs the whole hook.
    cluster.set_token(&soon());
    let old = cluster.value();
    cluster.fail("apply", true);
    let r = pod();
    assert!(!r.ok, "{r:?}");
    assert!(
        r.stderr.contains("error: InvalidArgument: --deploy-hook"),
        "{r:?}"
    );
    assert_eq!(cluster.calls(), verbs(&["get", "apply"]), "{r:?}");
    assert!(cluster.take_applied().is_none());
    assert_eq!(cluster.value(), old);
    cluster.fail("apply", false);
    let r = pod();
    assert!(r.ok, "{r:?}");
    assert!(
        r.stdout.starts_with("renewed (expiring): expires "),
        "{r:?}"
    );
    assert_eq!(
        cluster.calls(),
        verbs(&["get", "apply", "rollout"]),
        "{r:?}"
    );
    cluster.take_applied().unwrap();

    // A failed rollout after a good apply is NOT retried by the next pod: its /tmp is new, so
    // the marker is gone, and the Secret on the server is fresh (the guide says so).
    cluster.set_token(&soon());
    cluster.fail("rollout", true);
    let r = pod();
    assert!(!r.ok, "{r:?}");
    assert_eq!(
        cluster.calls(),
        verbs(&["get", "apply", "rollout"]),
        "{r:?}"
    );
    cluster.take_applied().unwrap();
    cluster.fail("rollout", false);
    let r = pod();
    assert!(r.ok, "{r:?}");
    assert!(r.stdout.starts_with("kept: expires "), "{r:?}");
    assert_eq!(cluster.calls(), verbs(&["get"]), "{r:?}");

    // With the file on a volume that outlives the pods, the marker survives and the next run
    // applies and rolls again; the run after that does neither.
    let state = root.path().join("state");
    cluster.set_token(&soon());
    cluster.fail("rollout", true);
    let r = run_in(&state);
    assert!(!r.ok, "{r:?}");
    assert_eq!(
        cluster.calls(),
        verbs(&["get", "apply", "rollout"]),
        "{r:?}"
    );
    cluster.take_applied().unwrap();
    assert_eq!(markers(&state).len(), 1, "{:?}", markers(&state));
    cluster.fail("rollout", false);
    let r = run_in(&state);
    assert!(r.ok, "{r:?}");
    assert!(r.stdout.starts_with("kept: expires "), "{r:?}");
    assert_eq!(
        cluster.calls(),
        verbs(&["get", "apply", "rollout"]),
        "{r:?}"
    );
    cluster.take_applied().unwrap();
    assert!(markers(&state).is_empty(), "{:?}", markers(&state));
    let r = run_in(&state);
    assert!(r.ok && r.stdout.starts_with("kept: "), "{r:?}");
    assert_eq!(cluster.calls(), verbs(&["get"]), "{r:?}");
}

/// The entries of the guides' `/etc/cron.d` files (the blocks marked `<!-- test: cron -->`):
/// each entry's user and command.
fn cron_entries() -> Vec<(String, String)> {
    let mut entries = Vec::new();
    for block in markdown::blocks_marked("cron") {
        let mut found = 0;
        for line in block.text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            assert!(
                !line.contains('='),
                "{}: cron's environment is part of what is tested: {line}",
                block.at()
            );
            // Five time fields (or one `@` nickname), the user, the command.
            let fields = if line.starts_with('@') { 1 } else { 5 };
            let words: Vec<&str> = line.splitn(fields + 2, ' ').collect();
            assert_eq!(words.len(), fields + 2, "{}: {line}", block.at());
            for field in &words[..fields] {
                assert!(
                    field.starts_with('@')
                        || field
                            .chars()
                            .all(|c| c.is_ascii_digit() || "*/,-".contains(c)),
                    "{}: {line}",
                    block.at()
                );
            }
            entries.push((
                words[fields].to_owned(),
                words[fields + 1].trim().to_owned(),
            ));
            found += 1;
        }
        assert!(found > 0, "{}: a cron file without an entry", block.at());
    }
    entries
}

/// The guides' script at `path` whose text holds `marker`.
fn script(path: &str, marker: &str) -> String {
    let found: Vec<Block> = markdown::blocks_in("sh")
        .into_iter()
        .filter(|b| {
            b.text
                .lines()
                .nth(1)
                .is_some_and(|l| l.starts_with(&format!("# {path}")))
        })
        .filter(|b| b.text.contains(marker))
        .collect();
    assert_eq!(found.len(), 1, "scripts {path} holding {marker}: {found:?}");
    found.into_iter().next().unwrap().text
}

/// The cron entry that runs `path`.
fn cron_command(path: &str) -> String {
    let entries: Vec<(String, String)> = cron_entries()
        .into_iter()
        .filter(|(_, command)| command.split_whitespace().next() == Some(path))
        .collect();
    assert_eq!(entries.len(), 1, "cron entries running {path}: {entries:?}");
    let (user, command) = entries.into_iter().next().unwrap();
    assert_eq!(user, "root", "{command}");
    command
}

#[test]
fn every_cron_line_is_marked_and_every_mark_is_known() {
    let entries = cron_entries();
    assert!(!entries.is_empty());
    let marked: Vec<(String, usize)> = markdown::blocks_marked("cron")
        .iter()
        .map(|b| (b.file.clone(), b.line))
        .collect();
    for block in markdown::blocks() {
        if block.info == "yaml" || marked.contains(&(block.file.clone(), block.line)) {
            continue; // a CronJob's `schedule:` runs in its pod, not under cron
        }
        for line in block.text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let schedule = words.len() > 6
                && words[..5]
                    .iter()
                    .all(|w| w.chars().all(|c| c.is_ascii_digit() || "*/,-".contains(c)))
                && words[..5].iter().any(|w| w.contains('*'));
            assert!(
                !schedule && !line.contains("/etc/cron.d/") && !line.contains("crontab "),
                "{}: a cron line in a block not marked <!-- test: cron -->: {line}",
                block.at()
            );
        }
    }
    for (file, text) in markdown::documents() {
        for (n, line) in text.lines().enumerate() {
            if let Some(mark) = line.trim().strip_prefix("<!-- test: ") {
                let what = mark.trim_end_matches("-->").trim();
                assert!(
                    markdown::TEST_MARKS.contains(&what),
                    "{file}:{}: no test reads <!-- test: {what} -->",
                    n + 1
                );
            }
        }
    }
}

#[test]
fn the_monitoring_cron_line_publishes_the_env_files_expiry_under_crons_environment() {
    let script = script("/usr/local/sbin/apim-gw1-metrics", "--form docker-env");
    assert!(!script.contains("sed "), "{script}");
    let host = Host::new();
    let keys = tempfile::tempdir().unwrap();
    let keys = keys.path().join("gw1.keys.json");
    sample_keys(&keys, 0o600);
    let textfiles = host.at("/var/lib/node_exporter/textfile_collector");
    std::fs::create_dir_all(&textfiles).unwrap();
    std::fs::create_dir_all(host.at("/etc/apim-sas")).unwrap();
    host.install(&script);
    let command = cron_command("/usr/local/sbin/apim-gw1-metrics");
    // Two auth lines, the last one indented: Docker and renew read the last, without its
    // indentation.
    let (first, last) = (token(&keys, "1d"), token(&keys, "20d"));
    let env_file = host.at("/etc/apim-sas/gw1.env");
    std::fs::write(
        &env_file,
        format!(
            "config.service.endpoint=apim-example.configuration.azure-api.net\n\
             config.service.auth=GatewayKey {first}\n  config.service.auth=GatewayKey {last}\n"
        ),
    )
    .unwrap();
    set_mode(&env_file, 0o600);
    let r = host.cron(&command);
    // Quiet when all is well: cron mails whatever a job prints.
    assert!(r.ok && r.stdout.is_empty() && r.stderr.is_empty(), "{r:?}");
    let prom = textfiles.join("apim_gw1.prom");
    let want = apim_sas(
        &[
            "inspect",
            "--output",
            "prometheus",
            "--label",
            "env=prod",
            "-",
        ],
        &last,
    );
    assert_eq!(std::fs::read_to_string(&prom).ok(), Some(want));
    let leftovers: Vec<_> = std::fs::read_dir(&textfiles).unwrap().flatten().collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    // No auth line: the metric disappears.
    std::fs::write(
        &env_file,
        "config.service.endpoint=apim-example.configuration.azure-api.net\n",
    )
    .unwrap();
    let r = host.cron(&command);
    assert!(r.ok, "{r:?}");
    assert!(r.stderr.starts_with("error: EmptyToken: "), "{r:?}");
    assert!(!prom.exists());
    assert_eq!(std::fs::read_dir(&textfiles).unwrap().count(), 0);
}

#[test]
fn the_monitoring_cron_line_publishes_the_secrets_expiry_under_crons_environment() {
    let script = script("/usr/local/sbin/apim-gw1-metrics", "--form k8s-secret");
    let host = Host::new();
    let keys = tempfile::tempdir().unwrap();
    let keys = keys.path().join("gw1.keys.json");
    sample_keys(&keys, 0o600);
    let textfiles = host.at("/var/lib/node_exporter/textfile_collector");
    std::fs::create_dir_all(&textfiles).unwrap();
    host.install(&script);
    let command = cron_command("/usr/local/sbin/apim-gw1-metrics");
    // kubectl, where Kubernetes' install instructions put it, prints the Secret the CronJob
    // writes, or fails as for a Secret that does not exist.
    let secret = host.at("/secret.json");
    host.stand_in(
        "/usr/local/bin/kubectl",
        &format!(
            "#!/bin/sh\n[ \"$*\" = 'get secret gw1-token -n apim -o json' ] || exit 64\n\
             [ -f '{0}' ] || {{ echo 'Error from server (NotFound)' >&2; exit 1; }}\ncat '{0}'\n",
            secret.display()
        ),
    );
    let value = token(&keys, "20d");
    std::fs::write(
        &secret,
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "gw1-token", "namespace": "apim"},
            "type": "Opaque",
            "data": {"gateway-key": base64_encode(format!("GatewayKey {value}").as_bytes())},
        })
        .to_string(),
    )
    .unwrap();
    let r = host.cron(&command);
    assert!(r.ok && r.stdout.is_empty() && r.stderr.is_empty(), "{r:?}");
    let prom = textfiles.join("apim_gw1.prom");
    let want = apim_sas(
        &[
            "inspect",
            "--output",
            "prometheus",
            "--label",
            "env=prod",
            "-",
        ],
        &value,
    );
    assert_eq!(std::fs::read_to_string(&prom).ok(), Some(want));
    // No Secret to read: the metric disappears.
    std::fs::remove_file(&secret).unwrap();
    let r = host.cron(&command);
    assert!(r.ok, "{r:?}");
    assert!(!prom.exists());
    assert_eq!(std::fs::read_dir(&textfiles).unwrap().count(), 0);
}

// ---------------------------------------------------------------------------------------------
// One expiry-alert threshold, below renew's window, in every guide and in everything the command
// prints.

/// What the real binary answers to `args`: its exit code, stdout and stderr.
fn answer(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_apim-sas"))
        .args(args)
        .env_remove("APIM_SAS_KEY")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// `N` of `Nd` (a duration in whole days, as the guides and the command write windows).
fn days(duration: &str) -> Option<u64> {
    duration.strip_suffix('d')?.parse().ok()
}

/// A number as the guides write it: digits, or a word up to ten (`a week`, `five days`).
fn number(word: &str) -> Option<u64> {
    let words = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    ];
    match word.to_ascii_lowercase().as_str() {
        "a" | "an" => Some(1),
        w => w
            .parse()
            .ok()
            .or_else(|| words.iter().position(|n| *n == w).map(|n| n as u64)),
    }
}

/// Each lead time a text states as `N days before`, `a week ahead of`, …, in days, whether it is
/// said of renewal (`renews 7 days ahead of`, `renewed a week before`), and its line.
fn lead_times(text: &str) -> Vec<(u64, bool, String)> {
    let mut found = Vec::new();
    for line in text.lines() {
        let words: Vec<String> = line
            .split(|c: char| c.is_whitespace() || "`(),;:*".contains(c))
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        for at in 2..words.len() {
            let ahead_of = words[at] == "ahead" && words.get(at + 1).is_some_and(|w| w == "of");
            if words[at] != "before" && !ahead_of {
                continue;
            }
            let unit = match words[at - 1].as_str() {
                "day" | "days" => 1,
                "week" | "weeks" => 7,
                _ => continue,
            };
            if let Some(n) = number(&words[at - 2]) {
                let of_renewal = at >= 3 && words[at - 3].starts_with("renew");
                found.push((n * unit, of_renewal, line.trim().to_owned()));
            }
        }
    }
    found
}

#[test]
fn one_alert_threshold_below_renews_window_in_every_guide_and_every_hint() {
    // renew's window, as the command states its default.
    let (code, renew_help, _) = answer(&["renew", "--help"]);
    assert_eq!(code, 0);
    let window = renew_help
        .split("--renew-within")
        .nth(1)
        .and_then(|rest| rest.split("[default: ").nth(1))
        .and_then(|rest| days(rest.split(']').next().unwrap()))
        .expect("renew --help states --renew-within's default in days");
    // The alert rule of the monitoring guide, and its threshold.
    let rules: Value = markdown::blocks_of(
        "docs/monitoring.md",
        &markdown::document("docs/monitoring.md"),
    )
    .into_iter()
    .filter(|b| b.info == "yaml" && b.text.contains("groups:"))
    .map(|b| serde_norway::from_str(&b.text).unwrap())
    .next()
    .expect("the alert rules in docs/monitoring.md");
    let expr = rules["groups"][0]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| str_at(r, &["alert"]) == Some("ApimGatewayTokenExpiresSoon"))
        .and_then(|r| str_at(r, &["expr"]))
        .expect("the rule ApimGatewayTokenExpiresSoon")
        .to_owned();
    let threshold: u64 = expr
        .strip_prefix("apim_sas_token_expiry_timestamp_seconds - time() < ")
        .and_then(|n| n.strip_suffix("*86400"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not `… - time() < N*86400`: {expr}"));
    assert!(
        0 < threshold && threshold < window,
        "the alert at {threshold} days would fire inside renew's own {window}-day window"
    );

    // The hint of `inspect --output prometheus --expires-within`, which names the rule.
    let token = apim_sas(
        &["mint", "--id", "gw1", "--keys", "examples/gw1.keys.json"],
        "",
    );
    let hint = answer(&[
        "inspect",
        "--output",
        "prometheus",
        "--expires-within",
        &format!("{threshold}d"),
        token.trim(),
    ]);
    assert_eq!(
        hint,
        (
            2,
            String::new(),
            format!(
                "error: InvalidArgument: --expires-within: with --output prometheus, put the \
                 window in the alert rule ({expr}: {threshold} days, below renew's {window}-day \
                 --renew-within)\n"
            )
        )
    );

    // Every text: the guides, the README, every command's --help, and the hint.
    let mut texts: Vec<(String, String)> = markdown::documents();
    let (_, top, _) = answer(&["--help"]);
    let commands: Vec<String> = top
        .split("Commands:")
        .nth(1)
        .expect("--help lists the commands")
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.starts_with("   ")) // a wrapped description
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 6, "{commands:?}");
    texts.push(("apim-sas --help".to_owned(), top));
    for command in &commands {
        let (code, help, _) = answer(&[command, "--help"]);
        assert_eq!(code, 0, "{command} --help");
        texts.push((format!("apim-sas {command} --help"), help));
    }
    texts.push(("the hint".to_owned(), hint.2));
    for (name, text) in &texts {
        // A PromQL threshold in days.
        for (at, _) in text.match_indices("*86400") {
            let n: String = text[..at]
                .chars()
                .rev()
                .take_while(char::is_ascii_digit)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            assert_eq!(
                n.parse::<u64>().ok(),
                Some(threshold),
                "{name}: an alert threshold of {n}*86400, not {threshold}*86400"
            );
        }
        // `inspect --expires-within`, the check an alert script makes (renew has its own window).
        for (at, _) in text.match_indices("--expires-within ") {
            let value = text[at + "--expires-within ".len()..]
                .split_whitespace()
                .next()
                .unwrap_or("");
            if value.starts_with(|c: char| c.is_ascii_digit()) {
                assert_eq!(
                    days(value),
                    Some(threshold),
                    "{name}: --expires-within {value}, not {threshold}d"
                );
            }
        }
        // A lead time in prose: the alert's, or renew's window where it is said of renewal.
        for (lead, of_renewal, line) in lead_times(text) {
            assert!(
                lead == threshold || (lead == window && of_renewal),
                "{name}: {lead} days ahead, where the alert fires at {threshold} and renew \
                 renews at {window}: {line}"
            );
        }
    }
    // The monitoring guide and the README state the alert's lead time.
    for name in ["docs/monitoring.md", "README.md"] {
        let text = markdown::document(name);
        assert!(
            lead_times(&text)
                .iter()
                .any(|(lead, of_renewal, _)| *lead == threshold && !of_renewal),
            "{name} does not say the alert fires {threshold} days ahead"
        );
    }
}

#[test]
fn the_lead_times_are_read_from_prose() {
    assert_eq!(
        lead_times(
            "One fires a week before a token lapses.\n5 days before; `7d` ahead\n\
             Renewal seven days ahead of expiry; a token 29 days ahead\n"
        ),
        [
            (
                7,
                false,
                "One fires a week before a token lapses.".to_owned()
            ),
            (5, false, "5 days before; `7d` ahead".to_owned()),
            (
                7,
                true,
                "Renewal seven days ahead of expiry; a token 29 days ahead".to_owned()
            )
        ]
    );
    assert_eq!(days("5d"), Some(5));
    assert_eq!(days("5h"), None);
}

#[test]
fn the_readmes_jobs_name_files_their_guides_use() {
    let readme = markdown::document("README.md");
    let mut checked = 0;
    for row in readme.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        if cells.len() != 3 {
            continue;
        }
        let guides: Vec<String> = link_targets(cells[2])
            .into_iter()
            .map(|(_, target)| target.split('#').next().unwrap().to_owned())
            .filter(|t| t.ends_with(".md"))
            .collect();
        let command = cells[1];
        for word in command.split(|c: char| c.is_whitespace() || c == '`') {
            let file = [".json", ".toml", ".txt", ".env", ".yaml"]
                .iter()
                .any(|ext| word.ends_with(ext));
            if !file {
                continue;
            }
            assert!(
                guides
                    .iter()
                    .any(|g| markdown::document(g).contains(&format!(" {word}"))),
                "README.md: {word} in `{command}`, which its guide {guides:?} never uses"
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "{checked}");
}

// ---------------------------------------------------------------------------------------------
// The library guide's example service, run as it says (`cargo run --example axum_guard`).

#[test]
fn the_axum_example_prints_the_expiry_as_every_output_does() {
    use std::io::BufRead;
    // Built into the directory this test was built in: this binary is `<dir>/<profile>/deps/…`.
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "--offline", "--example", "axum_guard"])
        .env("CARGO_TARGET_DIR", target)
        .env("CARGO_TERM_COLOR", "never")
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let mut child = Command::new(target.join("debug/examples/axum_guard"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut line = || lines.next().unwrap().unwrap();
    let listening = line();
    let try_line = line();
    let addr: std::net::SocketAddr = listening
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("{listening}"))
        .parse()
        .unwrap();
    let header = try_line
        .strip_prefix("try: curl -i -H 'Authorization: ")
        .and_then(|rest| rest.split_once("' "))
        .unwrap_or_else(|| panic!("{try_line}"))
        .0
        .to_owned();
    let reply =
        crate::common::http::Conn::open(addr).send(&crate::common::http::authorized("/", &header));
    let _ = child.kill();
    let _ = child.wait();
    let inspected: serde_json::Value =
        serde_json::from_str(&apim_sas(&["inspect", "--output", "json", &header], "")).unwrap();
    let expiry = inspected["expiry"].as_str().unwrap();
    assert!(expiry.ends_with('Z'), "{expiry}");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.text(),
        format!("hello gw1 (signed with the primary key, compact form, expires {expiry})\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The documents as a whole: links, systemd units, the README's length, the guides' openings.

/// GitHub's anchor for a heading: lower case, punctuation dropped (but `-` and `_`), spaces as
/// hyphens; a repeated heading gets `-1`, `-2`, ….
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for (_, line) in markdown::prose_lines(markdown) {
        let Some(title) = line
            .strip_prefix('#')
            .map(|t| t.trim_start_matches('#'))
            .filter(|t| t.starts_with(' '))
        else {
            continue;
        };
        let base: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// The targets of the Markdown links `[text](target)` outside code blocks and code spans.
fn link_targets(markdown: &str) -> Vec<(usize, String)> {
    let mut targets = Vec::new();
    for (n, line) in markdown::prose_lines(markdown) {
        // Code spans hold no links: drop them (every other backtick-delimited run).
        let prose: String = line
            .split('`')
            .enumerate()
            .map(|(i, part)| if i % 2 == 0 { part } else { "x" })
            .collect();
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            targets.push((n, rest[..end].to_owned()));
            rest = &rest[end..];
        }
    }
    targets
}

#[test]
fn every_link_points_to_a_file_and_a_heading_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Each linked file's headings, worked out once however many links point into it.
    let mut headings_of: std::collections::HashMap<PathBuf, BTreeSet<String>> = Default::default();
    let mut checked = 0;
    for (file, text) in markdown::documents() {
        let dir = Path::new(&file).parent().unwrap().to_owned();
        for (line, target) in link_targets(&text) {
            if target.starts_with("https://") || target.starts_with("http://") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let linked = if path.is_empty() {
                PathBuf::from(&file)
            } else {
                dir.join(path)
            };
            let on_disk = root.join(&linked);
            assert!(
                on_disk.exists(),
                "{file}:{line}: the link {target} points to {}, which does not exist",
                linked.display()
            );
            if !anchor.is_empty() {
                assert!(
                    linked.extension().is_some_and(|e| e == "md"),
                    "{file}:{line}: an anchor into a file that is not Markdown: {target}"
                );
                let headings = headings_of
                    .entry(on_disk.canonicalize().unwrap())
                    .or_insert_with_key(|path| anchors(&std::fs::read_to_string(path).unwrap()));
                assert!(
                    headings.contains(anchor),
                    "{file}:{line}: {target}: no heading #{anchor} in {}; it has {headings:?}",
                    linked.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} links found");
}

#[test]
fn the_anchor_rule_is_githubs() {
    let headings = anchors(
        "# A\n## nginx (`auth_request`)\n## Envoy, Istio (ext_authz, gRPC)\n## 5. Choices here\n\
         ```sh\n# not a heading\n```\n## A\n",
    );
    let expected = [
        "a",
        "nginx-auth_request",
        "envoy-istio-ext_authz-grpc",
        "5-choices-here",
        "a-1",
    ];
    assert_eq!(
        headings,
        expected
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>()
    );
    assert_eq!(
        link_targets("see [a](b.md#c) and `[x](not-a-link)`, [d](#e)\n```\n[f](g)\n```\n"),
        [(1, "b.md#c".to_owned()), (1, "#e".to_owned())]
    );
}

#[test]
fn the_readme_is_short_and_every_guide_says_where_it_leads() {
    let readme = markdown::document("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines: what an operator reads in five minutes"
    );
    for (file, text) in markdown::documents() {
        if file == "README.md" {
            continue;
        }
        // Within its first lines, after the title: what the reader has at the end, and needs.
        let opening: Vec<&str> = text.lines().take(30).collect();
        assert!(opening[0].starts_with("# "), "{file}: no title");
        for needed in ["**At the end**", "**You need**"] {
            assert!(
                opening.iter().any(|l| l.starts_with(needed)),
                "{file}: its opening lacks {needed}"
            );
        }
        // The README reaches every guide.
        assert!(
            readme.contains(&format!("]({file}")),
            "README.md does not link {file}"
        );
    }
}

/// The absolute programs a unit's `Exec*=` lines run, without systemd's prefixes (`-`, `@`,
/// `+`, `!`, `:`), and each line's words.
fn exec_lines(unit: &str) -> Vec<Vec<String>> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in unit.lines() {
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            continue;
        }
        current.push_str(line);
        joined.push(std::mem::take(&mut current));
    }
    joined
        .iter()
        .filter(|l| l.starts_with("Exec"))
        .filter_map(|l| l.split_once('='))
        .map(|(_, command)| {
            command
                .trim_start_matches(['-', '@', '+', '!', ':'])
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

#[test]
#[cfg_attr(
    skip_systemd_analyze,
    ignore = "systemd-analyze is not installed: apt-get install -y systemd"
)]
fn every_systemd_unit_verifies() {
    let Ok(analyze) = Command::new("systemd-analyze").arg("--version").output() else {
        panic!(
            "systemd-analyze is not installed: .ci/run installs it (apt-get install -y systemd); \
             elsewhere, rebuild the tests (touch build.rs) and this test is ignored instead"
        );
    };
    assert!(analyze.status.success());
    let root = tempfile::tempdir().unwrap();
    let units = root.path().join("etc/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    // The system's own units (targets, sockets) that ours name, under the root verify reads.
    let system = root.path().join("usr/lib/systemd/system");
    copy_dir(Path::new("/usr/lib/systemd/system"), &system);
    // Units of other software the recipes depend on.
    for other in ["docker.service", "nginx.service"] {
        std::fs::write(
            system.join(other),
            "[Unit]\nDescription=stand-in\n[Service]\nExecStart=/bin/true\n",
        )
        .unwrap();
    }
    let mut names = Vec::new();
    for block in markdown::blocks_in("ini") {
        let first = block.text.lines().next().unwrap_or("");
        let Some(path) = first
            .strip_prefix("# /etc/systemd/system/")
            .map(|p| p.split([':', ' ']).next().unwrap().to_owned())
        else {
            panic!(
                "{}: an ini block that does not name its unit's path",
                block.at()
            );
        };
        std::fs::write(units.join(&path), &block.text).unwrap();
        for words in exec_lines(&block.text) {
            let program = &words[0];
            assert!(
                program.starts_with('/'),
                "{}: {program} is not absolute",
                block.at()
            );
            // The recipes' own programs must parse their flags: apim-sas itself.
            if program == "/usr/local/bin/apim-sas" {
                let args: Vec<&str> = words[1..]
                    .iter()
                    .map(String::as_str)
                    .take_while(|w| !w.starts_with('$'))
                    .collect();
                let out = Command::new(env!("CARGO_BIN_EXE_apim-sas"))
                    .args(&args)
                    .arg("--help")
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}: apim-sas {args:?}: {}",
                    block.at(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            // Every program exists in the root: the recipe's scripts and the tools it names.
            executable(
                &root.path().join(program.trim_start_matches('/')),
                "#!/bin/sh\n",
            );
        }
        names.push(format!("/etc/systemd/system/{path}"));
    }
    assert!(names.len() >= 5, "{names:?}");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", root.path().display()))
        .args(&names)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "{names:?}:\n{stderr}"
    );
}
