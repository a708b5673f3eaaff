//! `verify --batch`: tokens one per line, one JSON line out per token, in input order, on every
//! core.
//!
//! A reader thread cuts the input into batches of lines (bounded: a line of any length is
//! skipped, not stored), workers verify batches in parallel and format their JSON lines, and the
//! calling thread writes finished batches in input order. Channels are bounded, so memory stays
//! flat whatever the input size.

use std::collections::BTreeMap;
use std::io::{self, BufRead, IsTerminal, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use apim_sas::chrono::{DateTime, Utc};
use apim_sas::{human_duration, ErrorKind, UntrustedToken, Verified, Verifier, MAX_TOKEN_LEN};

use super::failure::Problem;
use super::input::{next_line, too_long, trim, Line, BOM};
use super::{print, values};

/// Lines per batch: large enough to amortise channel traffic, small enough to keep both cores
/// fed and memory flat.
const BATCH_LINES: usize = 2048;

enum Item {
    /// A line's bytes in the batch's buffer.
    Span(usize, usize),
    /// A line longer than a token can be.
    TooLong,
}

struct Batch {
    seq: u64,
    first_line: u64,
    data: Vec<u8>,
    items: Vec<Item>,
}

struct Done {
    seq: u64,
    out: Vec<u8>,
    refused: u64,
    lines: u64,
}

/// What a batch run saw.
pub(crate) struct Summary {
    pub(crate) lines: u64,
    pub(crate) refused: u64,
}

/// Why a batch stopped before the end of its input.
pub(crate) enum Stop {
    /// The input could not be read.
    Read(io::Error),
    /// The results could not be written (a full disk, say; not a closed pipe).
    Write(io::Error),
}

fn read_batches(mut input: impl BufRead, batches: SyncSender<Batch>) -> io::Result<()> {
    let mut line = Vec::new();
    let mut next_line_no = 1u64;
    for seq in 0.. {
        let mut batch = Batch {
            seq,
            first_line: next_line_no,
            data: Vec::with_capacity(BATCH_LINES * 128),
            items: Vec::with_capacity(BATCH_LINES),
        };
        while batch.items.len() < BATCH_LINES {
            let read = next_line(&mut input, &mut line)?;
            if seq == 0 && batch.items.is_empty() && line.starts_with(BOM) {
                // A file written by a Windows tool: the mark is no part of the first token.
                line.drain(..BOM.len());
            }
            match read {
                None => break,
                Some(Line::TooLong) => batch.items.push(Item::TooLong),
                // Too long once trimmed: refused without being kept, so that a batch holds at
                // most BATCH_LINES tokens of at most 1024 bytes.
                Some(Line::Text) if trim(&line).len() > MAX_TOKEN_LEN => {
                    batch.items.push(Item::TooLong)
                }
                Some(Line::Text) => {
                    let start = batch.data.len();
                    batch.data.extend_from_slice(trim(&line));
                    batch.items.push(Item::Span(start, batch.data.len()));
                }
            }
        }
        if batch.items.is_empty() {
            break;
        }
        next_line_no += batch.items.len() as u64;
        let last = batch.items.len() < BATCH_LINES;
        if batches.send(batch).is_err() || last {
            break;
        }
    }
    Ok(())
}

fn verify_batch(verifier: &Verifier, batch: Batch, now: DateTime<Utc>) -> Done {
    let mut out = Vec::with_capacity(batch.items.len() * 192);
    let mut refused = 0;
    for (i, item) in batch.items.iter().enumerate() {
        let result = match *item {
            Item::Span(start, end) => {
                let bytes = batch.data.get(start..end).unwrap_or_default();
                verdict(verifier, bytes, now)
            }
            Item::TooLong => Err(too_long()),
        };
        refused += u64::from(result.is_err());
        print::batch_line(&mut out, batch.first_line + i as u64, &result, now);
    }
    Done {
        seq: batch.seq,
        out,
        refused,
        lines: batch.items.len() as u64,
    }
}

fn work(
    verifier: &Verifier,
    batches: Arc<Mutex<Receiver<Batch>>>,
    done: SyncSender<Done>,
    now: DateTime<Utc>,
) {
    loop {
        // Hold the lock only to take a batch.
        let next = batches
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .recv();
        let Ok(batch) = next else { return };
        if done.send(verify_batch(verifier, batch, now)).is_err() {
            return;
        }
    }
}

fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} {human_pos} tokens verified ({rate})")
    {
        // A whole number of tokens a second, as the summary line prints it (indicatif's own
        // `{per_sec}` shows four decimals).
        bar.set_style(style.with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}", whole_rate(state.per_sec()));
            },
        ));
    }
    Some(bar)
}

