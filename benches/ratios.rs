//! Ratios to the SHA-512 floor, measured interleaved: every operation is timed in alternation
//! with the floor (two compression calls), round after round (80 rounds of 20,000 calls), and the
//! ratio of the medians is reported, with the ratio of the 10th percentiles beside it (the
//! fastest rounds, those the machine's noise touched least). On a noisy machine the floor and the
//! operation see the same noise, so the ratio holds where absolute times drift.
//!
//! `cargo bench --bench ratios` prints every row; `cargo bench --bench ratios -- cache` the
//! verdict cache's alone. Uncached verification is printed twice, as a library user gets it
//! (`Verifier::new`, no cache setting) and with the cache turned off (`with_cache(0)`): both are
//! the path every first sight of a token and every forgery takes, and neither may slow down
//! unnoticed. A benchmark, not a test: it prints, it never fails. To compare two commits with one
//! harness, see `benches/commits.sh` and docs/development.md.

use std::hint::black_box;
use std::time::Instant;

use apim_sas::chrono::{DateTime, TimeDelta, TimeZone, Utc};
use apim_sas::{Format, GatewayKey, KeyType, Policy, Signer, Verifier};

const ROUNDS: usize = 80;
const ITERS: usize = 20_000;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, 21, 0, 44, 0).unwrap()
}

fn key(i: usize) -> GatewayKey {
    GatewayKey::new(format!(
        "bench-key-{i:06}-pXeTVcmdbU9XxH6fPcPlq8Y9D9G3Cdo5Eh2nMSgKj/DWqeSFFX"
    ))
    .unwrap()
}

fn floor() {
    let mut state = black_box([0x6a09e667f3bcc908u64; 8]);
    let block = black_box([0x5au8; 128]);
    sha2::block_api::compress512(&mut state, &[block]);
    sha2::block_api::compress512(&mut state, &[block]);
    black_box(state);
}

fn time(f: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..ITERS {
        f();
    }
    start.elapsed().as_nanos() as f64 / ITERS as f64
}

fn median(v: Vec<f64>) -> f64 {
    percentile(v, 50)
}

/// The `p`th percentile of `v` (nearest rank).
fn percentile(mut v: Vec<f64>, p: usize) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[(v.len() * p / 100).min(v.len() - 1)]
}

fn ratio(name: &str, op: &mut dyn FnMut()) -> f64 {
    let (mut base, mut measured) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            base.push(time(&mut floor));
            measured.push(time(op));
        } else {
            measured.push(time(op));
            base.push(time(&mut floor));
        }
    }
    let (b10, m10) = (
        percentile(base.clone(), 10),
        percentile(measured.clone(), 10),
    );
    let (b, m) = (median(base), median(measured));
    println!(
        "{name:<48} {m:>8.1} ns   floor {b:>6.1} ns   ratio {:.3}   p10 ratio {:.3}",
        m / b,
        m10 / b10
    );
    m / b
}

/// Times `a` and `b` in alternation, round after round; the ratio of their medians.
fn pair(name: &str, a: &mut dyn FnMut(), b: &mut dyn FnMut()) -> f64 {
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            ta.push(time(a));
            tb.push(time(b));
        } else {
            tb.push(time(b));
            ta.push(time(a));
        }
    }
    let (ma, mb) = (median(ta), median(tb));
    println!(
        "{name:<48} {ma:>8.1} ns vs {mb:>8.1} ns   ratio {:.3}",
        ma / mb
    );
    ma / mb
}

/// `count` tokens of gateway-000000 (key 0), each with its own expiry.
fn tokens_of_one_gateway(count: usize) -> Vec<String> {
    let signer = Signer::new("gateway-000000", &key(0)).unwrap();
    (0..count)
        .map(|i| {
            signer
                .sign(
                    now() + TimeDelta::days(20) + TimeDelta::minutes(i as i64),
                    Format::Compact,
                )
                .unwrap()
                .to_string()
        })
        .collect()
}

