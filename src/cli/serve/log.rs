//! The service's log lines (`tracing`), as text or one JSON object per line.

use std::io::IsTerminal;

use super::LogFormat;

pub(super) fn init_logging(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_max_level(tracing::Level::INFO);
    // A subscriber already set (never, in the binary) keeps logging where it did.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
