//! The Docker env file form: the token is the value of the `config.service.auth=` line, read as
//! `docker run --env-file` reads it (a byte-order mark and leading whitespace dropped, the last
//! such line wins); a renewal replaces that line in place and keeps every other byte.

use apim_sas::{Scheme, Token};

use crate::cli::input::strip_bom;

/// The start of the env file line that holds the gateway's token.
pub(crate) const DOCKER_ENV_AUTH: &str = "config.service.auth=";

/// The Docker env file line the gateway container reads: `config.service.auth=GatewayKey …`.
pub(crate) fn docker_env_line(token: &Token) -> String {
    format!("{DOCKER_ENV_AUTH}{}", token.with_scheme(Scheme::GatewayKey))
}

/// One line of an env file, with its terminator (`\n`, `\r\n`, or none on a last line).
struct Line<'a> {
    body: &'a [u8],
    end: &'a [u8],
}

fn lines(bytes: &[u8]) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(at) => rest.split_at(at + 1),
            None => (rest, &[][..]),
        };
        let body_len = line.len()
            - if line.ends_with(b"\r\n") {
                2
            } else {
                usize::from(line.ends_with(b"\n"))
            };
        let (body, end) = line.split_at(body_len);
        out.push(Line { body, end });
        rest = next;
    }
    out
}

/// How Docker's `--env-file` reads a line: a byte-order mark on the first line and leading
/// whitespace are dropped. Returns (what was dropped, the rest).
fn env_prefix(first: bool, body: &[u8]) -> (&[u8], &[u8]) {
    let rest = if first { strip_bom(body) } else { body };
    let rest = rest.trim_ascii_start();
    body.split_at(body.len() - rest.len())
}

/// The value of the env file's `config.service.auth=` line (the last one, as Docker reads it),
/// or `None` when it has none.
pub(super) fn env_token(bytes: &[u8]) -> Option<&[u8]> {
    lines(bytes)
        .iter()
        .enumerate()
        .filter_map(|(i, line)| {
            env_prefix(i == 0, line.body)
                .1
                .strip_prefix(DOCKER_ENV_AUTH.as_bytes())
        })
        .next_back()
}

/// The env file with every `config.service.auth=` line replaced in place by `auth_line` (its
/// indentation, a byte-order mark and its line ending kept), or `auth_line` appended when there
/// is none; every other byte as it was.
pub(super) fn env_with(bytes: &[u8], auth_line: &str) -> Vec<u8> {
    let lines = lines(bytes);
    let mut out = Vec::with_capacity(bytes.len() + auth_line.len() + 2);
    let mut replaced = false;
    for (i, line) in lines.iter().enumerate() {
        let (prefix, rest) = env_prefix(i == 0, line.body);
        if rest.starts_with(DOCKER_ENV_AUTH.as_bytes()) {
            out.extend_from_slice(prefix);
            out.extend_from_slice(auth_line.as_bytes());
            replaced = true;
        } else {
            out.extend_from_slice(line.body);
        }
        out.extend_from_slice(line.end);
    }
    if !replaced {
        // The file's own line ending: CRLF when its lines end so.
        let crlf = lines.first().is_some_and(|line| line.end == b"\r\n");
        let newline: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        if lines.last().is_some_and(|line| line.end.is_empty()) {
            out.extend_from_slice(newline);
        }
        out.extend_from_slice(auth_line.as_bytes());
        out.extend_from_slice(newline);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lines_keep_their_endings() {
        let file =
            b"\xEF\xBB\xBF# gateway\r\nA=1\r\n\r\n  config.service.auth=GatewayKey old\r\nB=2";
        assert_eq!(env_token(file), Some(&b"GatewayKey old"[..]));
        assert_eq!(
            env_with(file, "config.service.auth=NEW"),
            b"\xEF\xBB\xBF# gateway\r\nA=1\r\n\r\n  config.service.auth=NEW\r\nB=2".to_vec()
        );
        // None: appended with the file's line ending, after a last line without one.
        assert_eq!(env_token(b"A=1\r\nB=2"), None);
        assert_eq!(
            env_with(b"A=1\r\nB=2", "config.service.auth=NEW"),
            b"A=1\r\nB=2\r\nconfig.service.auth=NEW\r\n".to_vec()
        );
        assert_eq!(
            env_with(b"", "config.service.auth=NEW"),
            b"config.service.auth=NEW\n".to_vec()
        );
        // The last of several is the one Docker reads; all are replaced.
        let twice = b"config.service.auth=one\nconfig.service.auth=two\n";
        assert_eq!(env_token(twice), Some(&b"two"[..]));
        assert_eq!(
            env_with(twice, "config.service.auth=NEW"),
            b"config.service.auth=NEW\nconfig.service.auth=NEW\n".to_vec()
        );
        // A BOM on the first line is Docker's to drop, and the line matches.
        assert_eq!(
            env_token(b"\xEF\xBB\xBFconfig.service.auth=x\n"),
            Some(&b"x"[..])
        );
        // Not the variable: another name, a comment, a space before '='.
        for other in [
            &b"config.service.authority=x\n"[..],
            b"# config.service.auth=x\n",
            b"config.service.auth =x\n",
        ] {
            assert_eq!(env_token(other), None);
        }
    }
}
