//! What the integration tests share: the vector files, and the harness of the tests that run the
//! real binary (`serve`), the programs beside it (`process`) and the API behind a gateway
//! (`upstream`).

pub mod allocator;
pub mod dockerfile;
pub mod envoy;
pub mod http;
pub mod identity;
pub mod kubernetes;
pub mod markdown;
pub mod ports;
pub mod process;
#[cfg(feature = "cli")]
pub mod serve;
#[cfg(feature = "cli")]
pub mod tokens;
pub mod upstream;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

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

/// What one run of the real binary gave: its exit code and its output, as text.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Run {
    fn from(out: std::process::Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
        }
    }
}

impl Run {
    /// The same run, after checking that `secret` (a canary key) is in neither of its outputs.
    #[track_caller]
    pub fn leaking_nothing(self, secret: &str) -> Run {
        assert!(
            !self.stdout.contains(secret) && !self.stderr.contains(secret),
            "a key leaked: {}{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Stdout as the one JSON document `--output json` promises.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}): {}{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Waits until `done` holds, asking every 10 ms for at most `within`; panics with `what()`
/// otherwise.
#[track_caller]
pub fn wait_until(within: Duration, mut done: impl FnMut() -> bool, what: impl Fn() -> String) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{}", what());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Held by the tests that must not overlap one another: serve_hostile's with time bounds, envoy's
/// recipes and envoy_wasm's Envoys, whose time bounds are for the service and not for the other
/// tests' load, and images', whose cargo build takes both cores. Each of the first two files used
/// to keep its own tests apart with a lock of its own, which in one process lets the files
/// overlap; one lock keeps them all apart, each beside lighter tests only (six run at a time:
/// .cargo/config.toml).
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(PoisonError::into_inner)
}
