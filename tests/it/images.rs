//! Every Dockerfile in the repository builds from exactly the files its build stage copies. No
//! Docker daemon runs in CI, so this does with the build stage what `docker build` would: it takes
//! the files the stage's `COPY` lines name from the build context (the repository root, as each
//! Dockerfile's own `docker build` line says), leaves out what the Dockerfile's `.dockerignore`
//! leaves out, puts them where the stage puts them, and runs `cargo build --locked --offline` in the
//! stage's `WORKDIR`, what its `cargo install --locked --path .` builds, offline from the local
//! cargo cache. A file the build needs and the stage does not copy (a workspace member's manifest,
//! a test target the manifest names) fails it, as it fails `docker build`.
//!
//! What it costs: the copies sit at a fixed place under the target directory, with their files'
//! modification times, so an unchanged copy is not rebuilt; the build's intermediate artifacts go
//! to the directory this test was built in (Cargo's `build.build-dir`), so the dependencies this
//! test's own build compiled are reused; its binaries go to `docker-context/target`, never over
//! the `apim-sas` the other tests run. Two Dockerfiles that copy the same files are built once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::common::dockerfile::{build_stage, ignore_file_of, stages, Ignore};
use crate::common::one_at_a_time;

/// The Dockerfiles of the repository (`Dockerfile`, `NAME.Dockerfile`, `Dockerfile.NAME`),
/// outside build output and Git's directory, sorted.
fn dockerfiles(repository: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    walk(&path, out);
                }
            } else if (name == "Dockerfile"
                || name.ends_with(".Dockerfile")
                || name.starts_with("Dockerfile."))
                && !name.ends_with(".dockerignore")
            {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(repository, &mut out);
    out.sort();
    out
}

/// The directory this test was built in: this binary is `<build dir>/<profile>/deps/<name>`.
fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    assert_eq!(
        deps.file_name(),
        Some("deps".as_ref()),
        "{}: not in Cargo's deps directory",
        exe.display()
    );
    deps.parent().unwrap().parent().unwrap().to_owned()
}

/// Writes `files` (path in the image, file in the context) under `root`, which stands for the
/// image's `/`; each copy keeps its file's modification time, so Cargo finds an unchanged copy
/// fresh. Whatever `root` held before is removed first.
fn materialize(root: &Path, files: &[(String, PathBuf)]) {
    if root.exists() {
        std::fs::remove_dir_all(root).unwrap();
    }
    for (target, source) in files {
        let to = root.join(target.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(source, &to).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        let modified = std::fs::metadata(source).unwrap().modified().unwrap();
        std::fs::File::options()
            .write(true)
            .open(&to)
            .unwrap()
            .set_modified(modified)
            .unwrap();
    }
}

/// A build stage's files: path in the image, and bytes.
type Files = Vec<(String, Vec<u8>)>;

#[test]
fn every_dockerfile_builds_from_exactly_what_its_build_stage_copies() {
    let _one = one_at_a_time(); // its cargo build takes both cores
    let repository = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfiles = dockerfiles(repository);
    assert!(dockerfiles.len() >= 2, "{dockerfiles:?}");
    let build_dir = build_dir();
    let contexts = build_dir.join("docker-context");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // The files of each set built, with their bytes, and the Dockerfile that copied them.
    let mut built: Vec<(String, Files)> = Vec::new();
    for dockerfile in &dockerfiles {
        let name = dockerfile
            .strip_prefix(repository)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let text = std::fs::read_to_string(dockerfile).unwrap();
        // Its context is the repository root: its own build line ends in ` .`, run from there.
        let command = format!("docker build -f {name} ");
        assert!(
            text.lines()
                .any(|l| l.contains(&command) && l.trim_end().ends_with(" .")),
            "{name}: no `{command}… .` line says how it is built, from the repository root"
        );
        let ignore = ignore_file_of(dockerfile, repository)
            .map(|path| Ignore::parse(&std::fs::read_to_string(path).unwrap()))
            .unwrap_or_default();
        let stages = stages(&text);
        let cargo_stages: Vec<&Vec<(String, String)>> = stages
            .iter()
            .filter(|s| {
                s.iter()
                    .any(|(k, rest)| k == "RUN" && rest.contains("cargo "))
            })
            .collect();
        assert_eq!(cargo_stages.len(), 1, "{name}: one stage builds with cargo");
        let stage = build_stage(cargo_stages[0], repository, &ignore);
        // The copied files build as they are: no step edits them before cargo runs.
        assert_eq!(
            stage.runs,
            ["cargo install --locked --path . --root /out"],
            "{name}: the build stage runs cargo install alone"
        );
        let contents: Files = stage
            .files
            .iter()
            .map(|(target, source)| (target.clone(), std::fs::read(source).unwrap()))
            .collect();
        if let Some((first, _)) = built.iter().find(|(_, c)| *c == contents) {
            eprintln!("{name}: its build stage copies the same files as {first}'s, built above");
            continue;
        }
        let root = contexts.join(name.replace('/', "-"));
        materialize(&root, &stage.files);
        let workdir = root.join(stage.workdir.trim_start_matches('/'));
        let started = Instant::now();
        let out = Command::new(&cargo)
            .args(["build", "--locked", "--offline"])
            .current_dir(&workdir)
            .env("CARGO_BUILD_BUILD_DIR", &build_dir)
            .env("CARGO_TARGET_DIR", contexts.join("target"))
            .env("CARGO_TERM_COLOR", "never")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!(
            "{name}: cargo build --locked --offline of the {} files its build stage copies: {:.1} s",
            stage.files.len(),
            started.elapsed().as_secs_f64()
        );
        assert!(
            out.status.success(),
            "{name}: the files its build stage copies do not build (cargo build --locked --offline \
             in {}):\n{stderr}",
            workdir.display()
        );
        built.push((name, contents));
    }
}

#[test]
fn the_ignore_file_is_read_as_docker_reads_it() {
    let ignore = Ignore::parse(
        "# only what the build copies\n*\n!Cargo.toml\n!src/\n!nginx/\nnginx/*\n!nginx/Cargo.toml\n\
         !nginx/src\n  !  docs/**/*.md  \ndocs/private\n",
    );
    for (path, excluded) in [
        ("Cargo.toml", false),
        ("Cargo.lock", true),
        ("src/lib.rs", false),
        ("src/cli/mod.rs", false),
        ("target/debug/apim-sas", true),
        ("nginx/Cargo.toml", false),
        ("nginx/src/lib.rs", false),
        ("nginx/build.sh", true),
        ("nginx/tests/module.rs", true),
        ("docs/cli.md", false),
        ("docs/a/b/c.md", false),
        ("docs/a/b/c.txt", true),
        ("docs/private/x.md", true),
    ] {
        assert_eq!(ignore.excludes(path), excluded, "{path}");
    }
    // No ignore file: everything is in the context.
    assert!(!Ignore::parse("").excludes("target/debug/apim-sas"));
    // `?` and `*` stay within one name; a pattern names a path from the context's root.
    let ignore = Ignore::parse("/tests/*.rs\nsrc/?.rs\n");
    assert!(ignore.excludes("tests/cli.rs") && !ignore.excludes("tests/common/mod.rs"));
    assert!(ignore.excludes("src/a.rs") && !ignore.excludes("src/ab.rs"));
}
