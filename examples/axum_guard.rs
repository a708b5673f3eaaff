//! An axum service guarded by `apim_sas::layer::VerifyLayer`.
//!
//! ```text
//! cargo run --example axum_guard --features tower
//! ```
//!
//! It loads the sample keys of gateway `gw1` (examples/gw1.keys.json: public, never for a real
//! gateway), prints its address and a token to try, and serves until Ctrl-C. Then:
//!
//! ```text
//! curl -i -H "Authorization: GatewayKey <token>" http://127.0.0.1:PORT/   # 200, "hello gw1 …"
//! curl -i http://127.0.0.1:PORT/                                          # 401 EmptyToken
//! ```

use apim_sas::chrono::{TimeDelta, Utc};
use apim_sas::layer::{GatewayIdentity, SharedVerifier, VerifyLayer};
use apim_sas::{Format, KeyPair, KeyType, Policy, Scheme, Signer};
use axum::routing::get;
use axum::{Extension, Router};

/// A handler that trusts what the layer verified.
async fn hello(Extension(identity): Extension<GatewayIdentity>) -> String {
    // The expiry as every apim-sas output spells it (`2026-05-20T00:44:00Z`), not chrono's
    // `to_rfc3339` (`+00:00`).
    let mut expiry = Vec::new();
    apim_sas::push_rfc3339(&mut expiry, identity.expiry());
    format!(
        "hello {} (signed with the {} key, {} form, expires {})\n",
        identity.id(),
        identity.key_type(),
        identity.format(),
        String::from_utf8_lossy(&expiry),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gw1.keys.json");
    let keys = KeyPair::from_json(&std::fs::read_to_string(path)?)?;
    let mut verifier = apim_sas::Verifier::new(Policy::default());
    for (key_type, key) in keys.keys() {
        verifier.insert("gw1", key_type, key)?;
    }
    let shared = SharedVerifier::new(verifier);
    // `shared.store(new_verifier)` swaps the keys while the server runs (rotation).

    let app = Router::new()
        .route("/", get(hello))
        .layer(VerifyLayer::new(shared));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    let token = Signer::new("gw1", keys.get(KeyType::Primary)?)?
        .sign(Utc::now() + TimeDelta::hours(1), Format::Compact)?;
    println!(
        "try: curl -i -H 'Authorization: {}' http://{addr}/",
        token.with_scheme(Scheme::GatewayKey)
    );

    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
