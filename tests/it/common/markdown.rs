//! The repository's Markdown documents with recipes (README.md and every guide in docs/), and
//! their fenced code blocks, for the tests that hold the recipes to the code.

use std::path::Path;

/// A fenced code block: the file it is in, its info string, its text, and whether the line
/// before it marks it runnable (`<!-- test: run -->`).
#[derive(Debug, Clone)]
pub struct Block {
    pub file: String,
    pub line: usize,
    pub info: String,
    pub text: String,
    pub runnable: bool,
}

impl Block {
    /// `file:line`, for messages.
    pub fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// README.md and docs/*.md (sorted), each with its text, relative to the repository root.
pub fn documents() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut names = vec!["README.md".to_owned()];
    let mut guides: Vec<String> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    guides.sort();
    names.extend(guides);
    names
        .into_iter()
        .map(|name| {
            let text =
                std::fs::read_to_string(root.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, text)
        })
        .collect()
}

/// The text of one document (`"docs/renewal.md"`).
pub fn document(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every document's text, one after the other, for "some recipe says …" checks.
pub fn all_text() -> String {
    documents()
        .into_iter()
        .map(|(_, text)| text)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The lines of a document outside its fenced blocks, numbered from 1: its prose and headings.
/// A fence opens on a line starting with three backticks and closes on a line of exactly three,
/// as in [`blocks_of`].
pub fn prose_lines(markdown: &str) -> Vec<(usize, &str)> {
    let mut prose = Vec::new();
    let mut in_code = false;
    for (n, line) in markdown.lines().enumerate() {
        if in_code {
            in_code = line != "```";
        } else if line.starts_with("```") {
            in_code = true;
        } else {
            prose.push((n + 1, line));
        }
    }
    prose
}

/// The fenced blocks of one document's text.
pub fn blocks_of(file: &str, markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines().enumerate();
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
                file: file.to_owned(),
                line: n + 1,
                info: info.trim().to_owned(),
                text,
                runnable: previous.trim() == "<!-- test: run -->",
            });
        }
        previous = line;
    }
    blocks
}

/// The fenced blocks of every document.
pub fn blocks() -> Vec<Block> {
    documents()
        .iter()
        .flat_map(|(file, text)| blocks_of(file, text))
        .collect()
}

/// The fenced blocks of every document in one language (`"yaml"`, `"nginx"`).
pub fn blocks_in(language: &str) -> Vec<Block> {
    blocks()
        .into_iter()
        .filter(|b| b.info == language)
        .collect()
}

/// The marks `<!-- test: WHAT -->` put on the line before a fenced block: `run` (a recipe run
/// from the repository root), `cron` (an `/etc/cron.d` file, each entry run as cron runs it).
pub const TEST_MARKS: [&str; 2] = ["run", "cron"];

/// The fenced blocks of every document whose line before is `<!-- test: WHAT -->`.
pub fn blocks_marked(what: &str) -> Vec<Block> {
    let mark = format!("<!-- test: {what} -->");
    documents()
        .iter()
        .flat_map(|(file, text)| {
            let lines: Vec<&str> = text.lines().collect();
            blocks_of(file, text)
                .into_iter()
                .filter(|b| b.line >= 2 && lines[b.line - 2].trim() == mark)
                .collect::<Vec<_>>()
        })
        .collect()
}
