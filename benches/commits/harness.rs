//! One commit's sign and uncached verify against the SHA-512 floor, through the public API only,
//! so that the same source builds against any commit: `benches/commits.sh` builds it once per
//! commit, with the same release profile, and runs the builds alternately.
//!
//! Each round times `ITERS` calls of the floor (two calls of `sha2::block_api::compress512`) and
//! `ITERS` calls of the operation, the order alternating from round to round; the ratio of the
//! 10th percentiles (the rounds the machine's noise touched least) is what to compare, the ratio
//! of the medians is printed beside it.
//!
//! `harness [ROUNDS=80] [ITERS=20000] [OPS=verify,sign]`; prints one line per operation.

use std::hint::black_box;
use std::time::Instant;

use apim_sas::chrono::{DateTime, TimeDelta, TimeZone, Utc};
use apim_sas::{Format, GatewayKey, KeyType, Policy, Signer, Verifier};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, 21, 0, 44, 0).unwrap()
}

fn floor() {
    let mut state = black_box([0x6a09e667f3bcc908u64; 8]);
    let block = black_box([0x5au8; 128]);
    sha2::block_api::compress512(&mut state, &[block]);
    sha2::block_api::compress512(&mut state, &[block]);
    black_box(state);
}

/// Nanoseconds per call of `f`, over `iters` calls.
fn time(iters: usize, f: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

/// The `p`th percentile of `v` (nearest rank).
fn percentile(v: &mut [f64], p: usize) -> f64 {
    v.sort_by(f64::total_cmp);
    v[(v.len() * p / 100).min(v.len() - 1)]
}

fn ratio(name: &str, rounds: usize, iters: usize, op: &mut dyn FnMut()) {
    let (mut base, mut measured) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            base.push(time(iters, &mut floor));
            measured.push(time(iters, op));
        } else {
            measured.push(time(iters, op));
            base.push(time(iters, &mut floor));
        }
    }
    let (b10, m10) = (percentile(&mut base, 10), percentile(&mut measured, 10));
    let (b50, m50) = (percentile(&mut base, 50), percentile(&mut measured, 50));
    println!(
        "{name:<8} p10 {:.3}   median {:.3}   ({m10:.1} ns, floor {b10:.1} ns at p10)",
        m10 / b10,
        m50 / b50
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds = args.next().map_or(80, |a| a.parse().expect("ROUNDS"));
    let iters = args.next().map_or(20_000, |a| a.parse().expect("ITERS"));
    let ops = args.next().unwrap_or_else(|| "verify,sign".into());
    let runs = |op: &str| ops.split(',').any(|o| o == op);

    let key =
        GatewayKey::new("bench-key-000000-pXeTVcmdbU9XxH6fPcPlq8Y9D9G3Cdo5Eh2nMSgKj/DWqeSFFX")
            .unwrap();
    let signer = Signer::new("gateway-000000", &key).unwrap();
    let expiry = now() + TimeDelta::days(29);
    let token = signer.sign(expiry, Format::Compact).unwrap().to_string();
    // A verifier as a library user makes one: no cache setting.
    let mut verifier = Verifier::new(Policy::default());
    verifier
        .insert("gateway-000000", KeyType::Primary, &key)
        .unwrap();

    if runs("verify") {
        ratio("verify", rounds, iters, &mut || {
            black_box(
                verifier
                    .verify(black_box(&token), now())
                    .unwrap()
                    .key_type(),
            );
        });
    }
    if runs("sign") {
        ratio("sign", rounds, iters, &mut || {
            black_box(signer.sign(black_box(expiry), Format::Compact).unwrap());
        });
    }
}
