//! Criterion benches: the SHA-512 floor beside signing, verifying and refusing.
//!
//! The floor is what HMAC-SHA512 cannot avoid for a short message once the key's inner and outer
//! states are precomputed: two calls of the SHA-512 compression function. Every other bench is
//! read as a ratio to it (`python3 benches/ratios.py` after `cargo bench --bench verify`).

use std::hint::black_box;

use apim_sas::chrono::{DateTime, TimeDelta, TimeZone, Utc};
use apim_sas::{Format, GatewayKey, KeyType, Policy, Signer, UntrustedToken, Verifier};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, 21, 0, 44, 0).unwrap()
}

fn key(i: usize) -> GatewayKey {
    GatewayKey::new(format!(
        "bench-key-{i:06}-pXeTVcmdbU9XxH6fPcPlq8Y9D9G3Cdo5Eh2nMSgKj/DWqeSFFXDdmpz5"
    ))
    .unwrap()
}

fn id(i: usize) -> String {
    format!("gateway-{i:06}")
}

/// A verifier of `n` gateways (primary and secondary keys), and a valid compact token for each of
/// the first `tokens` gateways, 29 days ahead.
fn store(n: usize, tokens: usize) -> (Verifier, Vec<String>) {
    let mut verifier = Verifier::new(Policy::default());
    let mut minted = Vec::new();
    for i in 0..n {
        let id = id(i);
        verifier.insert(&id, KeyType::Primary, &key(i)).unwrap();
        verifier
            .insert(&id, KeyType::Secondary, &key(i + n))
            .unwrap();
        if i < tokens {
            let signer = Signer::new(&id, &key(i)).unwrap();
            minted.push(
                signer
                    .sign(now() + TimeDelta::days(29), Format::Compact)
                    .unwrap()
                    .to_string(),
            );
        }
    }
    (verifier, minted)
}

fn floor(c: &mut Criterion) {
    // Two compressions over blocks shaped like HMAC's: the inner (id, "\n", O form, padding)
    // and the outer (64-byte hash, padding), from a precomputed state.
    let start = [0x6a09e667f3bcc908u64; 8];
    let block = [0x5au8; 128];
    c.bench_function("floor/two_sha512_compressions", |b| {
        b.iter(|| {
            let mut state = black_box(start);
            sha2::block_api::compress512(&mut state, black_box(&[block]));
            sha2::block_api::compress512(&mut state, black_box(&[block]));
            state
        })
    });
}

/// The hmac crate's keyed state, cloned per message: what the library builds on.
fn hmac_reference(c: &mut Criterion) {
    use hmac::{KeyInit, Mac};
    let keyed = hmac::Hmac::<sha2::Sha512>::new_from_slice(b"bench-key").unwrap();
    c.bench_function("floor/hmac_crate_clone_update_finalize", |b| {
        b.iter(|| {
            let mut mac = black_box(&keyed).clone();
            mac.update(b"gateway-000000\n2026-05-20T00:44:00.0000000Z");
            mac.finalize().into_bytes()
        })
    });
}

fn sign(c: &mut Criterion) {
    let signer = Signer::new("gw1", &key(0)).unwrap();
    let expiry = now() + TimeDelta::days(29);
    c.bench_function("sign/compact", |b| {
        b.iter(|| signer.sign(black_box(expiry), Format::Compact).unwrap())
    });
    c.bench_function("sign/uid", |b| {
        b.iter(|| signer.sign(black_box(expiry), Format::Uid).unwrap())
    });
}

