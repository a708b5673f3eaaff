//! The service's log lines (`tracing`), as text or one JSON object per line, written so that
//! no client can harm the service or its log readers through them:
//! - lines leave the request path: they are handed to a writer thread through a bounded queue
//!   (`tracing-appender`), and when stderr stalls (a pipe nobody reads) the queue fills and
//!   further lines are dropped and counted, never waited for;
//! - the per-refusal line is limited to [`REFUSAL_LINES_PER_SECOND`], the rest counted;
//! - every line is one line for every reader: the characters some readers take for line breaks
//!   or that reorder text (C0 and C1 controls, DEL, U+2028, U+2029, the bidirectional controls)
//!   are escaped in whatever a client sent (`\uXXXX` in JSON, `\u{XXXX}` in text).

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};

use super::LogFormat;

/// The lines queued for stderr before lines are dropped: about a megabyte of refusal lines.
const QUEUED_LINES: usize = 4096;

/// The refusal lines written per second at most; a flood of refusals is counted in the metrics
/// in full and logged in part.
pub(super) const REFUSAL_LINES_PER_SECOND: u64 = 100;

/// Logging in place: keep it for the life of the process (dropping it flushes the queue).
pub(super) struct Logging {
    _worker: WorkerGuard,
    /// How many lines the queue dropped because stderr did not keep up.
    pub(super) dropped: ErrorCounter,
}

/// Sets up the log in `format`; `None` if a subscriber was already set (never, in the binary).
pub(super) fn init_logging(format: LogFormat) -> Option<Logging> {
    let ansi = format == LogFormat::Text && io::stderr().is_terminal();
    let (writer, worker) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("apim-sas-log")
        .finish(Escaping {
            json: format == LogFormat::Json,
            ansi,
            out: io::stderr(),
            buf: Vec::new(),
        });
    let dropped = writer.error_counter();
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_target(false)
        .with_ansi(ansi)
        .with_max_level(tracing::Level::INFO);
    let set = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    set.ok().map(|()| Logging {
        _worker: worker,
        dropped,
    })
}

/// Stderr behind an escaper. Each write is one whole record (the formatter writes a record at
/// once, and the queue hands it over as it was written), so no character is split across writes.
struct Escaping {
    json: bool,
    /// Colours are on (stderr is a terminal): their escape sequences are the formatter's own.
    ansi: bool,
    out: io::Stderr,
    buf: Vec<u8>,
}

impl Write for Escaping {
    fn write(&mut self, record: &[u8]) -> io::Result<usize> {
        self.buf.clear();
        escape(record, self.json, self.ansi, &mut self.buf);
        self.out.write_all(&self.buf)?;
        Ok(record.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Copies `record` into `out` with every character a reader might take for a line break or a
/// reordering escaped: C0 controls but the record's final newline (and ESC where colours are
/// on), DEL, C1 controls (U+0085 among them), U+061C, U+200E, U+200F, U+2028 to U+202E, U+2066
/// to U+2069. In JSON, inside strings (where alone they can occur), `\uXXXX` decodes back to the
/// character.
pub(super) fn escape(record: &[u8], json: bool, ansi: bool, out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(&b) = record.get(i) {
        let next = |k: usize| record.get(i + k).copied();
        let (c, len) = match b {
            b'\n' if i + 1 == record.len() => (None, 1),
            0x1B if ansi => (None, 1),
            0x00..=0x1F | 0x7F => (Some(u32::from(b)), 1),
            0xC2 => match next(1) {
                Some(c @ 0x80..=0x9F) => (Some(u32::from(c)), 2),
                _ => (None, 1),
            },
            0xD8 if next(1) == Some(0x9C) => (Some(0x061C), 2),
            0xE2 => match (next(1), next(2)) {
                (Some(0x80), Some(c @ (0x8E | 0x8F | 0xA8..=0xAE))) => {
                    (Some(0x2000 + u32::from(c - 0x80)), 3)
                }
                (Some(0x81), Some(c @ 0xA6..=0xA9)) => (Some(0x2040 + u32::from(c - 0x80)), 3),
                _ => (None, 1),
            },
            _ => (None, 1),
        };
        match c {
            Some(c) if json => out.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
            Some(c) => out.extend_from_slice(format!("\\u{{{c:x}}}").as_bytes()),
            None => out.extend_from_slice(record.get(i..i + len).unwrap_or_default()),
        }
        i += len;
    }
}

/// The budget of refusal lines: [`REFUSAL_LINES_PER_SECOND`] in each second since start.
pub(super) struct RefusalBudget {
    start: Instant,
    /// The second (since start) being counted, and the lines written in it, packed as
    /// `second << 20 | lines` so that one atomic holds both.
    window: AtomicU64,
}

impl RefusalBudget {
    pub(super) fn new() -> RefusalBudget {
        RefusalBudget {
            start: Instant::now(),
            window: AtomicU64::new(0),
        }
    }

    /// Whether one more refusal line may be written now.
    pub(super) fn take(&self) -> bool {
        let second = self.start.elapsed().as_secs();
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (at, lines) = (current >> 20, current & 0xF_FFFF);
            let next = if at == second {
                if lines >= REFUSAL_LINES_PER_SECOND {
                    return false;
                }
                current + 1
            } else {
                (second << 20) | 1
            };
            match self.window.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str, json: bool) -> String {
        let mut out = Vec::new();
        escape(text.as_bytes(), json, false, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn line_breaks_and_reorderings_are_escaped() {
        let hostile =
            "a\u{85}b\u{2028}c\u{2029}d\u{202e}e\u{9b}f\u{7f}g\u{1}h\u{200f}i\u{2066}j\u{61c}k\n";
        assert_eq!(
            escaped(hostile, true),
            "a\\u0085b\\u2028c\\u2029d\\u202ee\\u009bf\\u007fg\\u0001h\\u200fi\\u2066j\\u061ck\n"
        );
        assert_eq!(
            escaped(hostile, false),
            "a\\u{85}b\\u{2028}c\\u{2029}d\\u{202e}e\\u{9b}f\\u{7f}g\\u{1}h\\u{200f}i\\u{2066}j\\u{61c}k\n"
        );
        // Other characters, those that share a lead byte included, pass as they are.
        let fine = "é ü € — \u{2027} \u{202f} \u{2065} \u{2070} ✓\n";
        assert_eq!(escaped(fine, true), fine);
        // A newline that does not end the record is escaped.
        assert_eq!(escaped("a\nb\n", true), "a\\u000ab\n");
    }

    #[test]
    fn json_escapes_decode_to_the_characters() {
        let record =
            serde_json::to_string(&serde_json::json!({"path": "/v/\u{85}\u{2028}\u{202e}"}))
                .unwrap()
                + "\n";
        let line = escaped(&record, true);
        assert_eq!(line.lines().count(), 1);
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["path"], "/v/\u{85}\u{2028}\u{202e}");
    }

    #[test]
    fn the_budget_holds_per_second() {
        let budget = RefusalBudget::new();
        let granted = (0..250).filter(|_| budget.take()).count() as u64;
        // Within one second (or two, on a slow machine) of the first line.
        assert!(
            granted == REFUSAL_LINES_PER_SECOND || granted == 2 * REFUSAL_LINES_PER_SECOND,
            "{granted}"
        );
    }
}
