//! Checks per second and CPU per Check of `apim-sas serve`'s gRPC side (Envoy's ext_authz), with
//! a tonic load client: the release binary on a loopback port, `CONNS` HTTP/2 connections with
//! `STREAMS` Checks in flight on each (as Envoy multiplexes its Checks), for `SECS` seconds per
//! variant. The server's CPU is read from /proc before and after, so the client's is not counted.
//!
//!     cargo bench --bench grpc_load                      # SECS=10 CONNS=4 STREAMS=16
//!     SECS=20 CONNS=8 STREAMS=32 cargo bench --bench grpc_load
//!
//! Variants: a valid token (a verdict-cache hit after the first), a forged one (the full HMAC,
//! refused), and no token. Every answer is checked; any unexpected one or failed RPC aborts.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apim_sas::chrono::{DateTime, TimeDelta, Utc};
use apim_sas::ext_authz::pb::{
    attribute_context, AttributeContext, AuthorizationClient, CheckRequest,
};
use apim_sas::ext_authz::tonic::transport::Channel;
use apim_sas::{Format, GatewayKey, Signer};

const NOW: &str = "2026-04-21T00:44:00Z";
const KEY: &str = "bench-key-not-secret-5b0c1f";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time (user + system) of process `pid`, from /proc.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second: u64 = String::from_utf8(
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    Duration::from_micros(ticks * 1_000_000 / per_second)
}

fn check_request(token: Option<&str>) -> CheckRequest {
    let mut headers = std::collections::HashMap::new();
    headers.insert(":path".to_owned(), "/api/orders/7".to_owned());
    headers.insert(":method".to_owned(), "GET".to_owned());
    headers.insert("user-agent".to_owned(), "bench/1.0".to_owned());
    if let Some(token) = token {
        headers.insert("authorization".to_owned(), token.to_owned());
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                http: Some(attribute_context::HttpRequest {
                    method: "GET".into(),
                    path: "/api/orders/7".into(),
                    headers,
                    header_map: None,
                }),
            }),
        }),
    }
}

struct Server {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keystore.json");
    std::fs::write(&path, format!(r#"{{"gw1": {{"primary": "{KEY}"}}}}"#)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_apim-sas"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--now",
            NOW,
            "--keystore",
        ])
        .arg(&path)
        .args(
            std::env::var("SERVE_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut addr = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(at) = line.find("listening on http://") {
            addr = Some(
                line[at + "listening on http://".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect::<String>(),
            );
        }
        if line.contains("keys loaded") {
            break;
        }
    }
    // The refusal lines go on; nobody need read them, but the pipe must not fill.
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        addr: addr.expect("serve never listened"),
        _dir: dir,
    }
}

/// Runs one variant; returns (Checks per second, server CPU µs per Check).
async fn run(
    server: &Server,
    channels: &[Channel],
    streams: u64,
    secs: u64,
    request: CheckRequest,
    expected: i32,
) -> (f64, f64) {
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    // A short warm-up: connections open, the verdict cache filled.
    for channel in channels {
        let mut client = AuthorizationClient::new(channel.clone());
        let response = client.check(request.clone()).await.expect("Check");
        assert_eq!(
            response.get_ref().status.as_ref().map(|s| s.code),
            Some(expected)
        );
    }
    let cpu_before = cpu(server.child.id());
    let started = Instant::now();
    for channel in channels {
        for _ in 0..streams {
            let mut client = AuthorizationClient::new(channel.clone());
            let (done, count, request) = (Arc::clone(&done), Arc::clone(&count), request.clone());
            tasks.push(tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    let response = client.check(request.clone()).await.expect("Check");
                    let code = response.get_ref().status.as_ref().map(|s| s.code);
                    assert_eq!(code, Some(expected));
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    done.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let cpu_after = cpu(server.child.id());
    for task in tasks {
        task.await.expect("a load task failed");
    }
    let checks = count.load(Ordering::Relaxed) as f64;
    let cpu_per = (cpu_after - cpu_before).as_secs_f64() * 1e6 / checks;
    (checks / elapsed.as_secs_f64(), cpu_per)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: a smoke run then.
    let benching = std::env::args().any(|a| a == "--bench");
    let secs = if benching { env("SECS", 10) } else { 1 };
    let conns = env("CONNS", 4);
    let streams = env("STREAMS", 16);
    let now: DateTime<Utc> = NOW.parse().unwrap();
    let signer = Signer::new("gw1", &GatewayKey::new(KEY).unwrap()).unwrap();
    let valid = signer
        .sign(now + TimeDelta::days(1), Format::Compact)
        .unwrap()
        .to_string();
    let forged = Signer::new("gw1", &GatewayKey::new("another-key").unwrap())
        .unwrap()
        .sign(now + TimeDelta::days(1), Format::Compact)
        .unwrap()
        .to_string();

    let server = start();
    // The client on one thread: the other core is the server's.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut channels = Vec::new();
        for _ in 0..conns {
            let channel = Channel::from_shared(format!("http://{}", server.addr))
                .unwrap()
                .connect()
                .await
                .expect("connect");
            channels.push(channel);
        }
        println!(
            "grpc_load: {conns} connections x {streams} streams, {secs} s per variant, serve {}",
            std::env::var("SERVE_ARGS").unwrap_or_default()
        );
        println!("| variant | Checks/s | serve CPU per Check |");
        println!("| --- | ---: | ---: |");
        for (name, request, expected) in [
            ("valid token", check_request(Some(&valid)), 0),
            ("forged token (refused)", check_request(Some(&forged)), 16),
            ("no token (refused)", check_request(None), 16),
        ] {
            let (rate, cpu) = run(&server, &channels, streams, secs, request, expected).await;
            println!("| {name} | {rate:.0} | {cpu:.1} µs |");
        }
    });
}
