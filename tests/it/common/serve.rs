//! `apim-sas serve`, the real binary, for the tests that drive it or put a gateway in front of
//! it: started on a loopback port, its address read from its `listening on http://ADDR` line, its
//! stderr kept, ready once `/readyz` answers 200; killed, by its own id, when dropped. And the
//! keystore files it reads, written as a deploy tool writes them.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::http::{request, Conn, Reply};
use super::wait_until;

const BIN: &str = env!("CARGO_BIN_EXE_apim-sas");

/// Writes `text` to `path` as a deploy tool swaps a file in: a temporary file with `mode`,
/// renamed over `path`.
pub fn write_with_mode(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `write_with_mode` with mode 600, what serve wants of a key file.
pub fn write_private(path: &Path, text: &str) {
    write_with_mode(path, text, 0o600);
}

/// A keystore file of its own, `keystore.json` (mode 600) in a temporary directory, rewritten
/// atomically.
pub struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    pub fn new(text: &str) -> Keys {
        let keys = Keys {
            dir: tempfile::tempdir().unwrap(),
        };
        keys.write(text);
        keys
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("keystore.json")
    }

    pub fn arg(&self) -> String {
        self.path().to_str().unwrap().to_owned()
    }

    /// New contents, renamed over the file.
    pub fn write(&self, text: &str) {
        write_private(&self.path(), text);
    }
}

/// The address in the first `listening on SCHEME://ADDR` line of `text`, if it holds one.
fn listening_addr(text: &str, scheme: &str) -> Option<SocketAddr> {
    let (_, rest) = text.split_once(&format!("listening on {scheme}://"))?;
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    addr.parse().ok()
}

/// What serve has written on stderr, as far as it is kept.
struct Stderr {
    bytes: Vec<u8>,
    /// Complete lines in `bytes`.
    complete: usize,
    /// The most lines kept; what comes after is read and dropped.
    keep: usize,
}

impl Stderr {
    fn push(&mut self, chunk: &[u8]) {
        let mut end = 0;
        for &byte in chunk {
            if self.complete == self.keep {
                break;
            }
            end += 1;
            if byte == b'\n' {
                self.complete += 1;
            }
        }
        self.bytes.extend_from_slice(&chunk[..end]);
    }

    /// The text up to the last complete line.
    fn lines(&self) -> String {
        let end = self
            .bytes
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        String::from_utf8_lossy(&self.bytes[..end]).into_owned()
    }
}

/// Reads serve's stderr into `sink` and sends the address of its `listening on http://` line.
/// With `stall`, one byte at a time up to that line, so that nothing after it is taken from the
/// pipe, and sends the pipe along, unread.
fn read_stderr(
    mut stderr: ChildStderr,
    sink: &Mutex<Stderr>,
    found: Sender<(SocketAddr, Option<ChildStderr>)>,
    stall: bool,
) {
    if stall {
        let mut byte = [0u8; 1];
        while let Ok(1) = stderr.read(&mut byte) {
            let mut kept = sink.lock().unwrap();
            kept.push(&byte);
            if byte[0] == b'\n' {
                if let Some(addr) = listening_addr(&kept.lines(), "http") {
                    drop(kept);
                    let _ = found.send((addr, Some(stderr)));
                    return;
                }
            }
        }
        return;
    }
    let mut chunk = [0u8; 8192];
    let mut sent = false;
    while let Ok(n @ 1..) = stderr.read(&mut chunk) {
        let mut kept = sink.lock().unwrap();
        kept.push(&chunk[..n]);
        if !sent {
            if let Some(addr) = listening_addr(&kept.lines(), "http") {
                let _ = found.send((addr, None));
                sent = true;
            }
        }
    }
}

/// How to start serve: `apim-sas serve --listen 127.0.0.1:0`, the flags given, and how its
/// stdin and stderr are wired. Made by `Serve::command`.
pub struct ServeCommand {
    listen: String,
    now: Option<String>,
    keys: Option<Keys>,
    args: Vec<OsString>,
    stdin: bool,
    stall: bool,
    keep_lines: usize,
    ulimit: Option<String>,
}

impl ServeCommand {
    /// `--now NOW`: serve's clock fixed, for tokens signed against it.
    pub fn now(mut self, now: &str) -> ServeCommand {
        self.now = Some(now.to_owned());
        self
    }

