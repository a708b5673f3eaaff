//! Debian's HAProxy in front of an API, asking `apim-sas serve --spoe-listen` over SPOE, configured
//! by `examples/haproxy.cfg` and `examples/spoe-apim-sas.conf` as they stand (free ports put in
//! place of 8080, 9000 and 12345, and temporary paths in place of the keystore and the SPOE
//! file's, each placeholder counted first), with serve started by the command line the
//! example's own comment gives. The API echoes what reaches it.
//!
//! Every verdict and the secondary key; refusals byte for byte what serve's `/verify` answers
//! (a missing token, two token headers, forged, expired, unknown); no client-sent identity header
//! in any spelling reaching the API; the agent stopped (`SIGSTOP`: refused after `timeout
//! processing`) and killed (refused, then at once once the health check knows); keys rotated
//! under load without a failed request. Then serve's SPOE port alone, as a hostile peer sees it:
//! frames too long, of unknown types, out of turn, fragmented, or split across writes, each
//! answered with the protocol's AGENT-DISCONNECT (exact bytes) and a closed connection, never a
//! crash; slow, idle and surplus connections bounded.
//!
//! HAProxy must be at /usr/sbin/haproxy (`.ci/deps/haproxy.sh` installs Debian's). Without it
//! the HAProxy tests fail under CI and are ignored elsewhere, saying so (build.rs:
//! `skip_haproxy`); the tests of the SPOE port alone need only serve.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apim_sas::chrono::{DateTime, TimeDelta, Utc};
use apim_sas::{Format, GatewayKey, Signer};

mod spop;

use crate::common::http::{request, Conn, Reply};
use crate::common::ports::free_port;
use spop::Peer;

const HAPROXY: &str = "/usr/sbin/haproxy";
const NOW: &str = "2026-04-21T00:44:00Z";
const PRIMARY: &str = "haproxy-test-primary-key";
const SECONDARY: &str = "haproxy-test-secondary-key";

/// The example's placeholders, and how many times each file holds each.
const CFG_PLACEHOLDERS: [(&str, usize); 5] = [
    ("127.0.0.1:8080", 1),
    ("127.0.0.1:9000", 2),
    ("127.0.0.1:12345", 2),
    ("/etc/haproxy/spoe-apim-sas.conf", 2),
    ("/etc/apim-sas/gateways.json", 1),
];
const SPOE_PLACEHOLDERS: [(&str, usize); 2] = [
    ("127.0.0.1:12345", 1),
    ("/etc/haproxy/spoe-apim-sas.conf", 1),
];

/// The identity the API must receive for a token `token()` signs with the primary key.
const IDENTITY: [(&str, &str); 4] = [
    ("x-apim-gateway-id", "gw1"),
    ("x-apim-key-type", "primary"),
    ("x-apim-token-expiry", "2026-04-22T00:44:00Z"),
    ("x-apim-token-format", "compact"),
];

/// A child process stopped by its own id when dropped: SIGCONT (it may be stopped), SIGTERM,
/// then SIGKILL if it lingers.
struct Running(Child);

