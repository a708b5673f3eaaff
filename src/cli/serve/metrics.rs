//! The metrics registry: what `/metrics` exposes, and the handles the request path and the
//! reloader update.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use apim_sas::layer::Verification;
use apim_sas::{ErrorKind, Verifier};
use http::header::ACCEPT;
use http::Request;
use hyper::body::Incoming;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tracing::info;

use super::log::RefusalBudget;
use tracing_appender::non_blocking::ErrorCounter;

/// The codes a presented token can be refused with.
pub(super) const TOKEN_CODES: [ErrorKind; 10] = [
    ErrorKind::EmptyToken,
    ErrorKind::TokenTooLong,
    ErrorKind::MalformedToken,
    ErrorKind::InvalidGatewayId,
    ErrorKind::MalformedExpiry,
    ErrorKind::MalformedSignature,
    ErrorKind::GatewayNotExist,
    ErrorKind::SignatureMismatch,
    ErrorKind::TokenExpired,
    ErrorKind::ExpiryTooFar,
];

/// The metrics registry and the handles the request path and the reloader update.
pub(super) struct Metrics {
    registry: Registry,
    valid: Counter,
    /// One counter per code a token can be refused with, created up front so that each shows
    /// (at 0) from the first scrape and counting needs no lookup in the family's map.
    refused: Vec<(ErrorKind, Counter)>,
    verifications: Family<[(&'static str, &'static str); 1], Counter>,
    duration: Histogram,
    gateways: Gauge,
    pub(super) reload_ok: Counter,
    pub(super) reload_error: Counter,
    last_reload_success: Gauge<f64, AtomicU64>,
    /// Log lines dropped because stderr did not keep up (read from the log's queue at each
    /// scrape), and refusal lines over the budget.
    dropped_stalled: Counter,
    dropped_rate: Counter,
    log_queue: Option<ErrorCounter>,
    dropped_synced: AtomicU64,
    refusal_lines: RefusalBudget,
}

impl Metrics {
    /// `log_queue`: the log's count of dropped lines, `None` without one.
    pub(super) fn new(log_queue: Option<ErrorCounter>) -> Metrics {
        let mut registry = Registry::default();
        let verifications = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let valid = verifications.get_or_create(&[("result", "valid")]).clone();
        let refused = TOKEN_CODES
            .iter()
            .map(|&kind| {
                let counter = verifications.get_or_create(&[("result", kind.as_str())]);
                (kind, counter.clone())
            })
            .collect();
        registry.register(
            "apim_sas_verifications",
            "Requests verified, by result: valid or the error code",
            verifications.clone(),
        );
        // 1 µs to 65 ms: a verification takes microseconds.
        let duration = Histogram::new(exponential_buckets(1e-6, 2.0, 17));
        registry.register(
            "apim_sas_verification_duration_seconds",
            "Time spent finding and verifying a request's token",
            duration.clone(),
        );
        let gateways = Gauge::default();
        registry.register(
            "apim_sas_keystore_gateways",
            "Gateways whose keys are loaded",
            gateways.clone(),
        );
        let reloads = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let reload_ok = reloads.get_or_create(&[("result", "ok")]).clone();
        let reload_error = reloads.get_or_create(&[("result", "error")]).clone();
        registry.register(
            "apim_sas_keystore_reloads",
            "Key reloads after start (SIGHUP or a changed key file), by result",
            reloads,
        );
        let last_reload_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "apim_sas_keystore_last_reload_success_timestamp_seconds",
            "When the keys in use were loaded, in seconds since the Unix epoch",
            last_reload_success.clone(),
        );
        let dropped = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let dropped_stalled = dropped.get_or_create(&[("reason", "stalled")]).clone();
        let dropped_rate = dropped.get_or_create(&[("reason", "rate")]).clone();
        registry.register(
            "apim_sas_log_lines_dropped",
            "Log lines not written: stderr did not keep up (stalled), or refusal lines over the \
             rate limit (rate)",
            dropped,
        );
        Metrics {
            registry,
            valid,
            refused,
            verifications,
            duration,
            gateways,
            reload_ok,
            reload_error,
            last_reload_success,
            dropped_stalled,
            dropped_rate,
            log_queue,
            dropped_synced: AtomicU64::new(0),
            refusal_lines: RefusalBudget::new(),
        }
    }

    pub(super) fn record(&self, verification: &Verification<'_>) {
        self.duration.observe(verification.elapsed.as_secs_f64());
        match verification.result {
            Ok(_) => {
                self.valid.inc();
            }
            Err(error) => {
                let kind = error.kind();
                match self.refused.iter().find(|(k, _)| *k == kind) {
                    Some((_, counter)) => counter.inc(),
                    None => self
                        .verifications
                        .get_or_create(&[("result", kind.as_str())])
                        .inc(),
                };
                if self.refusal_lines.take() {
                    info!(
                        code = error.code(),
                        target = error.target(),
                        path = verification.uri.path(),
                        "refused"
                    );
                } else {
                    self.dropped_rate.inc();
                }
            }
        }
    }

    pub(super) fn loaded(&self, verifier: &Verifier) {
        self.gateways
            .set(i64::try_from(verifier.len()).unwrap_or(i64::MAX));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_reload_success.set(now);
    }

    /// The metrics as Prometheus's text format, or as OpenMetrics to a scraper that asks for it,
    /// with its content type; `None` if encoding failed.
    pub(super) fn exposition(&self, openmetrics: bool) -> Option<(String, &'static str)> {
        if let Some(queue) = &self.log_queue {
            let dropped = u64::try_from(queue.dropped_lines()).unwrap_or(u64::MAX);
            // fetch_max: two scrapes at once count each dropped line once.
            let counted = self.dropped_synced.fetch_max(dropped, Ordering::Relaxed);
            if dropped > counted {
                self.dropped_stalled.inc_by(dropped - counted);
            }
        }
        let mut text = String::with_capacity(4096);
        encode(&mut text, &self.registry).ok()?;
        Some(if openmetrics {
            (
                text,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        } else {
            (
                prometheus_text(&text),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        })
    }
}

/// Whether a request's `Accept` headers list OpenMetrics (at a quality above 0).
pub(super) fn wants_openmetrics(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let is_openmetrics = parts
                .next()
                .is_some_and(|media| media.eq_ignore_ascii_case("application/openmetrics-text"));
            let refused = parts.any(|param| {
                param.split_once('=').is_some_and(|(name, q)| {
                    name.trim().eq_ignore_ascii_case("q")
                        && q.trim().parse::<f64>().is_ok_and(|q| q <= 0.0)
                })
            });
            is_openmetrics && !refused
        })
}

/// prometheus-client's OpenMetrics text, rewritten as Prometheus's text format 0.0.4. For the
/// metrics registered here the two differ in three ways: a counter's `# HELP` and `# TYPE` lines
/// name it as its samples do, with `_total` (0.0.4 parsers match samples to a TYPE line by the
/// exact name, and would take `x_total` for an untyped metric); there are no `# UNIT` lines; and
/// no `# EOF` line ends it. Samples, histograms and gauges are written alike.
pub(super) fn prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(&name).then_some((prefix, name, tail))
        });
        match descriptor {
            Some((prefix, name, tail)) => {
                text.push_str(prefix);
                text.push_str(name);
                text.push_str("_total ");
                text.push_str(tail);
            }
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}
