//! Reading tokens from arguments, stdin and files: trimmed, and bounded, so that a line of any
//! size is refused (`TokenTooLong`) without being held in memory. A leading UTF-8 byte-order mark
//! is dropped.

use std::borrow::Cow;
use std::io::{self, BufRead, Read};

use apim_sas::{ErrorKind, MAX_TOKEN_LEN};

use super::failure::{Failure, Problem};

/// How much of one line is kept: a token (1024 bytes) with generous surrounding whitespace.
/// Anything longer is too long whatever it holds, and is skipped, not stored.
pub(crate) const LINE_LIMIT: usize = 16 * 1024;

const _: () = assert!(LINE_LIMIT > MAX_TOKEN_LEN);

/// The refusal of input longer than a token can be, whose bytes were not kept to be parsed:
/// the same code, target and message as the library's.
pub(crate) fn too_long() -> Problem {
    Problem::new(
        ErrorKind::TokenTooLong,
        "token",
        "token: longer than 1024 bytes",
    )
}

/// The UTF-8 byte-order mark that Windows tools write at the start of a text file.
pub(crate) const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Drops a leading UTF-8 byte-order mark.
pub(crate) fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(BOM).unwrap_or(bytes)
}

/// Trims surrounding ASCII whitespace (a trailing newline, a `\r`).
pub(crate) fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}
/// Opens `path` for reading without blocking, and refuses anything but a regular file before a
/// byte is read: a FIFO's open would wait for a writer, and a device never ends. (`O_NONBLOCK`,
/// which rustix names with the platform's value; reads of a regular file ignore it.)
pub(crate) fn open_regular(path: &std::path::Path) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    let file = options.open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(io::Error::other(if kind.is_dir() {
            "a directory, not a file"
        } else {
            "not a regular file (a FIFO, a socket or a device); refused without reading it"
        }));
    }
    Ok(file)
}

/// What a bounded read found.
pub(crate) enum Read1 {
    /// The text, at most [`LINE_LIMIT`] bytes.
    Text(Vec<u8>),
    /// More than [`LINE_LIMIT`] bytes: refused as `TokenTooLong`.
    TooLong,
}

/// Reads all of `reader`, keeping at most [`LINE_LIMIT`] bytes (the rest is drained, not kept).
pub(crate) fn read_bounded(mut reader: impl Read) -> io::Result<Read1> {
    let mut kept = Vec::new();
    (&mut reader)
        .take(LINE_LIMIT as u64 + 1)
        .read_to_end(&mut kept)?;
    if kept.len() <= LINE_LIMIT {
        return Ok(Read1::Text(kept));
    }
    io::copy(&mut reader, &mut io::sink())?;
    Ok(Read1::TooLong)
}

/// One line of a batch.
pub(crate) enum Line {
    /// The line's bytes (untrimmed, without the newline).
    Text,
    /// Longer than [`LINE_LIMIT`]: its bytes were skipped.
    TooLong,
}

/// Reads the next line into `buf` (cleared first), never keeping more than [`LINE_LIMIT`] bytes
/// of it. `None` at the end of input.
pub(crate) fn next_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Option<Line>> {
    buf.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break;
        }
        any = true;
        let (part, used, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], i + 1, true),
            None => (chunk, chunk.len(), false),
        };
        if !too_long {
            if buf.len() + part.len() > LINE_LIMIT {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(part);
            }
        }
        reader.consume(used);
        if done {
            break;
        }
    }
    Ok(match (any, too_long) {
        (false, _) => None,
        (true, true) => Some(Line::TooLong),
        (true, false) => Some(Line::Text),
    })
}

/// The token of `verify`, `inspect` and `convert`, and where it came from (to explain a
/// refusal that looks like a slip of the user's).
pub(crate) struct TokenInput<'a> {
    text: Result<Cow<'a, [u8]>, Problem>,
    origin: Origin<'a>,
}

enum Origin<'a> {
    /// The command-line argument.
    Arg(&'a str),
    /// Stdin.
    Stdin,
    /// A file of a form (`inspect --file`), read by that form's reader.
    File,
}