impl Running {
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.alive() {
            for signal in ["-CONT", "-TERM"] {
                let _ = Command::new("kill")
                    .args([signal, &self.0.id().to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
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

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .with_timezone(&Utc)
}

/// A compact token for `id`, signed with `key`, expiring `ttl` after `NOW`.
fn token_for(id: &str, key: &str, ttl: TimeDelta, format: Format) -> String {
    Signer::new(id, &GatewayKey::new(key).unwrap())
        .unwrap()
        .sign(now() + ttl, format)
        .unwrap()
        .to_string()
}

fn token() -> String {
    token_for("gw1", PRIMARY, TimeDelta::days(1), Format::Compact)
}

fn keystore(path: &Path, primary: &str, secondary: Option<&str>) {
    let text = match secondary {
        Some(secondary) => {
            format!(r#"{{"gw1": {{"primary": "{primary}", "secondary": "{secondary}"}}}}"#)
        }
        None => format!(r#"{{"gw1": {{"primary": "{primary}"}}}}"#),
    };
    // Swapped in whole, as a deploy tool writes it.
    let fresh = path.with_extension("new");
    std::fs::write(&fresh, text).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::rename(&fresh, path).unwrap();
}

/// The example file `name`, each placeholder asserted to be there as often as expected, then
/// replaced.
fn example(name: &str, placeholders: &[(&str, usize)], with: &[(&str, String)]) -> String {
    let mut text = std::fs::read_to_string(format!("examples/{name}")).unwrap();
    for (placeholder, count) in placeholders {
        assert_eq!(
            text.matches(placeholder).count(),
            *count,
            "examples/{name}: {placeholder}"
        );
    }
    for (placeholder, value) in with {
        text = text.replace(placeholder, value);
    }
    text
}

/// The command line examples/haproxy.cfg's comment starts serve with, its keystore put in place,
/// and port 0 for the SPOE port (the one serve gets is read from its log).
fn example_serve_args(keystore: &Path) -> Vec<String> {
    let cfg = example(
        "haproxy.cfg",
        &CFG_PLACEHOLDERS,
        &[
            (
                "/etc/apim-sas/gateways.json",
                keystore.display().to_string(),
            ),
            ("127.0.0.1:12345", "127.0.0.1:0".to_owned()),
        ],
    );
    let line = cfg
        .lines()
        .find_map(|l| l.trim_start_matches('#').trim().strip_prefix("apim-sas "))
        .expect("examples/haproxy.cfg says how serve is started");
    line.split_whitespace().map(str::to_owned).collect()
}

/// `apim-sas serve` running, with its HTTP and SPOE addresses.
struct Serve {
    process: Running,
    http: SocketAddr,
    spoe: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    /// serve with `args`, and a free HTTP port and the fixed clock (a test's additions).
    fn start(args: &[String]) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_apim-sas"))
            .args(args)
            .args(["--listen", "127.0.0.1:0", "--now", NOW])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                for scheme in ["http", "spop"] {
                    if let Some((_, rest)) = line.split_once(&format!("listening on {scheme}://")) {
                        let addr: String = rest
                            .chars()
                            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                            .collect();
                        let _ = tx.send((scheme, addr));
                    }
                }
                lines.lock().unwrap().push(line);
            }
        });
        let process = Running(child);
        let (mut http, mut spoe) = (None, None);
        while http.is_none() || spoe.is_none() {
            let (scheme, addr) = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("serve never listened on both ports");
            let addr: SocketAddr = addr.parse().unwrap();
            match scheme {
                "http" => http = Some(addr),
                _ => spoe = Some(addr),
            }
        }
        let serve = Serve {
            process,
            http: http.unwrap(),
            spoe: spoe.unwrap(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Conn::open(serve.http)
            .send(&request("GET", "/readyz", &[]))
            .status
            != 200
        {
            assert!(Instant::now() < deadline, "serve never ready");
            std::thread::sleep(Duration::from_millis(10));
        }
        serve
    }

    /// What serve's `/verify` answers a request with `headers`.
    fn verify(&self, headers: &[(&str, &str)]) -> Reply {
        Conn::open(self.http).send(&request("GET", "/verify", headers))
    }

    fn metric(&self, sample: &str) -> u64 {
        let text = Conn::open(self.http)
            .send(&request("GET", "/metrics", &[]))
            .text()
            .to_owned();
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

/// One request as the API received it.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    /// Names lower-cased, in order.
    headers: Vec<(String, String)>,
}

impl Seen {
    /// Headers whose name is `x-apim…` once `_` and `.` are read as `-` (as CGI-style backends
    /// fold them), sorted.
    fn apim(&self) -> Vec<(String, String)> {
        let mut apim: Vec<(String, String)> = self
            .headers
            .iter()
            .filter(|(name, _)| name.replace(['_', '.'], "-").starts_with("x-apim"))
            .cloned()
            .collect();
        apim.sort();
        apim
    }

    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The API: records each request and answers 200 with the `x-apim…` headers it received, one
/// `name: value` line each; keep-alive, as HAProxy reuses its server connections.
fn start_api() -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let record = Arc::clone(&record);
            std::thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut lines = Vec::new();
                    loop {
                        let mut line = Vec::new();
                        match reader.read_until(b'\n', &mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == b"\r\n" => break,
                            Ok(_) => {
                                lines.push(String::from_utf8_lossy(&line).trim_end().to_owned())
                            }
                        }
                    }
                    let Some((line, rest)) = lines.split_first() else {
                        return;
                    };
                    let request = Seen {
                        line: line.clone(),
                        headers: rest
                            .iter()
                            .filter_map(|l| l.split_once(':'))
                            .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
                            .collect(),
                    };
                    let body: String = request
                        .apim()
                        .iter()
                        .map(|(n, v)| format!("{n}: {v}\n"))
                        .collect();
                    record.lock().unwrap().push(request);
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// serve, the API and HAProxy (with the two example files), each on a free port.
struct Stack {
    haproxy: SocketAddr,
    serve: Serve,
    seen: Arc<Mutex<Vec<Seen>>>,
    keystore: PathBuf,
    haproxy_log: PathBuf,
    // Dropped in this order: HAProxy, then the directory (serve is a field above).
    _haproxy: Running,
    _dir: tempfile::TempDir,
}

/// The example configuration with its placeholders put in place; the SPOE file is written into
/// `dir`.
fn configuration(dir: &Path, haproxy: SocketAddr, api: SocketAddr, spoe: SocketAddr) -> PathBuf {
    let spoe_file = dir.join("spoe-apim-sas.conf");
    let spoe_conf = example(
        "spoe-apim-sas.conf",
        &SPOE_PLACEHOLDERS,
        &[(
            "/etc/haproxy/spoe-apim-sas.conf",
            spoe_file.display().to_string(),
        )],
    );
    std::fs::write(&spoe_file, spoe_conf).unwrap();
    let cfg = example(
        "haproxy.cfg",
        &CFG_PLACEHOLDERS,
        &[
            ("127.0.0.1:8080", haproxy.to_string()),
            ("127.0.0.1:9000", api.to_string()),
            ("127.0.0.1:12345", spoe.to_string()),
            (
                "/etc/haproxy/spoe-apim-sas.conf",
                spoe_file.display().to_string(),
            ),
        ],
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    path
}

impl Stack {
    fn start() -> Stack {
        assert!(
            Path::new(HAPROXY).exists(),
            "{HAPROXY} is missing: .ci/deps/haproxy.sh installs it (apt-get install haproxy); \
             elsewhere, rebuild the tests (touch build.rs) and the HAProxy tests are ignored instead"
        );
        let dir = tempfile::tempdir().unwrap();
        let keystore = dir.path().join("gateways.json");
        self::keystore(&keystore, PRIMARY, Some(SECONDARY));
        let serve = Serve::start(&example_serve_args(&keystore));
        let (api, seen) = start_api();
        let haproxy: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let cfg = configuration(dir.path(), haproxy, api, serve.spoe);
        let haproxy_log = dir.path().join("haproxy.log");
        let process = Command::new(HAPROXY)
            .args(["-db", "-f"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&haproxy_log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("haproxy.err")).unwrap())
            .spawn()
            .unwrap();
        let stack = Stack {
            haproxy,
            serve,
            seen,
            keystore,
            haproxy_log,
            _haproxy: Running(process),
            _dir: dir,
        };
        // Ready once a valid token gets through: HAProxy listens and its check found the agent.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let answer = Conn::try_open(haproxy).and_then(|mut c| {
                c.try_send(&request("GET", "/ready", &[("Authorization", &token())]))
            });
            if answer.is_ok_and(|a| a.status == 200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "HAProxy never let a token through:\n{}",
                stack.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        stack.seen.lock().unwrap().clear();
        stack
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        Conn::open(self.haproxy).send(&request("GET", path, headers))
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn logs(&self) -> String {
        let dir = self.haproxy_log.parent().unwrap();
        format!(
            "haproxy:\n{}{}\nserve:\n{}",
            std::fs::read_to_string(&self.haproxy_log).unwrap_or_default(),
            std::fs::read_to_string(dir.join("haproxy.err")).unwrap_or_default(),
            self.serve.log()
        )
    }
}

fn identity(key_type: &str, format: &str, expiry: &str) -> Vec<(String, String)> {
    let mut identity: Vec<(String, String)> = IDENTITY
        .iter()
        .map(|(n, v)| {
            let v = match *n {
                "x-apim-key-type" => key_type,
                "x-apim-token-format" => format,
                "x-apim-token-expiry" => expiry,
                _ => v,
            };
            (n.to_string(), v.to_string())
        })
        .collect();
    identity.sort();
    identity
}

#[test]
#[cfg_attr(
    skip_haproxy,
    ignore = "HAProxy is not installed: apt-get install haproxy (.ci/deps/haproxy.sh)"
)]
fn the_examples_are_a_configuration_haproxy_takes_without_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let cfg = configuration(dir.path(), addr(18080), addr(19000), addr(22345));
    let out = Command::new(HAPROXY)
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert_eq!(text.trim(), "Configuration file is valid", "{text}");
}

#[test]
#[cfg_attr(
    skip_haproxy,
    ignore = "HAProxy is not installed: apt-get install haproxy (.ci/deps/haproxy.sh)"
)]
fn valid_tokens_reach_the_api_with_the_identity_the_agent_verified() {
    let stack = Stack::start();
    let valid_before = stack
        .serve
        .metric(r#"apim_sas_verifications_total{result="valid"}"#);
    let compact = token();
    let uid = token_for("gw1", SECONDARY, TimeDelta::hours(36), Format::Uid);
    let cases = [
        (
            format!("GatewayKey {compact}"),
            identity("primary", "compact", "2026-04-22T00:44:00Z"),
        ),
        (
            compact.clone(),
            identity("primary", "compact", "2026-04-22T00:44:00Z"),
        ),
        (
            format!("SharedAccessSignature {uid}"),
            identity("secondary", "uid", "2026-04-22T12:44:00Z"),
        ),
        // The developer portal's form: a comma in the value (req.fhdr reads it whole).
        (
            format!(r#"SharedAccessSignature token="{uid}",refresh="true""#),
            identity("secondary", "uid", "2026-04-22T12:44:00Z"),
        ),
    ];
    for (value, identity) in &cases {
        let answer = stack.get("/orders/7?x=1", &[("Authorization", value)]);
        assert_eq!(
            answer.status,
            200,
            "{value}: {}\n{}",
            answer.text(),
            stack.logs()
        );
        let seen = stack.seen();
        let last = seen.last().unwrap();
        assert_eq!(last.line, "GET /orders/7?x=1 HTTP/1.1");
        assert_eq!(&last.apim(), identity, "{value}");
        // The token itself goes on to the API, untouched.
        assert_eq!(last.header("authorization"), [value.as_str()]);
        // And the API's answer comes back as it was.
        let body: String = identity
            .iter()
            .map(|(n, v)| format!("{n}: {v}\n"))
            .collect();
        assert_eq!(answer.text(), body);
    }
    assert_eq!(stack.seen().len(), cases.len());
    // serve counted every check HAProxy asked.
    assert_eq!(
        stack
            .serve
            .metric(r#"apim_sas_verifications_total{result="valid"}"#),
        valid_before + cases.len() as u64
    );
}

#[test]
#[cfg_attr(
    skip_haproxy,
    ignore = "HAProxy is not installed: apt-get install haproxy (.ci/deps/haproxy.sh)"
)]
fn refusals_are_the_401_serve_answers_byte_for_byte() {
    let stack = Stack::start();
    let token = token();
    let forged = token.replace("&202604220044&", "&202604230044&");
    let expired = token_for("gw1", PRIMARY, TimeDelta::minutes(-5), Format::Compact);
    let unknown = token_for("gw9", PRIMARY, TimeDelta::days(1), Format::Compact);
    let long = format!("GatewayKey {}", "a".repeat(2000));
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("SignatureMismatch", vec![("Authorization", &forged)]),
        ("TokenExpired", vec![("Authorization", &expired)]),
        ("GatewayNotExist", vec![("Authorization", &unknown)]),
        ("EmptyToken", vec![]),
        ("EmptyToken", vec![("Authorization", "")]),
        ("MalformedToken", vec![("Authorization", "Bearer abc")]),
        ("TokenTooLong", vec![("Authorization", &long)]),
        // Two token headers: refused, whichever is valid (and both are).
        (
            "MalformedToken",
            vec![("Authorization", &token), ("Authorization", &token)],
        ),
        (
            "MalformedToken",
            vec![("Authorization", &forged), ("authorization", &token)],
        ),
    ];
    for (code, headers) in &cases {
        let answer = stack.get("/orders/7", headers);
        let served = stack.serve.verify(headers);
        assert_eq!(
            (answer.status, served.status),
            (401, 401),
            "{code}: {}",
            stack.logs()
        );
        let challenge = format!("SharedAccessSignature error=\"{code}\"");
        assert_eq!(answer.header("www-authenticate"), Some(challenge.as_str()));
        assert_eq!(answer.header("content-type"), Some("application/json"));
        assert_eq!(served.header("www-authenticate"), Some(challenge.as_str()));
        // The same bytes as serve's own answer, which the layer and the module share.
        assert_eq!(answer.text(), served.text(), "{code}");
        let body: serde_json::Value = serde_json::from_str(answer.text()).unwrap();
        assert_eq!(body["error"]["code"], *code);
    }
    assert!(stack.seen().is_empty(), "a refused request reached the API");
}

#[test]
#[cfg_attr(
    skip_haproxy,
    ignore = "HAProxy is not installed: apt-get install haproxy (.ci/deps/haproxy.sh)"
)]
fn no_identity_header_a_client_sends_reaches_the_api() {
    let stack = Stack::start();
    let token = format!("GatewayKey {}", token());
    let spoofed: [(&str, &str); 9] = [
        ("X-Apim-Gateway-Id", "spoofed"),
        ("x-apim-gateway-id", "spoofed-again"),
        ("X_Apim_Gateway_Id", "spoofed"),
        ("x_apim_key_type", "secondary"),
        ("X-APIM-TOKEN-EXPIRY", "2099-01-01T00:00:00Z"),
        ("x.apim.token.format", "uid"),
        ("X-Apim_Token-Format", "uid"),
        ("X-Apim-Role", "admin"),
        ("X_APIM_EXTRA", "1"),
    ];
    let mut headers = vec![("Authorization", token.as_str())];
    headers.extend_from_slice(&spoofed);
    let answer = stack.get("/", &headers);
    assert_eq!(answer.status, 200, "{}", stack.logs());
    let seen = stack.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].apim(),
        identity("primary", "compact", "2026-04-22T00:44:00Z")
    );
    // Refused: the spoofed headers go nowhere either.
    let forged = token.replace("&202604220044&", "&202604230044&");
    headers[0] = ("Authorization", forged.as_str());
    assert_eq!(stack.get("/", &headers).status, 401);
    assert_eq!(stack.seen().len(), 1);
}