/// `1234567.8` tokens a second as `1,234,568 tokens/s`.
fn whole_rate(per_sec: f64) -> String {
    let whole = if per_sec.is_finite() && per_sec > 0.0 {
        per_sec.round() as u64
    } else {
        0
    };
    format!("{} tokens/s", indicatif::HumanCount(whole))
}

/// Verifies every line of `input`, writing JSON lines to stdout in input order. Unless `quiet`,
/// a summary line (and, on a terminal, a progress bar) goes to stderr.
///
/// A closed stdout (`| head -1`) stops the run quietly, as Unix tools do: the workers and the
/// reader stop at their next hand-over, and no summary is written.
pub(crate) fn run(
    verifier: &Verifier,
    input: Box<dyn BufRead + Send>,
    now: DateTime<Utc>,
    quiet: bool,
) -> Result<Summary, Stop> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (batch_tx, batch_rx) = mpsc::sync_channel::<Batch>(workers * 2);
    let (done_tx, done_rx) = mpsc::sync_channel::<Done>(workers * 2);
    // Shared by the workers alone: once they have all stopped, the reader's next hand-over
    // fails and it stops too.
    let batch_rx = Arc::new(Mutex::new(batch_rx));
    let started = Instant::now();
    let bar = if quiet { None } else { progress_bar() };

    let mut summary = Summary {
        lines: 0,
        refused: 0,
    };
    let mut closed = false;
    let outcome = std::thread::scope(|scope| -> Result<(), Stop> {
        let reader = scope.spawn(move || read_batches(input, batch_tx));
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let batch_rx = Arc::clone(&batch_rx);
            scope.spawn(move || work(verifier, batch_rx, done_tx, now));
        }
        drop(done_tx);
        drop(batch_rx);

        let stdout = io::stdout();
        let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
        let mut pending = BTreeMap::new();
        let mut next = 0u64;
        let mut written = Ok(());
        'results: for done in done_rx {
            pending.insert(done.seq, done);
            while let Some(done) = pending.remove(&next) {
                summary.lines += done.lines;
                summary.refused += done.refused;
                written = out.write_all(&done.out);
                if written.is_err() {
                    // Dropping the receiver stops the workers, and then the reader.
                    break 'results;
                }
                if let Some(bar) = &bar {
                    bar.inc(done.lines);
                }
                next += 1;
            }
        }
        let written = written.and_then(|()| out.flush());
        drop(out);
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the reader thread failed")));
        match written {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                closed = true;
                Ok(())
            }
            Err(e) => Err(Stop::Write(e)),
            Ok(()) => read.map_err(Stop::Read),
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    outcome?;
    if quiet || closed {
        return Ok(summary);
    }

    let seconds = started.elapsed().as_secs_f64();
    let rate = if seconds > 0.0 {
        summary.lines as f64 / seconds
    } else {
        0.0
    };
    eprintln!(
        "apim-sas: {} tokens, {} valid, {} refused, in {:.3} s ({})",
        summary.lines,
        summary.lines - summary.refused,
        summary.refused,
        seconds,
        whole_rate(rate)
    );
    Ok(summary)
}

/// One token's verdict, as the command reports it (single or batch).
pub(crate) fn verdict<'v>(
    verifier: &'v Verifier,
    bytes: &[u8],
    now: DateTime<Utc>,
) -> Result<Verified<'v>, Problem> {
    verifier
        .verify_bytes(bytes, now)
        .map_err(|e| expired_when(e.into(), bytes, now))
}

/// `TokenExpired` says when the token expired. Lifetime is checked after the signature, so a
/// token refused as expired is authentic and its expiry can be told.
fn expired_when(problem: Problem, text: &[u8], now: DateTime<Utc>) -> Problem {
    if problem.kind() != ErrorKind::TokenExpired {
        return problem;
    }
    match UntrustedToken::parse_bytes(text) {
        Ok(token) => {
            let message = format!(
                "{} (at {}, {} ago)",
                problem.message(),
                values::rfc3339(token.expiry()),
                human_duration(token.expiry().signed_duration_since(now)),
            );
            Problem::new(problem.kind(), problem.target(), message)
        }
        Err(_) => problem,
    }
}

#[cfg(test)]
mod tests {
    use super::whole_rate;

    /// The progress bar and the summary print a whole number of tokens a second.
    #[test]
    fn rates_are_whole() {
        assert_eq!(whole_rate(1_234_567.8), "1,234,568 tokens/s");
        assert_eq!(whole_rate(0.4), "0 tokens/s");
        assert_eq!(whole_rate(f64::NAN), "0 tokens/s");
        assert_eq!(whole_rate(f64::INFINITY), "0 tokens/s");
    }
}
