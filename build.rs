//! Which environment-dependent tests can run here, decided when the tests are built: each tool
//! or right a test needs and this machine lacks becomes a `skip_*` cfg, and the test carries
//! `#[cfg_attr(skip_x, ignore = "what is missing: how to get it")]`, so `cargo test` prints
//! `ignored, <reason>` instead of a silent `ok`. With `CI` set no skip is emitted: there every
//! test runs and a missing tool fails it (`.ci/run` installs them all).
//!
//! Only in a checkout of the repository (it has `.ci/`, which the package excludes): a crate
//! downloaded as a dependency probes nothing and emits no cfg. For trying the mechanism,
//! `APIM_SAS_TEST_SKIP=fish,zsh` adds `skip_fish` and `skip_zsh` as if they were missing.
//!
//! Rebuilt when this file, `CI`, `PATH` or `APIM_SAS_TEST_SKIP` change, and when a package is
//! installed (`/var/lib/dpkg/status`). The scripts that make the venvs under target/
//! (`.ci/deps/grpc.sh`, `.ci/deps/envoy.sh`, `.ci/deps/k8s-validate.sh`) and the one that
//! installs a Rust for wasm32 (`.ci/deps/wasm.sh`) `touch build.rs` when they are done; after a
//! `rustup target add wasm32-wasip1` of your own, touch it yourself.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Every cfg this script may emit, all declared for `check-cfg`.
const SKIPS: [&str; 19] = [
    "skip_bash",            // tests/it/completions.rs
    "skip_bash_completion", // tests/it/completions.rs (/usr/share/bash-completion/bash_completion)
    "skip_fish",            // tests/it/completions.rs
    "skip_zsh",             // tests/it/completions.rs
    "skip_man",             // tests/it/docs.rs (man-db)
    "skip_nginx",           // tests/it/nginx.rs (/usr/sbin/nginx)
    "skip_haproxy",         // tests/it/haproxy.rs (/usr/sbin/haproxy, from .ci/deps/haproxy.sh)
    "skip_caddy",           // tests/it/caddy.rs (/usr/bin/caddy, from .ci/deps/caddy.sh)
    "skip_root",            // tests/it/renew.rs, tests/it/renew_safety.rs: the tests are not root
    "skip_setpriv",         // tests/it/renew.rs, tests/it/renew_safety.rs (/usr/bin/setpriv)
    "skip_chattr",          // tests/it/renew.rs: `chattr +i` works in the temporary directory
    "skip_k8s_validate",    // tests/it/renew_secret.rs (kubernetes-validate)
    "skip_grpc_venv",       // tests/it/grpc.rs (target/grpc-venv from .ci/deps/grpc.sh)
    "skip_envoy",           // tests/it/envoy.rs (target/envoy-venv from .ci/deps/envoy.sh)
    "skip_wasm",            // tests/it/envoy_wasm.rs: a Rust for wasm32 (.ci/deps/wasm.sh)
    "skip_python3",         // tests/it/serve_hostile.rs
    "skip_mkfifo",          // tests/it/serve_hostile.rs
    "skip_nofile",          // tests/it/serve_hostile.rs: a hard limit of open files under 1,200
    "skip_systemd_analyze", // for tests/it/recipes.rs (systemd's systemd-analyze)
];

/// The hard limit of open files tests/it/serve_hostile.rs needs (1,100 held connections and 100).
const NOFILE: u64 = 1200;

