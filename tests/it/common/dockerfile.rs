//! Dockerfiles read as text (no Docker runs in the tests): their instructions, their stages, their
//! `.dockerignore` files, and the files a build stage's `COPY` lines take from the context.

use std::path::{Path, PathBuf};

/// Dockerfile instructions, keywords in upper case, continuation lines joined, comments dropped.
pub fn instructions(dockerfile: &str) -> Vec<(String, String)> {
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
        out.push((keyword.to_ascii_uppercase(), rest.trim().to_owned()));
        current.clear();
    }
    assert!(
        current.is_empty(),
        "a continuation line ends the Dockerfile"
    );
    out
}

/// The instructions of each stage, from its `FROM` on.
pub fn stages(dockerfile: &str) -> Vec<Vec<(String, String)>> {
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    for instruction in instructions(dockerfile) {
        if instruction.0 == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .expect("the Dockerfile starts with FROM")
            .push(instruction);
    }
    stages
}

/// A `.dockerignore` file as `docker build` reads it (BuildKit's reader, moby's patternmatcher):
/// `#` comments, `!` exceptions, surrounding blanks dropped, each pattern cleaned (`src/` is
/// `src`), the last pattern that matches a path decides, and a pattern that matches a directory
/// matches everything under it. Patterns may use `*` and `?` (not across `/`) and `**`; character
/// classes and escapes are refused (nothing here needs them).
#[derive(Debug, Default)]
pub struct Ignore {
    /// `(exception, pattern)`, in the file's order.
    patterns: Vec<(bool, String)>,
}

impl Ignore {
    pub fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let line = line.trim();
            let (exception, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            if pattern.is_empty() {
                continue;
            }
            assert!(
                !pattern.contains(['[', '\\']),
                "{pattern}: character classes and escapes are not read here"
            );
            let parts: Vec<&str> = pattern
                .split('/')
                .filter(|p| !p.is_empty() && *p != ".")
                .collect();
            assert!(!parts.contains(&".."), "{pattern}: `..` is not read here");
            patterns.push((exception, parts.join("/")));
        }
        Ignore { patterns }
    }

    /// Whether `path` (relative to the context, `/`-separated) is left out of the context.
    pub fn excludes(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').collect();
        let parents: Vec<String> = (1..parts.len()).map(|n| parts[..n].join("/")).collect();
        let mut excluded = false;
        for (exception, pattern) in &self.patterns {
            // An exception can only let back in what is out, a pattern only leave out what is in.
            if *exception != excluded {
                continue;
            }
            let hit = glob(pattern.as_bytes(), path.as_bytes())
                || parents
                    .iter()
                    .any(|p| glob(pattern.as_bytes(), p.as_bytes()));
            if hit {
                excluded = !exception;
            }
        }
        excluded
    }

    /// Whether an exception may let something under the directory `dir` back in.
    fn may_let_in_under(&self, dir: &str) -> bool {
        let dir: Vec<&str> = dir.split('/').collect();
        self.patterns.iter().any(|(exception, pattern)| {
            let parts: Vec<&str> = pattern.split('/').collect();
            *exception
                && (parts.contains(&"**")
                    || (parts.len() > dir.len()
                        && dir
                            .iter()
                            .zip(&parts)
                            .all(|(d, p)| glob(p.as_bytes(), d.as_bytes()))))
        })
    }
}

/// Go's `filepath.Match` with moby's `**`: `*` and `?` stop at `/`, `**` does not, and `**/`
/// also matches no directory at all.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern {
        [] => text.is_empty(),
        [b'*', b'*', b'/', rest @ ..] => {
            glob(rest, text)
                || (0..text.len()).any(|i| text[i] == b'/' && glob(rest, &text[i + 1..]))
        }
        [b'*', b'*', rest @ ..] => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        [b'*', rest @ ..] => {
            let end = text.iter().position(|&c| c == b'/').unwrap_or(text.len());
            (0..=end).any(|i| glob(rest, &text[i..]))
        }
        [b'?', rest @ ..] => text.first().is_some_and(|&c| c != b'/') && glob(rest, &text[1..]),
        [c, rest @ ..] => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

/// The ignore file `docker build -f DOCKERFILE CONTEXT` reads: `DOCKERFILE.dockerignore` beside
/// the Dockerfile when it exists (BuildKit), else the context's `.dockerignore`, else none.
pub fn ignore_file_of(dockerfile: &Path, context: &Path) -> Option<PathBuf> {
    let mut beside = dockerfile.as_os_str().to_owned();
    beside.push(".dockerignore");
    [PathBuf::from(beside), context.join(".dockerignore")]
        .into_iter()
        .find(|p| p.is_file())
}