    /// `--listen ADDR` instead of `127.0.0.1:0` (a port the test chose: one a serve before
    /// it held).
    pub fn listen(mut self, addr: &str) -> ServeCommand {
        self.listen = addr.to_owned();
        self
    }

    /// `--keystore FILE`.
    pub fn keystore(self, file: impl AsRef<OsStr>) -> ServeCommand {
        self.args([OsStr::new("--keystore"), file.as_ref()])
    }

    /// `--keystore FILE` with `text` written to a file of its own (`Keys`), kept as long as
    /// serve.
    pub fn keystore_text(mut self, text: &str) -> ServeCommand {
        let keys = Keys::new(text);
        self = self.keystore(keys.path());
        self.keys = Some(keys);
        self
    }

    /// More flags.
    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> ServeCommand {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// stdin a pipe (`Serve::stdin`), for `--keystore -`; otherwise it is /dev/null.
    pub fn stdin_piped(mut self) -> ServeCommand {
        self.stdin = true;
        self
    }

    /// stderr read only up to the `listening on` line, then left unread until `Serve::stop`: a
    /// stderr nobody reads.
    pub fn stall_stderr(mut self) -> ServeCommand {
        self.stall = true;
        self
    }

    /// Keeps the first `lines` lines of stderr and drops the rest (load tests that make serve
    /// log every refusal). All of it by default.
    pub fn keep_lines(mut self, lines: usize) -> ServeCommand {
        self.keep_lines = lines;
        self
    }

    /// Started by `sh` after `ulimit LIMIT` (`-Sn 1024`: the soft limit of open files, as
    /// systemd sets it).
    pub fn ulimit(mut self, limit: &str) -> ServeCommand {
        self.ulimit = Some(limit.to_owned());
        self
    }

    /// serve, once `/readyz` answers 200 (within 10 s).
    #[track_caller]
    pub fn start(self) -> Serve {
        let serve = self.start_unready();
        serve.await_ready();
        serve
    }

    /// serve, once it listens, ready or not.
    #[track_caller]
    pub fn start_unready(self) -> Serve {
        self.try_start().unwrap_or_else(|(status, log)| {
            panic!("serve exited ({status:?}) before listening:\n{log}")
        })
    }

    /// serve once it listens, or how it exited (none: it was killed, not listening after 20 s)
    /// and what it wrote.
    pub fn try_start(self) -> Result<Serve, (Option<ExitStatus>, String)> {
        let mut command = match &self.ulimit {
            None => Command::new(BIN),
            Some(limit) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!(r#"ulimit {limit} && exec "$0" "$@""#), BIN]);
                sh
            }
        };
        command.args(["serve", "--listen", &self.listen]);
        if let Some(now) = &self.now {
            command.args(["--now", now]);
        }
        let mut child = command
            .args(&self.args)
            .env_remove("APIM_SAS_KEY")
            .stdin(match self.stdin {
                true => Stdio::piped(),
                false => Stdio::null(),
            })
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let kept = Arc::new(Mutex::new(Stderr {
            bytes: Vec::new(),
            complete: 0,
            keep: self.keep_lines,
        }));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&kept);
        let stall = self.stall;
        let reader = std::thread::spawn(move || read_stderr(stderr, &sink, tx, stall));
        let log = || kept.lock().unwrap().lines();
        let deadline = Instant::now() + Duration::from_secs(20);
        let (addr, unread) = loop {
            if let Ok(found) = rx.recv_timeout(Duration::from_millis(20)) {
                break found;
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                return Err((Some(status), log()));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err((None, log()));
            }
        };
        Ok(Serve {
            child,
            addr,
            stderr: kept,
            reader: Some(reader),
            unread,
            stopped: AtomicBool::new(false),
            _keys: self.keys,
        })
    }
}

/// The running binary; killed (by its own id) when dropped.
pub struct Serve {
    child: Child,
    /// Its HTTP address, from its `listening on http://` line.
    pub addr: SocketAddr,
    stderr: Arc<Mutex<Stderr>>,
    reader: Option<JoinHandle<()>>,
    /// A stderr nobody reads (`ServeCommand::stall_stderr`), kept open.
    unread: Option<ChildStderr>,
    /// Stopped by SIGSTOP, not continued since.
    stopped: AtomicBool,
    _keys: Option<Keys>,
}