/// A request's answer and how long it took.
fn timed(stack: &Stack, headers: &[(&str, &str)]) -> (Reply, Duration) {
    let started = Instant::now();
    let answer = stack.get("/", headers);
    (answer, started.elapsed())
}

const UNVERIFIED: &str = r#"{"error":{"code":"Unverified","message":"token: not verified: apim-sas did not answer","target":"token"}}"#;

#[test]
#[cfg_attr(
    skip_haproxy,
    ignore = "HAProxy is not installed: apt-get install haproxy (.ci/deps/haproxy.sh)"
)]
fn an_agent_stopped_or_killed_lets_nothing_through() {
    let mut stack = Stack::start();
    let token = token();
    let headers = [("Authorization", token.as_str())];

    // Stopped (SIGSTOP): each request waits `timeout processing` (1 s) for a verdict, then is
    // refused.
    stack.serve.process.signal("STOP");
    for _ in 0..2 {
        let (answer, took) = timed(&stack, &headers);
        assert_eq!(answer.status, 401, "{}", stack.logs());
        assert_eq!(answer.text(), UNVERIFIED);
        assert_eq!(
            answer.header("www-authenticate"),
            Some(r#"SharedAccessSignature error="Unverified""#)
        );
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }
    // Resumed: let through again.
    stack.serve.process.signal("CONT");
    let deadline = Instant::now() + Duration::from_secs(10);
    while timed(&stack, &headers).0.status != 200 {
        assert!(
            Instant::now() < deadline,
            "never let through again:\n{}",
            stack.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Killed: refused, and at once once the health check has marked the agent down (within
    // `inter` and `fall` of the kill: 1 s and 2 checks).
    let through = stack.seen().len();
    stack.serve.process.signal("KILL");
    let killed = Instant::now();
    let mut fast = 0;
    while fast < 20 {
        let (answer, took) = timed(&stack, &headers);
        assert_eq!(answer.status, 401, "{}", stack.logs());
        assert_eq!(answer.text(), UNVERIFIED);
        if took < Duration::from_millis(300) {
            fast += 1;
        } else {
            fast = 0;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "still waiting for a verdict {:?} after the kill",
            killed.elapsed()
        );
    }
    assert!(!stack.serve.process.alive());
    assert_eq!(stack.seen().len(), through, "a request reached the API");
}

#[test]
#[cfg_attr(
    skip_haproxy,
    ignore = "HAProxy is not installed: apt-get install haproxy (.ci/deps/haproxy.sh)"
)]
fn keys_rotate_under_load_without_a_failed_request() {
    let stack = Stack::start();
    let old = format!("GatewayKey {}", token());
    let rotated_key = "haproxy-test-rotated-key";
    let new = format!(
        "GatewayKey {}",
        token_for("gw1", rotated_key, TimeDelta::days(1), Format::Compact)
    );
    let done = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (done, sent, failures) = (done.clone(), sent.clone(), failures.clone());
            let (addr, old) = (stack.haproxy, old.clone());
            std::thread::spawn(move || {
                let mut conn = Conn::open(addr);
                while !done.load(Ordering::Relaxed) {
                    let answer = conn.send(&request("GET", "/load", &[("Authorization", &old)]));
                    if answer.status != 200 {
                        failures.lock().unwrap().push(format!(
                            "{} {}",
                            answer.status,
                            answer.text()
                        ));
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // The old key stays as the secondary while the new one becomes the primary, and back:
    // every swap seen by serve (SIGHUP) before the next.
    for swap in 0..6 {
        let rotated = swap % 2 == 0;
        if rotated {
            keystore(&stack.keystore, rotated_key, Some(PRIMARY));
        } else {
            keystore(&stack.keystore, PRIMARY, Some(SECONDARY));
        }
        stack.serve.process.signal("HUP");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = stack.get("/", &[("Authorization", &new)]).status;
            if (status == 200) == rotated {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "swap {swap} never seen:\n{}",
                stack.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    done.store(true, Ordering::Relaxed);
    for thread in load {
        thread.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    let sent = sent.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {sent} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(sent >= 100, "only {sent} requests under load");
    eprintln!("{sent} requests during 6 key swaps, none failed");
}

/// serve alone, from the example's command line plus `extra`, with its keystore in `dir`.
fn serve_alone(dir: &Path, extra: &[&str]) -> Serve {
    let keystore = dir.join("gateways.json");
    self::keystore(&keystore, PRIMARY, Some(SECONDARY));
    let mut args = example_serve_args(&keystore);
    args.extend(extra.iter().map(|a| a.to_string()));
    Serve::start(&args)
}

fn disconnect(status: u64, reason: &str) -> Vec<u8> {
    spop::agent_disconnect(status, reason)
}

#[test]
fn the_spoe_port_answers_haproxys_frames_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_alone(dir.path(), &[]);
    let token = format!("GatewayKey {}", token());

    // The health check (`option spop-check`): answered, then closed.
    let mut peer = Peer::connect(serve.spoe);
    peer.send(&spop::hello(true));
    assert_eq!(peer.frame(), spop::agent_hello());
    assert!(peer.closed_within(Duration::from_secs(2)));

    // A connection: HELLO, then pipelined NOTIFYs answered in order, each written a byte at a
    // time and the three sent in one write, then HAProxy's DISCONNECT answered and closed.
    let mut peer = Peer::connect(serve.spoe);
    for byte in spop::hello(false) {
        peer.send(&[byte]);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(peer.frame(), spop::agent_hello());
    let valid = spop::notify(
        7,
        1,
        &[
            (b"token", spop::str_data(token.as_bytes())),
            (b"count", spop::int64(1)),
        ],
    );
    for byte in &valid {
        peer.send(&[*byte]);
    }
    assert_eq!(
        peer.frame(),
        spop::ack_valid(7, 1, ["gw1", "primary", "2026-04-22T00:44:00Z", "compact"])
    );
    let missing = serve.verify(&[]);
    let twice = serve.verify(&[("Authorization", &token), ("Authorization", &token)]);
    let mut burst = spop::notify(
        8,
        1,
        &[(b"token", spop::NULL.to_vec()), (b"count", spop::int64(0))],
    );
    burst.extend(spop::notify(
        8,
        2,
        &[
            (b"token", spop::str_data(token.as_bytes())),
            (b"count", spop::int64(2)),
        ],
    ));
    burst.extend(spop::notify(
        300,
        9,
        &[(b"token", spop::str_data(token.as_bytes()))],
    ));
    peer.send(&burst);
    assert_eq!(
        peer.frame(),
        spop::ack_refused(8, 1, "EmptyToken", &missing.body)
    );
    assert_eq!(
        peer.frame(),
        spop::ack_refused(8, 2, "MalformedToken", &twice.body)
    );
    assert_eq!(
        peer.frame(),
        spop::ack_valid(
            300,
            9,
            ["gw1", "primary", "2026-04-22T00:44:00Z", "compact"]
        )
    );
    peer.send(&spop::haproxy_disconnect());
    assert_eq!(peer.frame(), disconnect(0, "normal"));
    assert!(peer.closed_within(Duration::from_secs(2)));
    assert_eq!(
        serve.metric(r#"apim_sas_verifications_total{result="valid"}"#),
        2
    );
}

#[test]
fn hostile_frames_are_refused_with_the_protocols_error_and_a_closed_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = serve_alone(dir.path(), &[]);
    let notify = spop::notify(1, 1, &[(b"token", spop::NULL.to_vec())]);
    let with_type = |kind: u8, frame: &[u8]| {
        let mut frame = frame.to_vec();
        frame[4] = kind;
        frame
    };
    let mut unfinished = notify.clone();
    unfinished[8] = 0; // FIN cleared: a first fragment
    let mut overrun = spop::hello(false);
    overrun.truncate(overrun.len() - 10); // a HELLO whose last value runs past its end
    let len = (overrun.len() - 4) as u32;
    overrun[..4].copy_from_slice(&len.to_be_bytes());
    let no_versions = spop::frame(
        1,
        spop::FIN,
        0,
        0,
        &[spop::string(b"max-frame-size"), spop::uint32(16380)].concat(),
    );
    let invalid = (4, "invalid frame received");
    // What is sent, whether after a HELLO, the bytes, the status and reason answered.
    type Case<'a> = (&'a str, bool, Vec<u8>, (u64, &'a str));
    let cases: Vec<Case<'_>> = vec![
        ("a NOTIFY before the HELLO", false, notify.clone(), invalid),
        ("a second HELLO", true, spop::hello(false), invalid),
        (
            "an unknown frame type",
            true,
            with_type(42, &notify),
            invalid,
        ),
        (
            "an agent's frame type",
            true,
            with_type(103, &notify),
            invalid,
        ),
        (
            "a fragment",
            true,
            unfinished,
            (10, "fragmentation not supported"),
        ),
        (
            "a continuation fragment",
            true,
            with_type(0, &notify),
            (10, "fragmentation not supported"),
        ),
        (
            "a length too short for a frame",
            true,
            vec![0, 0, 0, 3, 3, 0, 0],
            invalid,
        ),
        (
            "a length over the maximum",
            true,
            vec![0x7F, 0xFF, 0xFF, 0xFF],
            (3, "frame is too big"),
        ),
        (
            "a length one over the maximum",
            true,
            vec![0, 0, 0x3F, 0xFD],
            (3, "frame is too big"),
        ),
        (
            "HTTP instead of SPOP",
            false,
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            (3, "frame is too big"),
        ),
        ("a HELLO whose value runs past it", false, overrun, invalid),
        (
            "a HELLO without versions",
            false,
            no_versions,
            (5, "version value not found"),
        ),
    ];
    for (what, after_hello, bad, (status, reason)) in cases {
        let mut peer = Peer::connect(serve.spoe);
        if after_hello {
            peer.send(&spop::hello(false));
            assert_eq!(peer.frame(), spop::agent_hello(), "{what}");
        }
        peer.send(&bad);
        assert_eq!(peer.frame(), disconnect(status, reason), "{what}");
        assert!(
            peer.closed_within(Duration::from_secs(3)),
            "{what}: not closed"
        );
    }
    // A frame of the largest size agreed is read whole (and refused only for its payload).
    let mut peer = Peer::connect(serve.spoe);
    peer.send(&spop::hello(false));
    assert_eq!(peer.frame(), spop::agent_hello());
    let mut largest = spop::frame(3, spop::FIN, 1, 1, &vec![0xFF; 16380 - 7]);
    assert_eq!(largest.len(), 16384);
    peer.send(&largest[..8000]);
    std::thread::sleep(Duration::from_millis(50));
    peer.send(&largest.split_off(8000));
    assert_eq!(peer.frame(), disconnect(4, "invalid frame received"));
    assert!(peer.closed_within(Duration::from_secs(3)));

    // serve lives on, and answers as before.
    assert!(serve.process.alive());
    let mut peer = Peer::connect(serve.spoe);
    peer.send(&spop::hello(false));
    assert_eq!(peer.frame(), spop::agent_hello());
    peer.send(&notify);
    let missing = serve.verify(&[]);
    assert_eq!(
        peer.frame(),
        spop::ack_refused(1, 1, "EmptyToken", &missing.body)
    );
    // Each protocol error logged, once (the lines leave serve through a queue: wait for them).
    let broken = || {
        serve
            .log()
            .matches("SPOE connection closed: the peer broke the protocol")
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while broken() < 13 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(broken(), 13, "{}", serve.log());
}

#[test]
fn slow_idle_and_surplus_spoe_connections_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_alone(
        dir.path(),
        &[
            "--head-timeout",
            "1s",
            "--idle-timeout",
            "2s",
            "--max-connections",
            "3",
        ],
    );
    let timeout = disconnect(2, "a timeout occurred");

    // Half a HELLO, then nothing: told and closed after the head timeout.
    let started = Instant::now();
    let mut slow = Peer::connect(serve.spoe);
    slow.send(&spop::hello(false)[..20]);
    assert_eq!(slow.frame(), timeout);
    assert!(slow.closed_within(Duration::from_secs(2)));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    drop(slow);

    // A frame begun after the HELLO and never finished: the same.
    let mut stalled = Peer::connect(serve.spoe);
    stalled.send(&spop::hello(false));
    assert_eq!(stalled.frame(), spop::agent_hello());
    let started = Instant::now();
    stalled.send(&spop::notify(1, 1, &[])[..6]);
    assert_eq!(stalled.frame(), timeout);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    drop(stalled);

    // Idle after its HELLO: told and closed after the idle timeout (2 s).
    let mut idle = Peer::connect(serve.spoe);
    idle.send(&spop::hello(false));
    assert_eq!(idle.frame(), spop::agent_hello());
    let started = Instant::now();
    assert_eq!(idle.frame(), timeout);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    drop(idle);

    // Three connections at most, the HTTP port's included: a fourth waits for a slot.
    let mut held: Vec<Peer> = (0..3)
        .map(|_| {
            let mut peer = Peer::connect(serve.spoe);
            peer.send(&spop::hello(false));
            assert_eq!(peer.frame(), spop::agent_hello());
            peer
        })
        .collect();
    let mut waiting = Peer::connect(serve.spoe);
    waiting.send(&spop::hello(false));
    waiting
        .stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert_eq!(waiting.read(4), b"", "a fourth connection was served");
    let mut http = TcpStream::connect(serve.http).unwrap();
    http.write_all(&request("GET", "/healthz", &[])).unwrap();
    http.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        std::io::Read::read(&mut http, &mut byte).is_err(),
        "the HTTP port took a slot the SPOE port holds"
    );
    drop(http);
    drop(held.pop());
    waiting
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(waiting.frame(), spop::agent_hello());
}

#[test]
fn the_guides_configuration_is_the_examples() {
    let guide = std::fs::read_to_string("docs/haproxy.md").unwrap();
    let examples: Vec<String> = ["haproxy.cfg", "spoe-apim-sas.conf"]
        .iter()
        .flat_map(|name| {
            std::fs::read_to_string(format!("examples/{name}"))
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    let mut blocks = 0;
    let mut in_block = false;
    for (n, line) in guide.lines().enumerate() {
        if line == "```haproxy" {
            in_block = true;
            blocks += 1;
        } else if line == "```" {
            in_block = false;
        } else if in_block && !line.is_empty() {
            assert!(
                examples.iter().any(|l| l == line),
                "docs/haproxy.md:{}: not a line of the examples: {line}",
                n + 1
            );
        }
    }
    assert_eq!(blocks, 3);
    // The command that starts serve, as the example's comment gives it.
    let command =
        "apim-sas serve --keystore /etc/apim-sas/gateways.json --spoe-listen 127.0.0.1:12345";
    assert!(guide.lines().any(|l| l == command));
    assert!(examples.iter().any(|l| l == &format!("#   {command}")));
}

#[test]
fn a_spoe_address_serve_cannot_listen_on_stops_it_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let keystore = dir.path().join("gateways.json");
    self::keystore(&keystore, PRIMARY, None);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    for (address, says) in [
        (
            "nope",
            "--spoe-listen nope: not an ADDR:PORT, e.g. 127.0.0.1:12345".to_owned(),
        ),
        (
            taken.as_str(),
            format!("--spoe-listen {taken}: cannot listen"),
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_apim-sas"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--spoe-listen",
                address,
                "--keystore",
            ])
            .arg(&keystore)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&says), "{stderr}");
    }
}