/// The token of `verify`, `inspect` and `convert`: the argument, or stdin for `-` or none;
/// trimmed either way. Over-long input is the token's problem (`TokenTooLong`, exit 1); stdin
/// that cannot be read is the invocation's (`UnreadableInput`, exit 2).
pub(crate) fn token_text(arg: Option<&str>) -> Result<TokenInput<'_>, Failure> {
    let (text, origin) = match arg {
        Some(text) if text != "-" => (Ok(Cow::Borrowed(trim(text.as_bytes()))), Origin::Arg(text)),
        _ => match read_bounded(io::stdin().lock()) {
            Ok(Read1::Text(bytes)) => (
                Ok(Cow::Owned(trim(strip_bom(&bytes)).to_vec())),
                Origin::Stdin,
            ),
            Ok(Read1::TooLong) => (Err(too_long()), Origin::Stdin),
            Err(e) => {
                return Err(Failure::invocation(
                    ErrorKind::UnreadableInput,
                    "token",
                    format!("reading the token from stdin: {e}"),
                ))
            }
        },
    };
    Ok(TokenInput { text, origin })
}

impl<'a> TokenInput<'a> {
    /// The token a file held (`None`: it holds none, `EmptyToken`), as its form reads it.
    pub(crate) fn from_file(text: Option<Vec<u8>>, what: impl Into<String>) -> TokenInput<'a> {
        TokenInput {
            text: text
                .map(Cow::Owned)
                .ok_or_else(|| Problem::new(ErrorKind::EmptyToken, "token", what)),
            origin: Origin::File,
        }
    }

    /// Reads the token with `read` (a parser or a verifier). A refusal keeps its code and
    /// target, and its message gains a hint when the input looks like a slip: an argument that
    /// names a file (`inspect token.txt`), or several lines on stdin (`--batch` reads those).
    pub(crate) fn read<'s, T, E: Into<Problem>>(
        &'s self,
        read: impl FnOnce(&'s [u8]) -> Result<T, E>,
    ) -> Result<T, Problem> {
        let problem = match &self.text {
            Ok(text) => match read(text) {
                Ok(value) => return Ok(value),
                Err(e) => e.into(),
            },
            Err(problem) => Problem::new(problem.kind(), problem.target(), problem.message()),
        };
        match self.hint(&problem) {
            Some(hint) => Err(Problem::new(
                problem.kind(),
                problem.target(),
                format!("{}; {hint}", problem.message()),
            )),
            None => Err(problem),
        }
    }

    fn hint(&self, problem: &Problem) -> Option<String> {
        match self.origin {
            Origin::Arg(arg) if std::path::Path::new(arg).is_file() => Some(format!(
                "'{arg}' is a file: to read the token in it, use - < {arg}"
            )),
            // `verify gw1&2026…&sig` unquoted: the shell ends the command at the first `&` and
            // runs it in the background, so only the id arrives.
            Origin::Arg(arg)
                if problem.kind() == ErrorKind::MalformedToken
                    && !arg.trim().is_empty()
                    && !arg.contains(['&', '=']) =>
            {
                Some(
                    "it has no '&': the shell splits an unquoted token at each '&'; quote it: \
                     'gw1&yyyyMMddHHmm&signature'"
                        .to_owned(),
                )
            }
            Origin::Arg(_) => None,
            Origin::File => None,
            Origin::Stdin => {
                let text = self.text.as_ref().ok()?;
                let lines = text
                    .split(|&b| b == b'\n')
                    .filter(|line| !trim(line).is_empty())
                    .count();
                (lines > 1).then(|| {
                    format!(
                        "stdin holds {lines} lines but one token was expected \
                         (verify --batch reads one token per line)"
                    )
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_bounded() {
        let long = vec![b'a'; LINE_LIMIT * 3];
        let mut input = Vec::new();
        input.extend_from_slice(b"one\r\n");
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\n\nlast");
        let mut reader = io::BufReader::with_capacity(1000, &input[..]);
        let mut buf = Vec::new();
        assert!(matches!(
            next_line(&mut reader, &mut buf).unwrap(),
            Some(Line::Text)
        ));
        assert_eq!(trim(&buf), b"one");
        assert!(matches!(
            next_line(&mut reader, &mut buf).unwrap(),
            Some(Line::TooLong)
        ));
        assert!(buf.len() <= LINE_LIMIT);
        assert!(matches!(
            next_line(&mut reader, &mut buf).unwrap(),
            Some(Line::Text)
        ));
        assert_eq!(buf, b"");
        assert!(matches!(
            next_line(&mut reader, &mut buf).unwrap(),
            Some(Line::Text)
        ));
        assert_eq!(buf, b"last");
        assert!(next_line(&mut reader, &mut buf).unwrap().is_none());
    }
}