impl Serve {
    /// `apim-sas serve --listen 127.0.0.1:0`, to be given its flags.
    pub fn command() -> ServeCommand {
        ServeCommand {
            listen: "127.0.0.1:0".to_owned(),
            now: None,
            keys: None,
            args: Vec::new(),
            stdin: false,
            stall: false,
            keep_lines: usize::MAX,
            ulimit: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its stdin (`ServeCommand::stdin_piped`), taken: dropping it closes the pipe.
    pub fn stdin(&mut self) -> ChildStdin {
        self.child
            .stdin
            .take()
            .expect("stdin piped, and taken once")
    }

    /// How it exited, if it has.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Its stderr so far, up to its last complete line.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().lines()
    }

    /// Every byte of its stderr kept so far (all of it once `stop` has returned).
    pub fn stderr(&self) -> Vec<u8> {
        self.stderr.lock().unwrap().bytes.clone()
    }

    /// Waits until a log line contains `text`.
    #[track_caller]
    pub fn wait_log(&self, text: &str, within: Duration) {
        wait_until(
            within,
            || self.log().contains(text),
            || format!("no log line with {text:?}:\n{}", self.log()),
        );
    }

    /// Waits (10 s) until `/readyz` answers 200.
    #[track_caller]
    pub fn await_ready(&self) {
        wait_until(
            Duration::from_secs(10),
            || self.try_get("/readyz").is_some_and(|r| r.status == 200),
            || format!("never ready:\n{}", self.log()),
        );
    }

    /// `kill -NAME` its pid.
    #[track_caller]
    pub fn signal(&self, name: &str) {
        super::process::signal(self.pid(), name);
        match name {
            "STOP" => self.stopped.store(true, Ordering::SeqCst),
            "CONT" => self.stopped.store(false, Ordering::SeqCst),
            _ => {}
        }
    }

    /// How it exited, within `within`.
    #[track_caller]
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "still running:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, as an operator stops it, and how it exited (within 15 s: its drain is 10 s);
    /// then every byte it wrote is in `stderr` (a stalled stderr is read from now on).
    #[track_caller]
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(mut unread) = self.unread.take() {
            let sink = Arc::clone(&self.stderr);
            self.reader = Some(std::thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                while let Ok(n @ 1..) = unread.read(&mut chunk) {
                    sink.lock().unwrap().push(&chunk[..n]);
                }
            }));
        }
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = self.try_wait() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("still running 15 s after SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        status
    }

    /// Resident memory of the process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// CPU time the process has used (user + system).
    pub fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
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

    /// A connection of its own to the HTTP port.
    pub fn conn(&self) -> Conn {
        Conn::open(self.addr)
    }

    /// A GET on a new connection; none when the connection fails.
    pub fn try_get(&self, path: &str) -> Option<Reply> {
        let mut conn = Conn::try_open(self.addr).ok()?;
        conn.try_send(&request("GET", path, &[])).ok()
    }

    /// Its own answer to `GET /verify` with these headers, on a new connection.
    pub fn verify(&self, headers: &[(&str, &str)]) -> Reply {
        self.conn().send(&request("GET", "/verify", headers))
    }

    /// `/metrics`, which must answer 200.
    pub fn metrics(&self) -> String {
        let reply = self.conn().send(&request("GET", "/metrics", &[]));
        assert_eq!(reply.status, 200);
        String::from_utf8(reply.body).unwrap()
    }

    /// The value of one sample line of `/metrics`, which must be there.
    #[track_caller]
    pub fn metric(&self, sample: &str) -> f64 {
        let text = self.metrics();
        text.lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no sample {sample} in:\n{text}"))
            .parse()
            .unwrap()
    }

    /// The value of one sample line of `/metrics`, 0 while serve has not made it.
    pub fn metric_or_zero(&self, sample: &str) -> f64 {
        let reply = self.conn().send(&request("GET", "/metrics", &[]));
        reply
            .text()
            .lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|v| v.strip_prefix(' ')))
            .map_or(0.0, |v| v.parse().unwrap())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if self.stopped.load(Ordering::SeqCst) {
                // A stopped process dies of SIGKILL too; continued, it leaves no doubt.
                let _ = Command::new("kill")
                    .args(["-CONT", &self.pid().to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
