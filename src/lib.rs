//! Mint and verify Azure API Management shared-access tokens offline.
//!
//! Two wire forms of one token (the full rules, and every error code, are in `docs/format.md`):
//!
//! | form | bare token |
//! | --- | --- |
//! | compact | `{id}&{yyyyMMddHHmm}&{signature}`, the self-hosted gateway's `GatewayKey` token |
//! | uid | `uid={id}&ex={yyyy-MM-ddTHH:mm:ss.fffffffZ}&sn={signature}`, the management API's |
//!
//! `signature = base64(HMAC-SHA512(key text, id + "\n" + expiry in .NET's "O" form))`, so a
//! compact token and the uid token with the same id and expiry carry the same signature.
//!
//! # Mint a gateway token
//!
//! ```
//! use apim_sas::{Format, GatewayKey, Policy, Scheme, Signer};
//! use chrono::{TimeDelta, TimeZone, Utc};
//!
//! let key = GatewayKey::new("sample-key-do-not-use")?; // from your secret store
//! let signer = Signer::new("gw1", &key)?;
//! let now = Utc.with_ymd_and_hms(2026, 4, 21, 0, 44, 0).unwrap();
//! let token = signer.mint(now + TimeDelta::days(29), Format::Compact, now, &Policy::default())?;
//! assert!(token.to_string().starts_with("gw1&202605200044&"));
//! // What the gateway's config.service.auth holds:
//! assert!(token.with_scheme(Scheme::GatewayKey).starts_with("GatewayKey gw1&"));
//! # Ok::<(), apim_sas::Error>(())
//! ```
//!
//! # Verify during a key rotation
//!
//! Tokens signed with either key verify; the result says which key matched.
//!
//! ```
//! use apim_sas::{Format, GatewayKey, KeyType, Policy, Signer, Verifier};
//! use chrono::{TimeDelta, TimeZone, Utc};
//!
//! let old = GatewayKey::new("old-sample-key")?;
//! let new = GatewayKey::new("new-sample-key")?;
//! let mut verifier = Verifier::new(Policy::default()); // leeway 60 s, at most 30 days
//! verifier.insert("gw1", KeyType::Primary, &new)?;
//! verifier.insert("gw1", KeyType::Secondary, &old)?;
//!
//! let now = Utc.with_ymd_and_hms(2026, 4, 21, 0, 0, 0).unwrap();
//! let before = Signer::new("gw1", &old)?.sign(now + TimeDelta::days(3), Format::Compact)?;
//! let after = Signer::new("gw1", &new)?.sign(now + TimeDelta::days(29), Format::Uid)?;
//! assert_eq!(verifier.verify(&before.to_string(), now)?.key_type(), KeyType::Secondary);
//! assert_eq!(verifier.verify(&after.to_string(), now)?.key_type(), KeyType::Primary);
//!
//! let forged = before.to_string().replace("&2026", "&2027");
//! assert_eq!(verifier.verify(&forged, now).unwrap_err().code(), "SignatureMismatch");
//! # Ok::<(), apim_sas::Error>(())
//! ```
//!
//! # Inspect an untrusted token
//!
//! Without a key, a token can be read but not trusted: [`UntrustedToken`] says so in its name.
//!
//! ```
//! use apim_sas::{Format, UntrustedToken};
//!
//! let token = UntrustedToken::parse(
//!     "SharedAccessSignature uid=gw1&ex=2026-12-13T02:40:40.7190000Z&sn=NtuAewV72j2IO1KLilcJoQ3jDba9M31wtX+ZleRlAVCLLk3ybBiWyiW/W7wRx2TIpsQJu009mrHw4ZZd0W4Dgg==",
//! )?;
//! assert_eq!(token.id(), "gw1");
//! assert_eq!(token.format(), Format::Uid);
//! assert_eq!(token.expiry().to_rfc3339(), "2026-12-13T02:40:40.719+00:00");
//! // Not a whole minute: it has no compact form.
//! assert_eq!(token.convert(Format::Compact).unwrap_err().code(), "ExpiryNotWholeMinute");
//!
//! let err = UntrustedToken::parse("Bearer abc").unwrap_err();
//! assert_eq!((err.code(), err.target(), err.http_status()), ("MalformedToken", "scheme", 401));
//! # Ok::<(), apim_sas::Error>(())
//! ```
//!
//! # Verify inside an HTTP server (feature `tower`)
//!
//! [`layer::VerifyLayer`] is a tower layer for axum, hyper and tonic servers: it reads the token
//! from a request header, verifies it against keys that can be swapped while requests run
//! ([`layer::SharedVerifier`]), hands the handler an owned [`layer::GatewayIdentity`] in the
//! request's extensions, and answers every refusal itself with `401`, a
//! `WWW-Authenticate: SharedAccessSignature error="<Code>"` challenge and Azure's ErrorResponse
//! JSON. `apim-sas serve` is built on it. See `examples/axum_guard.rs`.
//!
//! # Verify for a gateway (features `ext-authz`, `spoe`)
//!
//! The same verdict, over the same [`layer::SharedVerifier`], in the protocol each gateway asks
//! in; every refusal with the same code, message and body:
//!
//! | gateway | asks through | module |
//! | --- | --- | --- |
//! | axum, hyper, tonic; nginx `auth_request`, Traefik, Caddy (through `apim-sas serve`) | HTTP | [`layer`] |
//! | Envoy, Istio, Contour, Envoy Gateway | gRPC `ext_authz` | [`ext_authz`] |
//! | HAProxy | SPOE (SPOP frames) | [`spoe`] |
//!
//! # Choices where the format is silent
//!
//! - Input that is only whitespace is `EmptyToken`, as it is for the command line (which trims).
//! - The fields of a uid token in another order (`ex=…&uid=…&sn=…`) are `MalformedToken`;
//!   `UID=…` in upper case is read as a compact id (field names are case-sensitive).
//! - Printable non-ASCII characters (a fullwidth `＆`, a zero-width space) are refused by the
//!   field they sit in; Unicode whitespace and control characters anywhere are `MalformedToken`.
//! - Errors about untrusted tokens name the field and the rule, never echo the token's bytes.
//! - [`GatewayKey::new`] errors are configuration (500); [`Signer::new`] refuses `managed`.
//! - Caller-supplied instants outside the years 0001–9999 are `InvalidExpiry` (400).
//!
//! # Guides
//!
//! Task by task, in the `docs/` folder of the source (and of the crate package):
//!
//! - [renewal](https://docs.rs/crate/apim-sas/latest/source/docs/renewal.md): renewing tokens
//!   on systemd and Docker hosts, what `renew` refuses, the deploy hook.
//! - [kubernetes](https://docs.rs/crate/apim-sas/latest/source/docs/kubernetes.md): the renewal
//!   CronJob, its RBAC and security context, which Secret key the gateway reads.
//! - [monitoring](https://docs.rs/crate/apim-sas/latest/source/docs/monitoring.md): alerts
//!   before a token expires.
//! - [serve](https://docs.rs/crate/apim-sas/latest/source/docs/serve.md): `apim-sas serve`
//!   behind nginx `auth_request`, Traefik, Caddy, Envoy, Kong, systemd, a Kubernetes sidecar.
//! - [ext-authz](https://docs.rs/crate/apim-sas/latest/source/docs/ext-authz.md): Envoy, Istio,
//!   Contour and Envoy Gateway through gRPC `ext_authz`.
//! - [haproxy](https://docs.rs/crate/apim-sas/latest/source/docs/haproxy.md): HAProxy asking
//!   `apim-sas serve` over SPOE.
//! - [nginx](https://docs.rs/crate/apim-sas/latest/source/docs/nginx.md): the nginx module,
//!   verification inside nginx itself.
//! - [library](https://docs.rs/crate/apim-sas/latest/source/docs/library.md): this library: its
//!   features, minting and verifying, the tower layer.
//! - [format](https://docs.rs/crate/apim-sas/latest/source/docs/format.md): the wire forms, the
//!   signing rule, validity, every error code.
//! - [speed](https://docs.rs/crate/apim-sas/latest/source/docs/speed.md): benchmarks, and how to
//!   run them.
//! - [security](https://docs.rs/crate/apim-sas/latest/source/docs/security.md): key hygiene, the
//!   threat model, hostile input, fuzzing.
//! - [troubleshooting](https://docs.rs/crate/apim-sas/latest/source/docs/troubleshooting.md):
//!   common slips and what the command says about each.
//! - [cli](https://docs.rs/crate/apim-sas/latest/source/docs/cli.md): the command reference.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

