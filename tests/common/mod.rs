//! What the integration tests share: the vector files.

#![allow(dead_code)] // each test crate uses its own part

use serde::Deserialize;

/// One vector of tests/vectors/*.json (see tests/vectors/generate.py).
#[derive(Debug, Deserialize)]
pub struct Vector {
    pub id: String,
    pub key: String,
    pub expiry: String,
    pub format: String,
    pub token: String,
    pub expiry_o: String,
    pub now: String,
}

/// Reads a vector file.
pub fn load(path: &str) -> Vec<Vector> {
    let text = std::fs::read_to_string(path).expect("vector file");
    serde_json::from_str(&text).expect("vector JSON")
}