fn main() {
    for name in SKIPS {
        println!("cargo::rustc-check-cfg=cfg({name})");
    }
    println!("cargo::rerun-if-changed=build.rs");
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by Cargo"));
    if !root.join(".ci").is_dir() || !root.join("tests").is_dir() {
        return; // a downloaded crate: nothing to probe
    }
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=APIM_SAS_TEST_SKIP");
    let dpkg = Path::new("/var/lib/dpkg/status");
    if dpkg.is_file() {
        // Rewritten by every apt-get install. Only an existing file: a missing one would rerun
        // this script, and rebuild the crate, on every build.
        println!("cargo::rerun-if-changed={}", dpkg.display());
    }
    if std::env::var_os("CI").is_some() {
        return; // CI runs everything: a missing tool fails its test
    }

    let mut skip: Vec<String> = std::env::var("APIM_SAS_TEST_SKIP")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| format!("skip_{}", s.trim_start_matches("skip_")))
        .collect();
    let mut missing = |name: &str, lacking: bool| {
        if lacking {
            skip.push(format!("skip_{name}"));
        }
    };
    let root_user = is_root();
    missing("bash", !on_path("bash"));
    missing(
        "bash_completion",
        !Path::new("/usr/share/bash-completion/bash_completion").is_file(),
    );
    missing("fish", !on_path("fish"));
    missing("zsh", !on_path("zsh"));
    missing("man", !on_path("man"));
    missing("nginx", !Path::new("/usr/sbin/nginx").is_file());
    missing("haproxy", !Path::new("/usr/sbin/haproxy").is_file());
    missing("caddy", !Path::new("/usr/bin/caddy").is_file());
    missing("root", !root_user);
    missing("setpriv", !Path::new("/usr/bin/setpriv").is_file());
    missing(
        "chattr",
        !(root_user && on_path("chattr") && chattr_works()),
    );
    missing(
        "k8s_validate",
        !on_path("kubernetes-validate")
            && !root
                .join("target/ci-venv/bin/kubernetes-validate")
                .is_file(),
    );
    // .ci/deps/grpc.sh writes the stamp last, once the packages import.
    missing("grpc_venv", !root.join("target/grpc-venv/.pins").is_file());
    // .ci/deps/envoy.sh writes the stamp last, once the binary reports the pinned version.
    missing("envoy", !root.join("target/envoy-venv/.pins").is_file());
    // What wasm/build.sh builds with: rustup's wasm32-wasip1, or Debian's rustc-web with the
    // standard library's source and rust-lld (a link that dangles without its lld).
    missing("wasm", !wasm_toolchain());
    missing("python3", !on_path("python3"));
    missing("mkfifo", !on_path("mkfifo"));
    missing("nofile", hard_nofile().is_some_and(|n| n < NOFILE));
    missing("systemd_analyze", !on_path("systemd-analyze"));

    skip.sort();
    skip.dedup();
    for name in skip {
        assert!(
            SKIPS.contains(&name.as_str()),
            "APIM_SAS_TEST_SKIP: no such skip {name:?}; the skips are {SKIPS:?}"
        );
        println!("cargo::rustc-cfg={name}");
    }
}

/// Whether an executable file named `program` is in a directory of PATH.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let path = dir.join(program);
            path.is_file() && executable(&path)
        })
    })
}

#[cfg(unix)]
fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn executable(_: &Path) -> bool {
    true
}

/// Whether wasm/build.sh finds a Rust for wasm32 here (the same checks, in its order).
fn wasm_toolchain() -> bool {
    let rustup = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|t| t == "wasm32-wasip1")
        });
    rustup
        || (Path::new("/usr/bin/cargo").is_file()
            && Path::new("/usr/bin/rustc").is_file()
            && Path::new("/usr/lib/rustlib/src/rust/library/std").is_dir()
            && Path::new("/usr/bin/rust-lld").is_file())
}

/// Whether this process (so the tests, run by the same user) is root: the owner of /proc/self.
#[cfg(unix)]
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[cfg(not(unix))]
fn is_root() -> bool {
    false
}

/// Whether `chattr +i` takes on a file in the temporary directory (the file system may not
/// have the attribute, a container may lack CAP_LINUX_IMMUTABLE); undone with `chattr -i`.
fn chattr_works() -> bool {
    let path = std::env::temp_dir().join(format!("apim-sas-build-chattr-{}", std::process::id()));
    if std::fs::write(&path, b"probe").is_err() {
        return false;
    }
    let chattr = |flag: &str| {
        Command::new("chattr")
            .arg(flag)
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let works = chattr("+i");
    if works {
        chattr("-i");
    }
    let _ = std::fs::remove_file(&path);
    works
}

/// The hard limit of open files (`ulimit -Hn`), `None` when unlimited or unknown.
fn hard_nofile() -> Option<u64> {
    let out = Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}
