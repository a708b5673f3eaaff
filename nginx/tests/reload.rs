//! Keys the nginx way: `nginx -s reload` rotates them under load with no failed request, a bad
//! keystore keeps the running configuration, and a worker's memory stays flat over a million
//! requests.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apim_sas::chrono::TimeDelta;
use apim_sas::Format;
use common::*;

const OLD: &str = "old-sample-gateway-key";
const NEW: &str = "new-sample-gateway-key";

fn write_atomically(setup: &Setup, text: &str) {
    let tmp = setup.path("keystore.json.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, setup.path("keystore.json")).unwrap();
}

/// Sends `token` on keep-alive connections until `stop`; counts answers and failures. A request
/// that finds its kept-alive connection closed (an old worker leaving after a reload) is sent
/// again on a new connection, as HTTP clients do; a new connection that fails is a failure.
fn load(
    nginx: &Nginx,
    token: String,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    let addr = nginx.addr();
    std::thread::spawn(move || {
        let request = request("GET", "/", &[("Authorization", &token)]);
        let mut conn = Conn::open(addr);
        while !stop.load(Ordering::Relaxed) {
            let reply = match conn.try_send(&request) {
                Ok(reply) => Ok(reply),
                Err(_) => Conn::try_open(addr).and_then(|mut fresh| {
                    let reply = fresh.try_send(&request);
                    conn = fresh;
                    reply
                }),
            };
            match reply {
                Ok(reply) if reply.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                Ok(reply) => {
                    eprintln!("failed: {} {}", reply.status, reply.text());
                    failed.fetch_add(1, Ordering::Relaxed)
                }
                Err(err) => {
                    eprintln!("failed: {err}");
                    failed.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    })
}

#[test]
fn reload_rotates_keys_under_load_without_a_failed_request() {
    let setup = Setup::new();
    write_atomically(&setup, &format!(r#"{{"gw1": {{"primary": "{OLD}"}}}}"#));
    setup.write(&server(""));
    let nginx = setup.start();
    let old_token = token("gw1", OLD, TimeDelta::days(1), Format::Compact);
    let new_token = token("gw1", NEW, TimeDelta::days(1), Format::Compact);
    assert_eq!(nginx.get("/", &[("Authorization", &new_token)]).status, 401);

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            load(
                &nginx,
                old_token.clone(),
                stop.clone(),
                ok.clone(),
                failed.clone(),
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = ok.load(Ordering::Relaxed);

    // The rotation: the new key becomes primary, the old one stays as secondary.
    write_atomically(
        &nginx.setup,
        &format!(r#"{{"gw1": {{"primary": "{NEW}", "secondary": "{OLD}"}}}}"#),
    );
    let reload = nginx.setup.reload();
    assert!(
        reload.status.success(),
        "{}",
        String::from_utf8_lossy(&reload.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while nginx.get("/", &[("Authorization", &new_token)]).status != 200 {
        assert!(Instant::now() < deadline, "the new key never verified");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(before > 0 && ok.load(Ordering::Relaxed) > before);
    let reply = nginx.get("/", &[("Authorization", &old_token)]);
    assert_eq!(reply.status, 200);
    assert!(reply.text().contains("key=[secondary]"), "{}", reply.text());

    // A bad keystore: `nginx -s reload` refuses it with the library's words and signals nothing;
    // a SIGHUP makes the master try, fail, log it, and keep serving the running configuration.
    write_atomically(&nginx.setup, "{\"gw1\": ");
    let reload = nginx.setup.reload();
    assert!(!reload.status.success());
    let stderr = String::from_utf8_lossy(&reload.stderr);
    assert!(
        stderr.contains("apim_sas_keystore: InvalidKeyFile: key file "),
        "{stderr}"
    );
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &nginx.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nginx.error_log().contains("[emerg]") {
        assert!(
            Instant::now() < deadline,
            "the failed reload was not logged"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(nginx.get("/", &[("Authorization", &new_token)]).status, 200);
    assert_eq!(nginx.get("/", &[("Authorization", &old_token)]).status, 200);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_workers_memory_stays_flat_over_a_million_requests() {
    // A static file behind the module, every request on the client's four connections (nginx
    // closes one after 1000 requests by default).
    let setup = Setup::new();
    std::fs::create_dir(setup.path("www")).unwrap();
    std::fs::write(setup.path("www/ok.txt"), "ok\n").unwrap();
    setup.write(
        "    apim_sas_keystore {dir}/keystore.json;
    server {
        listen 127.0.0.1:{port};
        keepalive_requests 2000000;
        location / { apim_sas on; root {dir}/www; }
    }",
    );
    let nginx = setup.start();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut workers = nginx.workers();
    while workers.len() != 1 {
        assert!(Instant::now() < deadline, "{workers:?}");
        std::thread::sleep(Duration::from_millis(10));
        workers = nginx.workers();
    }
    // More distinct tokens than the cache holds (hits and misses), and refusals.
    let mut tokens: Vec<String> = (0..1500)
        .map(|i| token("gw1", PRIMARY, TimeDelta::minutes(60 + i), Format::Compact))
        .collect();
    tokens.push("GatewayKey gw1&nope&x".into());
    let tokens = Arc::new(tokens);
    let run = |requests: u64| {
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let tokens = tokens.clone();
                let addr = nginx.addr();
                std::thread::spawn(move || {
                    let mut conn = Conn::open(addr);
                    let mut statuses = [0u64; 2];
                    for i in 0..requests / 4 {
                        let token = &tokens[((i * 7 + t) % tokens.len() as u64) as usize];
                        let reply =
                            conn.send(&request("GET", "/ok.txt", &[("Authorization", token)]));
                        statuses[usize::from(reply.status == 401)] += 1;
                    }
                    statuses
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .fold([0, 0], |a, b| [a[0] + b[0], a[1] + b[1]])
    };
    let warm = run(100_000);
    assert!(warm[1] > 0 && warm[0] > warm[1]);
    let after_warmup = rss_kib(workers[0]);
    let all = run(1_000_000);
    assert_eq!(all[0] + all[1], 1_000_000);
    let after = rss_kib(workers[0]);
    eprintln!("worker RSS: {after_warmup} KiB after 100k requests, {after} KiB after 1.1M");
    assert!(
        after <= after_warmup + 1024,
        "the worker grew from {after_warmup} KiB to {after} KiB"
    );
}
