//! The integration tests, one test crate: every file of tests/it/ is a module of this binary, so
//! the crate and its dependencies are linked into one test executable instead of one per file.
//! `cargo test --test it serve::` runs one file's tests, `cargo test --test it -- --list` names
//! them all.
//!
//! The tests of all files share one process and run side by side (two threads on two cores), so
//! none changes what the process shares: no environment variable, current directory or umask is
//! set (children get theirs with `Command::env` and `current_dir`), no signal handler installed.
//! The one global allocator is common/allocator.rs, which counts and scans per thread. Tests that
//! measure time, or a process's memory, and must run alone are `#[ignore]`d and run on their own
//! by .ci/run (`timing::`, serve's million requests).
//!
//! A module that needs a feature of the crate is declared under it, so that
//! `cargo test --no-default-features --features tower` builds and runs the rest.

// Without the CLI, the helpers only the modules that need it use go unused.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
mod common;

mod alloc;
mod cache;
#[cfg(feature = "cli")]
mod caddy;
mod changelog;
#[cfg(feature = "cli")]
mod cli;
#[cfg(feature = "cli")]
mod completions;
#[cfg(feature = "cli")]
mod docs;
#[cfg(feature = "cli")]
mod envoy;
mod envoy_recipes;
#[cfg(feature = "cli")]
mod envoy_wasm;
#[cfg(feature = "keystore")]
mod errors;
mod extremes;
mod golden;
#[cfg(feature = "cli")]
mod grpc;
#[cfg(feature = "cli")]
mod grpc_bounds;
#[cfg(feature = "cli")]
mod haproxy;
#[cfg(feature = "cli")]
mod hostile;
#[cfg(feature = "keystore")]
mod hygiene;
mod images;
#[cfg(feature = "keystore")]
mod keystore;
#[cfg(feature = "tower")]
mod layer;
#[cfg(feature = "cli")]
mod nginx;
#[cfg(feature = "cli")]
mod pipe;
#[cfg(feature = "cli")]
mod portal;
#[cfg(feature = "cli")]
mod prometheus;
mod properties;
#[cfg(feature = "cli")]
mod recipes;
#[cfg(feature = "cli")]
mod renew;
#[cfg(feature = "cli")]
mod renew_hook;
#[cfg(all(unix, feature = "cli"))]
mod renew_safety;
#[cfg(feature = "cli")]
mod renew_secret;
#[cfg(feature = "cli")]
mod secret;
#[cfg(feature = "cli")]
mod serve;
#[cfg(feature = "cli")]
mod serve_hostile;
mod single_key;
#[cfg(feature = "cli")]
mod slips;
mod source;
mod timing;
#[cfg(feature = "cli")]
mod usage;

/// Every file of tests/it/ is a module of this crate, and tests/ holds no test file of its own: a
/// file without its `mod` line is never compiled, and one left in tests/ is built by Cargo as a
/// test binary of its own, beside this one.
#[test]
fn every_test_file_is_a_module_of_this_crate() {
    let declared = |file: &std::path::Path| -> Vec<String> {
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .filter_map(|line| {
                let line = line.trim().trim_start_matches("pub ");
                Some(line.strip_prefix("mod ")?.strip_suffix(';')?.to_owned())
            })
            .collect()
    };
    let rust_files = |dir: &str| -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "rs"))
            .collect();
        files.sort();
        files
    };
    let stem = |path: &std::path::Path| path.file_stem().unwrap().to_str().unwrap().to_owned();

    let stray = rust_files("tests");
    assert!(
        stray.is_empty(),
        "{stray:?}: a test file goes in tests/it/, with a `mod` line in tests/it/main.rs"
    );
    let modules = declared("tests/it/main.rs".as_ref());
    for file in rust_files("tests/it") {
        let name = stem(&file);
        assert!(
            name == "main" || modules.contains(&name),
            "{}: no `mod {name};` in tests/it/main.rs",
            file.display()
        );
        // Its own modules, in tests/it/<name>/.
        let dir = file.with_extension("");
        if dir.is_dir() {
            let submodules = declared(&file);
            for sub in rust_files(dir.to_str().unwrap()) {
                assert!(
                    submodules.contains(&stem(&sub)),
                    "{}: no `mod {};` in {}",
                    sub.display(),
                    stem(&sub),
                    file.display()
                );
            }
        }
    }
    let common = declared("tests/it/common/mod.rs".as_ref());
    for file in rust_files("tests/it/common") {
        let name = stem(&file);
        assert!(
            name == "mod" || common.contains(&name),
            "{}: no `pub mod {name};` in tests/it/common/mod.rs",
            file.display()
        );
    }
}
