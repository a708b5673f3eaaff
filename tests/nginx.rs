//! Debian's nginx in front of `apim-sas serve`, configured by `examples/nginx.conf` (free ports
//! put in place of its own): `auth_request` lets a valid token through with the gateway id
//! reaching the API behind, and answers a forged or missing token with 401 and apim-sas's
//! `WWW-Authenticate` challenge.
//!
//! nginx must be at /usr/sbin/nginx (`.ci/run` installs it: `apt-get install -y nginx`). Without
//! it the test fails under CI and is skipped elsewhere, saying so.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apim_sas::chrono::{DateTime, TimeDelta, Utc};
use apim_sas::{Format, GatewayKey, Signer};

const NGINX: &str = "/usr/sbin/nginx";
const NOW: &str = "2026-04-21T00:44:00Z";
const KEY: &str = "nginx-test-sample-key";

/// A child process stopped by its own id when dropped: SIGTERM (nginx then stops its workers),
/// then SIGKILL if it lingers.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} is not listening on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `apim-sas serve` on a free port, ready; its address.
fn start_serve(keystore: &Path) -> (Running, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_apim-sas"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--now",
            NOW,
            "--keystore",
        ])
        .arg(keystore)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some((_, rest)) = line.split_once("listening on http://") {
                let addr: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                let _ = tx.send(addr);
            }
        }
    });
    let running = Running(child);
    let addr: SocketAddr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("serve never listened")
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(addr, "/readyz", &[]).0 != 200 {
        assert!(Instant::now() < deadline, "serve never ready");
        std::thread::sleep(Duration::from_millis(10));
    }
    (running, addr)
}

/// The API behind nginx: answers 200 with the `X-Apim-Gateway-Id` and `X-Apim-Key-Type` it
/// received, and records them.
fn start_api() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut id, mut key_type) = (String::from("-"), String::from("-"));
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                if let Some((name, value)) = line.split_once(':') {
                    match name.to_ascii_lowercase().as_str() {
                        "x-apim-gateway-id" => id = value.trim().to_owned(),
                        "x-apim-key-type" => key_type = value.trim().to_owned(),
                        _ => {}
                    }
                }
                line.clear();
            }
            let body = format!("api saw gateway={id} key={key_type}");
            record.lock().unwrap().push(body.clone());
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (addr, seen)
}

/// One request on a fresh connection: status, lower-cased headers, body.
fn get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut text = format!("GET {path} HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn nginx_auth_request_lets_valid_tokens_through_with_the_gateway_id() {
    if !Path::new(NGINX).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{NGINX} is missing: .ci/run installs it with apt-get install -y nginx"
        );
        eprintln!("skipped: no {NGINX} (apt-get install -y nginx)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let keystore = dir.path().join("keystore.json");
    std::fs::write(&keystore, format!(r#"{{"gw1": {{"primary": "{KEY}"}}}}"#)).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&keystore, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let (_serve, serve_addr) = start_serve(&keystore);
    let (api_addr, seen) = start_api();

    // examples/nginx.conf, with free ports in place of 8080 (nginx), 8089 (serve), 9000 (API).
    let nginx_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let example = std::fs::read_to_string("examples/nginx.conf").unwrap();
    for placeholder in ["127.0.0.1:8080", "127.0.0.1:8089", "127.0.0.1:9000"] {
        assert_eq!(example.matches(placeholder).count(), 1, "{placeholder}");
    }
    let conf = example
        .replace("127.0.0.1:8080", &nginx_addr.to_string())
        .replace("127.0.0.1:8089", &serve_addr.to_string())
        .replace("127.0.0.1:9000", &api_addr.to_string());
    let prefix = dir.path().join("nginx");
    std::fs::create_dir_all(prefix.join("logs")).unwrap();
    std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
    let error_log = prefix.join("error.log");
    let nginx = Command::new(NGINX)
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(prefix.join("nginx.conf"))
        .arg("-e")
        .arg(&error_log)
        .arg("-g")
        .arg(format!(
            "daemon off; pid {};",
            prefix.join("nginx.pid").display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _nginx = Running(nginx);
    let nginx_log = || std::fs::read_to_string(&error_log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(nginx_addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx never listened:\n{}",
            nginx_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_listening(nginx_addr, "nginx");

    let now = DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .with_timezone(&Utc);
    let token = Signer::new("gw1", &GatewayKey::new(KEY).unwrap())
        .unwrap()
        .sign(now + TimeDelta::days(1), Format::Compact)
        .unwrap()
        .to_string();

    // Valid: the API answers, and sees the gateway id apim-sas verified, not the client's claim.
    let (status, _, body) = get(
        nginx_addr,
        "/orders/7?x=1",
        &[
            ("Authorization", &format!("GatewayKey {token}")),
            ("X-Apim-Gateway-Id", "spoofed"),
        ],
    );
    assert_eq!(status, 200, "{body}\n{}", nginx_log());
    assert_eq!(body, "api saw gateway=gw1 key=primary");

    // Forged and missing: 401 from nginx with apim-sas's challenge; the API never asked.
    let forged = token.replace("&202604220044&", "&202604230044&");
    let (status, headers, _) = get(
        nginx_addr,
        "/orders/7",
        &[("Authorization", &forged), ("X-Apim-Gateway-Id", "gw1")],
    );
    assert_eq!(status, 401, "{}", nginx_log());
    assert_eq!(
        header(&headers, "www-authenticate"),
        Some(r#"SharedAccessSignature error="SignatureMismatch""#)
    );
    let (status, headers, _) = get(nginx_addr, "/", &[]);
    assert_eq!(status, 401);
    assert_eq!(
        header(&headers, "www-authenticate"),
        Some(r#"SharedAccessSignature error="EmptyToken""#)
    );
    assert_eq!(*seen.lock().unwrap(), ["api saw gateway=gw1 key=primary"]);

    // apim-sas counted what nginx asked, under the original paths.
    let (_, _, metrics) = get(serve_addr, "/metrics", &[]);
    for line in [
        r#"apim_sas_verifications_total{result="valid"} 1"#,
        r#"apim_sas_verifications_total{result="SignatureMismatch"} 1"#,
        r#"apim_sas_verifications_total{result="EmptyToken"} 1"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in:\n{metrics}"
        );
    }
}
