//! Constant time where it matters: refusing a forged signature that differs from the right one
//! in its first character takes as long as refusing one that differs in its last.
//!
//! Many interleaved samples (the order of the two classes shuffled in every round, so that drift
//! and noise fall on both alike), compared with Welch's t-test; |t| must stay below 4.5 (the
//! threshold dudect uses). Ignored by `cargo test` (it wants a release build and a quiet core);
//! `.ci/run` runs it: `cargo test --release --test it timing:: -- --ignored --nocapture`.

use std::hint::black_box;
use std::time::Instant;

use apim_sas::chrono::{TimeDelta, TimeZone, Utc};
use apim_sas::{Format, GatewayKey, KeyType, Policy, Signer, Verifier};

/// Replaces the signature character at `i` with another base64 character that keeps the
/// encoding canonical, so that both forgeries reach the MAC comparison.
fn forge(token: &str, i: usize) -> String {
    let sig_start = token.len() - 88;
    let at = sig_start + i;
    let old = token.as_bytes()[at];
    // In the last data character only the top 2 bits are data: flip one of them.
    let new = if i == 85 {
        if old == b'A' {
            b'g'
        } else {
            b'A'
        }
    } else if old == b'A' {
        b'B'
    } else {
        b'A'
    };
    let mut bytes = token.as_bytes().to_vec();
    bytes[at] = new;
    String::from_utf8(bytes).unwrap()
}

fn welch_t(a: &[f64], b: &[f64]) -> f64 {
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
    let var =
        |x: &[f64], m: f64| x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64;
    let (ma, mb) = (mean(a), mean(b));
    let (va, vb) = (var(a, ma), var(b, mb));
    (ma - mb) / (va / a.len() as f64 + vb / b.len() as f64).sqrt()
}

/// Drops the samples above the pooled 90th percentile from both classes (interrupts, migrations
/// are noise, not signal); one cutoff for both, as dudect crops, so that cropping cannot itself
/// make the classes differ.
fn cropped(a: Vec<f64>, b: Vec<f64>) -> (Vec<f64>, Vec<f64>) {
    let mut pooled: Vec<f64> = a.iter().chain(&b).copied().collect();
    pooled.sort_by(|x, y| x.total_cmp(y));
    let cutoff = pooled[pooled.len() * 9 / 10];
    let keep = |v: Vec<f64>| v.into_iter().filter(|&x| x <= cutoff).collect::<Vec<_>>();
    (keep(a), keep(b))
}

#[test]
#[ignore = "timing: run in release with --ignored"]
fn forged_signatures_are_refused_in_constant_time() {
    let now = Utc.with_ymd_and_hms(2026, 4, 21, 0, 0, 0).unwrap();
    let key = GatewayKey::new("timing-key").unwrap();
    let mut verifier = Verifier::new(Policy::default());
    verifier.insert("gw1", KeyType::Primary, &key).unwrap();
    let token = Signer::new("gw1", &key)
        .unwrap()
        .sign(now + TimeDelta::days(1), Format::Compact)
        .unwrap()
        .to_string();
    println!("without the verdict cache:");
    check(&verifier, &token, now);
    // With the cache, and the valid token in it: a forgery is still refused in the same time
    // wherever it differs.
    let cached = verifier.clone().with_cache(1024);
    assert!(cached.verify(&token, now).is_ok());
    println!("with the verdict cache, the valid token cached:");
    check(&cached, &token, now);
}

fn check(verifier: &Verifier, token: &str, now: apim_sas::chrono::DateTime<Utc>) {
    let first = forge(token, 0);
    let last = forge(token, 85);
    for forged in [&first, &last] {
        assert_eq!(
            verifier.verify(forged, now).unwrap_err().code(),
            "SignatureMismatch"
        );
    }

    const ROUNDS: usize = 20_000;
    const BATCH: usize = 16;
    // Both classes are verified from the same buffer, copied in before each sample: where a
    // token's bytes sit (their alignment to cache lines) must not be what the test measures.
    let mut scratch = String::with_capacity(256);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut runs = Vec::new();
    for run in 0..3 {
        let (mut a, mut b) = (Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS));
        for _ in 0..ROUNDS {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let order: [(&String, bool); 2] = if seed & 1 == 0 {
                [(&first, true), (&last, false)]
            } else {
                [(&last, false), (&first, true)]
            };
            for (token, is_first) in order {
                scratch.clear();
                scratch.push_str(token);
                let start = Instant::now();
                for _ in 0..BATCH {
                    black_box(verifier.verify(black_box(&scratch), now).is_err());
                }
                let ns = start.elapsed().as_nanos() as f64 / BATCH as f64;
                if is_first {
                    a.push(ns)
                } else {
                    b.push(ns)
                }
            }
        }
        let (a, b) = cropped(a, b);
        let t = welch_t(&a, &b);
        let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
        println!(
            "run {run}: first-character forgery {:.1} ns, last-character forgery {:.1} ns, t = {t:.2}",
            mean(&a),
            mean(&b)
        );
        runs.push(t);
    }
    for t in &runs {
        assert!(
            t.abs() < 4.5,
            "timing depends on where the signature differs: t = {runs:?}"
        );
    }

    // The harness can see a difference when there is one: a forgery (one HMAC) against a token
    // for an unknown gateway (no HMAC) must give a large |t|.
    let unknown = first.replacen("gw1", "gw2", 1);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..2_000 {
        for (token, into) in [(&first, &mut a), (&unknown, &mut b)] {
            scratch.clear();
            scratch.push_str(token);
            let start = Instant::now();
            for _ in 0..BATCH {
                black_box(verifier.verify(black_box(&scratch), now).is_err());
            }
            into.push(start.elapsed().as_nanos() as f64 / BATCH as f64);
        }
    }
    let (a, b) = cropped(a, b);
    let t = welch_t(&a, &b);
    println!("sensitivity: forged vs unknown gateway, t = {t:.1}");
    assert!(
        t.abs() > 4.5,
        "the harness does not see a real difference: t = {t}"
    );
}