fn verify(c: &mut Criterion) {
    let (verifier, tokens) = store(1, 1);
    let valid = tokens[0].clone();
    let mut group = c.benchmark_group("verify");
    group.bench_function("valid_compact", |b| {
        b.iter(|| {
            verifier
                .verify(black_box(&valid), now())
                .unwrap()
                .key_type()
        })
    });
    // The cache turned off: the same path as no cache setting.
    let off = verifier.clone().with_cache(0);
    group.bench_function("valid_compact_cache_off", |b| {
        b.iter(|| off.verify(black_box(&valid), now()).unwrap().key_type())
    });
    let uid = UntrustedToken::parse(&valid)
        .unwrap()
        .convert(Format::Uid)
        .unwrap()
        .to_string();
    group.bench_function("valid_uid", |b| {
        b.iter(|| verifier.verify(black_box(&uid), now()).unwrap().key_type())
    });
    // Forged: a valid-looking signature no key produces; both keys are tried.
    let forged = format!(
        "{}A{}",
        &valid[..valid.len() - 88],
        &valid[valid.len() - 87..]
    );
    assert_eq!(
        verifier.verify(&forged, now()).unwrap_err().code(),
        "SignatureMismatch"
    );
    group.bench_function("forged_signature", |b| {
        b.iter(|| verifier.verify(black_box(&forged), now()).is_err())
    });
    let malformed = valid.replacen("&2026", "&2026-", 1);
    assert_eq!(
        verifier.verify(&malformed, now()).unwrap_err().code(),
        "MalformedExpiry"
    );
    group.bench_function("malformed", |b| {
        b.iter(|| verifier.verify(black_box(&malformed), now()).is_err())
    });
    group.bench_function("malformed_garbage", |b| {
        b.iter(|| {
            verifier
                .verify(black_box("not a token at all"), now())
                .is_err()
        })
    });
    let later = now() + TimeDelta::days(40);
    assert_eq!(
        verifier.verify(&valid, later).unwrap_err().code(),
        "TokenExpired"
    );
    group.bench_function("expired", |b| {
        b.iter(|| verifier.verify(black_box(&valid), later).is_err())
    });
    let unknown = valid.replacen("gateway-", "gatewaX-", 1);
    assert_eq!(
        verifier.verify(&unknown, now()).unwrap_err().code(),
        "GatewayNotExist"
    );
    group.bench_function("unknown_gateway", |b| {
        b.iter(|| verifier.verify(black_box(&unknown), now()).is_err())
    });
    group.finish();

    c.bench_function("parse/compact", |b| {
        b.iter(|| UntrustedToken::parse(black_box(&valid)).unwrap().expiry())
    });
}

fn keystore_sizes(c: &mut Criterion) {
    // Cycle through tokens of 1,024 different gateways (or all, when fewer), so that a large
    // keystore pays for its cache misses as a busy gateway fleet would.
    let mut group = c.benchmark_group("keystore");
    for n in [1usize, 1_000, 100_000] {
        let (verifier, tokens) = store(n, n.min(1024));
        let mut i = 0;
        group.bench_function(format!("verify/{n}"), |b| {
            b.iter_batched(
                || {
                    i = (i + 1) % tokens.len();
                    &tokens[i]
                },
                |token| verifier.verify(token, now()).unwrap().key_type(),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// The verdict cache: a repeated token, a miss (1,024 gateways' tokens cycling through a cache
/// of 256), and a forgery, each beside the same verifier without the cache.
fn cache(c: &mut Criterion) {
    let (plain, tokens) = store(1024, 1024);
    let mut group = c.benchmark_group("cache");
    let repeated = plain.clone().with_cache(1024);
    let valid = tokens[0].clone();
    group.bench_function("repeated_token", |b| {
        b.iter(|| {
            repeated
                .verify(black_box(&valid), now())
                .unwrap()
                .key_type()
        })
    });
    for (name, verifier) in [
        ("miss_cycling", plain.clone().with_cache(256)),
        ("no_cache_cycling", plain.clone()),
    ] {
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    i = (i + 1) % tokens.len();
                    &tokens[i]
                },
                |token| verifier.verify(token, now()).unwrap().key_type(),
                BatchSize::SmallInput,
            )
        });
    }
    let forged = format!("{}AA==", &valid[..valid.len() - 4]);
    for (name, verifier) in [("forged", &repeated), ("forged_no_cache", &plain)] {
        group.bench_function(name, |b| {
            b.iter(|| verifier.verify(black_box(&forged), now()).is_err())
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    floor,
    hmac_reference,
    sign,
    verify,
    keystore_sizes,
    cache
);
criterion_main!(benches);