/// The files of the context under `source` (a file or a directory, relative to the context),
/// relative to the context and sorted: what Docker sends of it, the ignore file applied.
fn context_files(context: &Path, ignore: &Ignore, source: &str) -> Vec<String> {
    fn walk(context: &Path, ignore: &Ignore, relative: &str, out: &mut Vec<String>) {
        let path = context.join(relative);
        if path.is_dir() {
            let root = relative.is_empty();
            if !root && ignore.excludes(relative) && !ignore.may_let_in_under(relative) {
                return;
            }
            let mut names: Vec<String> = std::fs::read_dir(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            for name in names {
                let child = if root {
                    name
                } else {
                    format!("{relative}/{name}")
                };
                walk(context, ignore, &child, out);
            }
        } else if path.is_file() && !ignore.excludes(relative) {
            out.push(relative.to_owned());
        }
    }
    let mut out = Vec::new();
    let source = source.trim_end_matches('/');
    walk(
        context,
        ignore,
        if source == "." { "" } else { source },
        &mut out,
    );
    out
}

/// What a build stage makes of the context: the files its `COPY` lines put in the image (path in
/// the image, file in the context), the `WORKDIR` of its `RUN` lines, and those lines.
#[derive(Debug)]
pub struct BuildStage {
    pub files: Vec<(String, PathBuf)>,
    pub workdir: String,
    pub runs: Vec<String>,
}

/// Reads one stage's `WORKDIR`, `COPY` and `RUN` lines as `docker build` runs them: a source
/// directory's contents go into the destination, a source file into a destination that ends in
/// `/` (or when there are several sources) under its own name, else to the destination itself;
/// a relative destination starts at `WORKDIR`. A source with nothing in the context fails the
/// build, as in Docker. `COPY --from` (another stage) is left out; `ADD` and the JSON form of
/// `COPY` are refused (none of ours uses them).
pub fn build_stage(stage: &[(String, String)], context: &Path, ignore: &Ignore) -> BuildStage {
    let mut files = Vec::new();
    let mut workdir = "/".to_owned();
    let mut runs = Vec::new();
    let absolute = |workdir: &str, path: &str| -> String {
        if path.starts_with('/') {
            path.to_owned()
        } else {
            format!(
                "{}/{}",
                workdir.trim_end_matches('/'),
                path.trim_start_matches("./")
            )
        }
    };
    for (keyword, rest) in stage {
        match keyword.as_str() {
            "WORKDIR" => workdir = absolute(&workdir, rest),
            "RUN" => runs.push(rest.clone()),
            "ADD" => panic!("ADD {rest}: not read here; COPY says what it copies"),
            "COPY" => {
                assert!(
                    !rest.starts_with('['),
                    "COPY {rest}: the JSON form is not read here"
                );
                let words: Vec<&str> = rest.split_whitespace().collect();
                let (flags, paths): (Vec<&str>, Vec<&str>) =
                    words.iter().partition(|w| w.starts_with("--"));
                if flags.iter().any(|f| f.starts_with("--from=")) {
                    continue;
                }
                for flag in &flags {
                    assert!(
                        ["--chown=", "--chmod=", "--link"]
                            .iter()
                            .any(|f| flag.starts_with(f)),
                        "COPY {flag}: not read here"
                    );
                }
                let (destination, sources) =
                    paths.split_last().expect("COPY without a destination");
                assert!(!sources.is_empty(), "COPY {rest}: no source");
                let into_directory = destination.ends_with('/') || sources.len() > 1;
                let destination = absolute(&workdir, destination);
                for source in sources {
                    assert!(
                        !source.contains(['*', '?', '[']),
                        "COPY {source}: wildcards are not read here"
                    );
                    let source = match source.trim_start_matches("./").trim_end_matches('/') {
                        "" => ".",
                        s => s,
                    };
                    let found = context_files(context, ignore, source);
                    assert!(
                        !found.is_empty(),
                        "COPY {source}: not in the build context (missing, or left out by the ignore file): docker build fails here"
                    );
                    let is_file = context.join(source).is_file();
                    for file in found {
                        let target = if is_file && !into_directory {
                            destination.clone()
                        } else if is_file {
                            let name = Path::new(source).file_name().unwrap().to_str().unwrap();
                            format!("{}/{name}", destination.trim_end_matches('/'))
                        } else {
                            let under = match source {
                                "." => &file[..],
                                _ => &file[source.len() + 1..],
                            };
                            format!("{}/{under}", destination.trim_end_matches('/'))
                        };
                        files.push((target, context.join(&file)));
                    }
                }
            }
            _ => {}
        }
    }
    BuildStage {
        files,
        workdir,
        runs,
    }
}