/// The verdict cache: a repeated token against the floor; a miss (more distinct tokens than the
/// capacity, cycling) and a forgery against the same verifier without the cache.
fn cache() {
    let (plain, tokens) = store(1);
    let cached = plain.clone().with_cache(1024);
    let valid = tokens[0].clone();
    ratio("cache/repeated_token (capacity 1,024)", &mut || {
        black_box(cached.verify(black_box(&valid), now()).unwrap().key_type());
    });
    // More distinct tokens than the cache holds, cycling: every verification misses. Both
    // verifiers read the same tokens in the same order, timed in alternation.
    let cycling = tokens_of_one_gateway(4096);
    let small = plain.clone().with_cache(256);
    let (mut i, mut j) = (0, 0);
    pair(
        "cache/miss (4,096 tokens, capacity 256) vs none",
        &mut || {
            i = (i + 1) % cycling.len();
            black_box(
                small
                    .verify(black_box(&cycling[i]), now())
                    .unwrap()
                    .key_type(),
            );
        },
        &mut || {
            j = (j + 1) % cycling.len();
            black_box(
                plain
                    .verify(black_box(&cycling[j]), now())
                    .unwrap()
                    .key_type(),
            );
        },
    );
    let forged = format!("{}AA==", &valid[..valid.len() - 4]);
    pair(
        "cache/forgery, with the cache vs none",
        &mut || {
            black_box(cached.verify(black_box(&forged), now()).is_err());
        },
        &mut || {
            black_box(plain.verify(black_box(&forged), now()).is_err());
        },
    );
}

fn store(n: usize) -> (Verifier, Vec<String>) {
    let mut verifier = Verifier::new(Policy::default());
    let mut tokens = Vec::new();
    for i in 0..n {
        let id = format!("gateway-{i:06}");
        verifier.insert(&id, KeyType::Primary, &key(i)).unwrap();
        verifier
            .insert(&id, KeyType::Secondary, &key(i + n))
            .unwrap();
        if i < 1024 {
            let signer = Signer::new(&id, &key(i)).unwrap();
            tokens.push(
                signer
                    .sign(now() + TimeDelta::days(29), Format::Compact)
                    .unwrap()
                    .to_string(),
            );
        }
    }
    (verifier, tokens)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench` probes benches with --list; nothing to list here.
    }
    if std::env::args().any(|a| a == "cache") {
        cache();
        return;
    }
    let signer = Signer::new("gateway-000000", &key(0)).unwrap();
    let expiry = now() + TimeDelta::days(29);
    ratio("sign/compact", &mut || {
        black_box(signer.sign(black_box(expiry), Format::Compact).unwrap());
    });
    let (verifier, tokens) = store(1);
    let valid = tokens[0].clone();
    ratio("verify/valid_compact (no cache setting)", &mut || {
        black_box(
            verifier
                .verify(black_box(&valid), now())
                .unwrap()
                .key_type(),
        );
    });
    let off = verifier.clone().with_cache(0);
    ratio("verify/valid_compact (with_cache(0))", &mut || {
        black_box(off.verify(black_box(&valid), now()).unwrap().key_type());
    });
    let malformed = valid.replacen("&2026", "&2026-", 1);
    ratio("verify/malformed_expiry", &mut || {
        black_box(verifier.verify(black_box(&malformed), now()).is_err());
    });
    ratio("verify/malformed_garbage", &mut || {
        black_box(
            verifier
                .verify(black_box("not a token at all"), now())
                .is_err(),
        );
    });
    for n in [1usize, 1_000, 100_000] {
        let (verifier, tokens) = store(n);
        let mut i = 0;
        ratio(
            &format!("keystore/{n}/verify (cycling 1,024 tokens)"),
            &mut || {
                i = (i + 1) % tokens.len();
                black_box(
                    verifier
                        .verify(black_box(&tokens[i]), now())
                        .unwrap()
                        .key_type(),
                );
            },
        );
    }
    cache();
}