mod cache;
mod error;
mod expiry;
// The gateway adapters, grouped in src/gateway/ and public here, at the root (see its docs).
// Not gated itself, so that each adapter's page names its own feature alone.
mod gateway;
pub mod header;
mod key;
#[cfg(feature = "keystore")]
mod keystore;
mod policy;
mod sign;
mod source;
mod token;
mod verify;

pub use error::{Error, ErrorKind, Target};
pub use expiry::{human_duration, o_form, push_rfc3339};
pub use key::{GatewayKey, KeyType};
#[cfg(feature = "keystore")]
pub use keystore::{KeyPair, Keystore};
pub use policy::Policy;
pub use sign::Signer;
pub use source::TokenSource;
pub use token::{Format, Scheme, Token, UntrustedToken, MAX_ID_LEN, MAX_TOKEN_LEN, SIGNATURE_LEN};
pub use verify::{Verified, Verifier};

#[cfg(feature = "ext-authz")]
pub use gateway::ext_authz;
#[cfg(feature = "tower")]
pub use gateway::layer;
#[cfg(feature = "spoe")]
pub use gateway::spoe;

/// Re-exported so that callers name the same `chrono` types the API takes.
pub use chrono;

/// The library guide's Rust snippets (`docs/library.md`), compiled as doc tests.
#[cfg(all(doctest, feature = "keystore", feature = "tower"))]
#[doc = include_str!("../docs/library.md")]
struct LibraryGuide;

/// The gRPC guide's server (`docs/ext-authz.md`), compiled as a doc test.
#[cfg(all(doctest, feature = "keystore", feature = "ext-authz"))]
#[doc = include_str!("../docs/ext-authz.md")]
struct ExtAuthzGuide;
