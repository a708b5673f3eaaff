//! `apim-sas serve` under hostile conditions, the real binary over real TCP: key files that
//! block (FIFOs), a thousand connections held open and never read, a stderr nobody reads, log
//! lines carrying line breaks and bidi controls, and clients that half-close. One test per
//! finding of the serve hardening; each names its finding.
//!
//! The tests run one at a time (a lock): two of them load the machine, and the others hold the
//! service to bounds of a few seconds (`RESPONSIVE`).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use apim_sas::chrono::{DateTime, TimeDelta, Utc};
use apim_sas::Format;

use crate::common::http::{authorized, request, Conn, Reply};
use crate::common::serve::{write_private, write_with_mode, Serve, ServeCommand};
use crate::common::tokens::TestKeys;
use crate::common::{one_at_a_time, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_apim-sas");
const NOW: &str = "2026-04-21T00:44:00Z";
/// In every key these tests write; must never appear in a log line.
const CANARY: &str = "CANARY-hostile-7c2a-never-log-me";

const KEYS: TestKeys = TestKeys::new(CANARY, "");

/// A token for gateway `id` signed with `KEYS.key(key_name)`, valid for a day after NOW.
fn day_token(id: &str, key_name: &str) -> String {
    let now = DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .with_timezone(&Utc);
    KEYS.sign(id, key_name, Format::Compact, now + TimeDelta::days(1))
}

/// `{"gw1": {"primary": KEYS.key(primary)}}`.
fn keystore(primary: &str) -> String {
    KEYS.keystore(&[("gw1", primary, None)])
}

/// Makes a FIFO at `path` with `mkfifo` (build.rs found it; the test fails if it fails).
fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .args(["-m", "600"])
        .arg(path)
        .status();
    assert!(
        status.as_ref().is_ok_and(|s| s.success()),
        "mkfifo {} failed ({status:?}): .ci/run has coreutils; elsewhere, rebuild the tests \
         (touch build.rs) and this test is ignored instead",
        path.display()
    );
}

/// Whether `program --version` runs.
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `apim-sas serve --listen 127.0.0.1:0 --now NOW ARGS`.
fn serve(args: &[&str]) -> ServeCommand {
    Serve::command().now(NOW).args(args)
}

/// Runs the binary to its end (killed after 10 s): its output and how long it took.
fn run_briefly(args: &[&str]) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("APIM_SAS_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = started + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "{args:?} still running after 10 s:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = started.elapsed();
    (child.wait_with_output().unwrap(), took)
}

fn count_log(server: &Serve, text: &str) -> usize {
    server.log().matches(text).count()
}

/// SIGTERM, then everything serve wrote on stderr, to the end (a stalled stderr is read now).
fn stderr_to_end(mut server: Serve) -> Vec<u8> {
    server.stop();
    server.stderr()
}

/// Its (soft, hard) limit of open files, from /proc.
fn open_files_limit(server: &Serve) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line["Max open files".len()..].split_whitespace().collect();
    (fields[0].to_owned(), fields[1].to_owned())
}

/// How soon a request must be answered for the service to count as not stalled: three times the
/// second an answer takes at most here with both cores loaded (a test, the holder, serve), and
/// under every bound a stall would show (the key file's 5 s read deadline, the 75 s idle
/// timeout, a log line blocked for good).
const RESPONSIVE: Duration = Duration::from_secs(3);

/// Sends `req` on a new connection and times the answer, which must be `status`.
fn answers_within(server: &Serve, req: &[u8], status: u16, within: Duration) -> Reply {
    let started = Instant::now();
    let mut conn = server.conn();
    conn.stream.set_read_timeout(Some(within * 5)).unwrap();
    let reply = conn
        .try_send(req)
        .unwrap_or_else(|e| panic!("no answer ({e}) after {:?}", started.elapsed()));
    let took = started.elapsed();
    assert_eq!(reply.status, status, "{reply:?}");
    assert!(took < within, "answered after {took:?}");
    reply
}

// ---------------------------------------------------------------------------------------------
// 1. Key files that block never stall reloads.
// ---------------------------------------------------------------------------------------------

/// Finding 1, "key files that block never stall reloads": a FIFO as the key file or keystore at
/// start is refused at once (exit 2, `InvalidKeyFile`); a FIFO renamed over the keystore while
/// serving is a failed reload (logged, counted) by the poll and by SIGHUP, the old key serving;
/// a good keystore renamed in after it is loaded by the next poll (within 2 s) and by SIGHUP.
#[test]
#[cfg_attr(
    skip_mkfifo,
    ignore = "mkfifo is not installed: apt-get install -y coreutils"
)]
fn key_files_that_block_never_stall_reloads() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.json");
    mkfifo(&fifo);

    // At start: refused without waiting for a writer.
    let fifo_arg = fifo.to_str().unwrap();
    for source in [
        vec!["--keystore", fifo_arg],
        vec!["--key-file", fifo_arg, "--id", "gw1"],
        vec!["--keystore", fifo_arg, "--log-format", "json"],
    ] {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--now", NOW];
        args.extend(&source);
        let (output, took) = run_briefly(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!("{source:?}: exit {:?} after {took:?}", output.status.code());
        assert_eq!(output.status.code(), Some(2), "{source:?}:\n{stderr}");
        assert!(stderr.contains("InvalidKeyFile"), "{source:?}:\n{stderr}");
        assert!(took < Duration::from_secs(1), "{source:?}: took {took:?}");
        if source.contains(&"json") {
            for line in stderr.lines() {
                let record: Result<serde_json::Value, _> = serde_json::from_str(line);
                assert!(
                    record.is_ok_and(|r| r.is_object()),
                    "not a JSON line: {line}"
                );
            }
        }
    }

    // While serving, found by the poll (every 500 ms by default).
    let path = dir.path().join("keystore.json");
    write_private(&path, &keystore("p1"));
    let server = serve(&["--keystore", path.to_str().unwrap()]).start();
    let (old, new) = (day_token("gw1", "p1"), day_token("gw1", "p2"));
    answers_within(&server, &authorized("/verify", &old), 200, RESPONSIVE);
    swap_in_fifo(dir.path(), &path);
    let errors = r#"apim_sas_keystore_reloads_total{result="error"}"#;
    let oks = r#"apim_sas_keystore_reloads_total{result="ok"}"#;
    wait_until(
        Duration::from_secs(2),
        || server.metric(errors) >= 1.0,
        || {
            format!(
                "the FIFO was not a failed reload within 2 s:\n{}",
                server.log()
            )
        },
    );
    server.wait_log("key reload failed", Duration::from_secs(1));
    let log = server.log();
    let failed = log
        .lines()
        .find(|l| l.contains("key reload failed"))
        .unwrap();
    assert!(failed.contains("InvalidKeyFile"), "{failed}");
    answers_within(&server, &authorized("/verify", &old), 200, RESPONSIVE);
    answers_within(&server, &request("GET", "/readyz", &[]), 200, RESPONSIVE);

    // SIGHUP on the FIFO: another failed reload, not a stuck one.
    server.signal("HUP");
    wait_until(
        Duration::from_secs(2),
        || server.metric(errors) >= 2.0,
        || {
            format!(
                "SIGHUP on the FIFO was not a failed reload:\n{}",
                server.log()
            )
        },
    );
    answers_within(&server, &authorized("/verify", &old), 200, RESPONSIVE);
    assert_eq!(server.metric(oks), 0.0);

    // A good keystore renamed in: the next poll loads it.
    let renamed = Instant::now();
    write_private(&path, &keystore("p2"));
    wait_until(
        Duration::from_secs(2),
        || server.conn().send(&authorized("/verify", &new)).status == 200,
        || {
            format!(
                "the good keystore was not loaded within 2 s:\n{}",
                server.log()
            )
        },
    );
    eprintln!(
        "poll: the good keystore served after {:?}",
        renamed.elapsed()
    );
    assert_eq!(server.conn().send(&authorized("/verify", &old)).status, 401);
    assert!(server.metric(oks) >= 1.0, "{}", server.metrics());
    assert!(!server.log().contains(CANARY), "{}", server.log());
    drop(server);

    // Without the poll: SIGHUP alone, on the FIFO and then on the good keystore.
    write_private(&path, &keystore("p1"));
    let server = serve(&["--keystore", path.to_str().unwrap(), "--poll", "none"]).start();
    swap_in_fifo(dir.path(), &path);
    server.signal("HUP");
    wait_until(
        Duration::from_secs(2),
        || server.metric(errors) == 1.0,
        || {
            format!(
                "SIGHUP on the FIFO was not a failed reload:\n{}",
                server.log()
            )
        },
    );
    server.wait_log("key reload failed", Duration::from_secs(1));
    answers_within(&server, &authorized("/verify", &old), 200, RESPONSIVE);
    write_private(&path, &keystore("p2"));
    server.signal("HUP");
    wait_until(
        Duration::from_secs(2),
        || server.conn().send(&authorized("/verify", &new)).status == 200,
        || format!("SIGHUP did not load the good keystore:\n{}", server.log()),
    );
    assert_eq!(server.conn().send(&authorized("/verify", &old)).status, 401);
    assert_eq!(server.metric(oks), 1.0, "{}", server.metrics());
    assert_eq!(server.metric(errors), 1.0, "{}", server.metrics());
}

/// Makes a FIFO beside `path` and renames it over `path`.
fn swap_in_fifo(dir: &Path, path: &Path) {
    let fifo = dir.join("next-fifo");
    mkfifo(&fifo);
    std::fs::rename(&fifo, path).unwrap();
}

// ---------------------------------------------------------------------------------------------
// 2. Bounded connections.
// ---------------------------------------------------------------------------------------------

/// Holds connections open from Python (its own file limit raised), each pipelining
/// `GET /metrics` and never reading; on `check SECONDS`, reads them all for that long and tells
/// how many the server had closed (EOF or reset).
const HOLDER: &str = r#"
import resource, selectors, socket, sys, time

host, port, count, pipelined = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = count + 64
if hard != resource.RLIM_INFINITY and hard < want:
    print(f"skip hard RLIMIT_NOFILE {hard} < {want}", flush=True)
    sys.exit(0)
if soft != resource.RLIM_INFINITY and soft < want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
burst = b"GET /metrics HTTP/1.1\r\nHost: held\r\n\r\n" * pipelined
held, failed = [], 0
for _ in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # A small window and small segments: the server's writes stall after a few KiB.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1024)
    s.settimeout(5)
    try:
        s.connect((host, port))
        s.sendall(burst)
        held.append(s)
    except OSError as e:
        failed += 1
        print(f"connection {len(held) + failed}: {e!r}", file=sys.stderr, flush=True)
        s.close()
print(f"held {len(held)} failed {failed}", flush=True)
for line in sys.stdin:
    words = line.split()
    if not words or words[0] != "check":
        break
    deadline = time.monotonic() + float(words[1])
    sel = selectors.DefaultSelector()
    for s in held:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    closed, pending = 0, len(held)
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for key, _ in sel.select(left):
            try:
                data = key.fileobj.recv(1 << 16)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                closed += 1
                pending -= 1
                sel.unregister(key.fileobj)
    print(f"closed {closed} open {pending}", flush=True)
"#;

/// The Python process holding connections; killed when dropped.
struct Holder {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    _dir: tempfile::TempDir,
}

impl Holder {
    /// Opens `count` connections to `addr`, each sending `pipelined` requests; the number held,
    /// or why not (the hard limit of open files is too low).
    fn hold(addr: SocketAddr, count: usize, pipelined: usize) -> Result<(Holder, usize), String> {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("hold.py");
        std::fs::write(&script, HOLDER).unwrap();
        let mut child = Command::new("python3")
            .arg(&script)
            .args([
                addr.ip().to_string(),
                addr.port().to_string(),
                count.to_string(),
                pipelined.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut holder = Holder {
            child,
            stdin,
            stdout,
            _dir: dir,
        };
        let line = holder.line();
        if line.starts_with("skip") {
            return Err(line);
        }
        let held = line
            .strip_prefix("held ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("holder said {line:?}"));
        eprintln!("holder: {line}");
        Ok((holder, held))
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim().to_owned()
    }

    /// (closed, open) after reading every connection for `seconds`.
    fn check(&mut self, seconds: f64) -> (usize, usize) {
        writeln!(self.stdin, "check {seconds}").unwrap();
        self.stdin.flush().unwrap();
        let line = self.line();
        let words: Vec<&str> = line.split(' ').collect();
        match words[..] {
            ["closed", closed, "open", open] => (closed.parse().unwrap(), open.parse().unwrap()),
            _ => panic!("holder said {line:?}"),
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `serve ARGS` started by `sh` after `ulimit LIMIT` (`-Sn 1024`: the soft limit of open
/// files, as systemd sets it).
fn serve_under_ulimit(limit: &str, args: &[&str]) -> Serve {
    serve(args).ulimit(limit).start()
}

/// The `max_connections` the `listening on` line gives, if it gives one.
fn max_connections_logged(server: &Serve) -> Option<usize> {
    let log = server.log();
    let line = log.lines().find(|l| l.contains("listening on http://"))?;
    let at = line.find("max_connections")? + "max_connections".len();
    let digits: String = line[at..]
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

const HELD: usize = 1100;
/// Pipelined per held connection: more answers than the socket buffers take.
const PIPELINED: usize = 1024;

/// Finding 2's first step, which needs neither python3 nor a high hard limit: under `ulimit -Sn
/// 1024` serve raises its soft limit of open files to the hard one.
#[test]
fn serve_raises_its_soft_limit_of_open_files_to_the_hard_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keystore.json");
    write_private(&path, &keystore("p1"));
    let server = serve_under_ulimit("-Sn 1024", &["--keystore", path.to_str().unwrap()]);
    let (soft, hard) = open_files_limit(&server);
    assert_eq!(soft, hard, "the soft limit was not raised to the hard one");
}

/// Finding 2, "bounded connections": under `ulimit -Sn 1024` serve raises its soft limit of
/// open files; with 1,100 connections held open (pipelining `GET /metrics`, never reading) a
/// valid request still gets 200 within 1 s; with `--idle-timeout 1s` the server closes an idle
/// keep-alive connection and the held ones within ~4 s. Under `ulimit -n 512` the cap is
/// lowered to fit: connections beyond it wait in the backlog, with no `accept failed` and no
/// busy loop, and are answered once the others close. Prints serve's RSS with none and with
/// 1,100 connections.
#[test]
#[cfg_attr(
    skip_python3,
    ignore = "python3 is not installed: apt-get install -y python3"
)]
#[cfg_attr(
    all(skip_nofile, not(skip_python3)),
    ignore = "the hard limit of open files (ulimit -Hn) is under the 1200 that 1,100 held \
              connections need"
)]
fn bounded_connections() {
    let _one = one_at_a_time();
    assert!(
        have("python3"),
        "python3 is not installed: .ci/run installs it; elsewhere, rebuild the tests (touch \
         build.rs) and this test is ignored instead"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keystore.json");
    write_private(&path, &keystore("p1"));
    let keystore_arg = path.to_str().unwrap();
    let good = authorized("/verify", &day_token("gw1", "p1"));

    // Held with the default idle timeout (75 s): the service still answers.
    let server = serve_under_ulimit("-Sn 1024", &["--keystore", keystore_arg]);
    let (soft, hard) = open_files_limit(&server);
    eprintln!(
        "serve's limit of open files: soft {soft}, hard {hard}; max_connections {:?}",
        max_connections_logged(&server)
    );
    assert_eq!(soft, hard, "the soft limit was not raised to the hard one");
    assert!(
        hard == "unlimited" || hard.parse::<usize>().unwrap() >= HELD + 100,
        "the hard limit of open files ({hard}) is under {} (build.rs's NOFILE): it was not when \
         the tests were built; rebuild them (touch build.rs) and this test is ignored instead",
        HELD + 100
    );
    if let Some(max) = max_connections_logged(&server) {
        assert!(max >= HELD, "max_connections {max}");
    }
    answers_within(&server, &good, 200, RESPONSIVE);
    let idle_rss = server.rss_kib();
    let started = Instant::now();
    let (holder, held) = Holder::hold(server.addr, HELD, PIPELINED)
        .unwrap_or_else(|why| panic!("the connections were not held: {why}"));
    eprintln!("holding took {:?}", started.elapsed());
    assert_eq!(held, HELD);
    answers_within(&server, &good, 200, RESPONSIVE);
    answers_within(&server, &request("GET", "/healthz", &[]), 200, RESPONSIVE);
    std::thread::sleep(Duration::from_millis(500));
    answers_within(&server, &good, 200, RESPONSIVE);
    let held_rss = server.rss_kib();
    eprintln!(
        "serve's RSS: {idle_rss} KiB with no connection, {held_rss} KiB with {HELD} held \
         ({:.1} KiB per connection)",
        held_rss.saturating_sub(idle_rss) as f64 / HELD as f64
    );
    // Generous: a quarter of a MiB per connection.
    assert!(
        held_rss < idle_rss + HELD as u64 * 256,
        "RSS {held_rss} KiB with {HELD} connections ({idle_rss} KiB without)"
    );
    assert_eq!(count_log(&server, "accept failed"), 0, "{}", server.log());
    drop(holder);
    drop(server);

    // With --idle-timeout 1s: the server closes what makes no progress, between 1 s and twice
    // that after the last byte moved.
    let server = serve_under_ulimit(
        "-Sn 1024",
        &["--keystore", keystore_arg, "--idle-timeout", "1s"],
    );
    let mut idle = server.conn();
    assert_eq!(idle.send(&good).status, 200);
    let idle_since = Instant::now();
    assert!(
        idle.closed_within(Duration::from_secs(4)),
        "an idle keep-alive connection still open {:?} later",
        idle_since.elapsed()
    );
    let idle_closed = idle_since.elapsed();
    eprintln!("the idle keep-alive connection was closed after {idle_closed:?}");
    assert!(idle_closed > Duration::from_millis(750), "{idle_closed:?}");
    let started = Instant::now();
    let (mut holder, held) = Holder::hold(server.addr, HELD, PIPELINED).unwrap();
    let held_at = Instant::now();
    eprintln!("holding took {:?}", held_at - started);
    answers_within(&server, &good, 200, RESPONSIVE);
    std::thread::sleep(Duration::from_secs(4).saturating_sub(held_at.elapsed()));
    let (closed, open) = holder.check(1.0);
    eprintln!("4 s after holding {held}: {closed} closed by the server, {open} open");
    assert_eq!((closed, open), (held, 0));
    assert!(held > HELD / 2, "only {held} held");
    answers_within(&server, &good, 200, RESPONSIVE);
    drop(holder);
    drop(server);

    // Under a hard limit of 512 open files: the cap is lowered to fit, and what is beyond it
    // waits in the backlog.
    let server = serve_under_ulimit("-n 512", &["--keystore", keystore_arg]);
    let (soft, hard) = open_files_limit(&server);
    let max = max_connections_logged(&server);
    eprintln!("under ulimit -n 512: soft {soft}, hard {hard}; max_connections {max:?}");
    if let Some(max) = max {
        assert!(
            (1..512).contains(&max),
            "max_connections {max} under 512 files"
        );
    }
    // A hundred beyond the cap (the listen backlog is 1,024), one request each: those beyond the
    // cap are not read until accepted.
    let beyond = max.unwrap_or(448) + 100;
    let (holder, held) = Holder::hold(server.addr, beyond, 1).unwrap();
    assert_eq!(held, beyond);
    // A request behind the held connections waits for a free slot.
    let mut waiting = server.conn();
    waiting.stream.write_all(&good).unwrap();
    let cpu_before = server.cpu();
    waiting
        .stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let peeked = waiting.stream.peek(&mut [0u8; 1]);
    assert!(
        peeked.as_ref().is_err_and(|e| matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )),
        "answered beyond the cap of {max:?}: {peeked:?}"
    );
    let cpu = server.cpu() - cpu_before;
    eprintln!("CPU with every slot taken, over 2 s: {cpu:?}");
    assert!(cpu < Duration::from_millis(500), "a busy loop? {cpu:?}");
    let waited = Instant::now();
    drop(holder);
    waiting
        .stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let reply = waiting.read_reply().unwrap();
    eprintln!(
        "the waiting request answered {:?} after the slots were freed",
        waited.elapsed()
    );
    assert_eq!(reply.status, 200);
    assert!(
        waited.elapsed() < Duration::from_secs(6),
        "{:?}",
        waited.elapsed()
    );
    answers_within(&server, &good, 200, RESPONSIVE);
    assert_eq!(count_log(&server, "accept failed"), 0, "{}", server.log());
}

/// A burst of new connections that serve does not accept at once (here it is stopped with
/// SIGSTOP; a busy accept loop is the same to the kernel): the kernel completes and queues up to
/// serve's listen backlog, 1,024. Under the 128 that `TcpListener::bind` asks for, the 130th
/// client's SYN was dropped and its connection made a second later, when the SYN was sent again.
/// Once continued, serve answers every queued connection.
#[test]
fn a_burst_of_connections_waits_in_the_backlog_and_is_answered() {
    // The kernel caps every backlog at net.core.somaxconn (128 before Linux 5.4).
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(4096);
    let burst = somaxconn.min(600);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keystore.json");
    write_private(&path, &keystore("p1"));
    let server = serve(&["--keystore", path.to_str().unwrap()]).start();
    server.signal("STOP");
    let mut queued = Vec::with_capacity(burst);
    for n in 1..=burst {
        // A dropped SYN is sent again after 1 s: a connection not made within half of that was
        // not queued.
        match TcpStream::connect_timeout(&server.addr, Duration::from_millis(500)) {
            Ok(stream) => queued.push(Conn::of(stream).unwrap()),
            Err(e) => panic!("connection {n} of a burst of {burst} to a stopped serve: {e}"),
        }
    }
    server.signal("CONT");
    let healthz = request("GET", "/healthz", &[]);
    for conn in &mut queued {
        conn.stream.write_all(&healthz).unwrap();
    }
    for (n, conn) in queued.iter_mut().enumerate() {
        let reply = conn
            .read_reply()
            .unwrap_or_else(|e| panic!("connection {}: {e}", n + 1));
        assert_eq!((reply.status, reply.text()), (200, "ok\n"), "{reply:?}");
    }
    assert_eq!(count_log(&server, "accept failed"), 0, "{}", server.log());
}

// ---------------------------------------------------------------------------------------------
// 3. A stalled stderr never blocks requests.
// ---------------------------------------------------------------------------------------------

/// The samples of a metric family: (labels and name, value).
fn samples(metrics: &str, name: &str) -> Vec<(String, f64)> {
    metrics
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(sample, value)| (sample.to_owned(), value.parse().unwrap()))
        .collect()
}

/// Finding 3, "a stalled stderr never blocks requests": with serve's stderr a pipe nobody reads,
/// 3,000 refused requests (each logged with a 4 KB path, far more than the pipe holds) are
/// answered within 1 s each, and so are a valid token and `/healthz` after them;
/// `apim_sas_log_lines_dropped_total` counts the lines dropped. Then a storm of SIGHUPs (reload
/// lines are not rate-limited) until a line is dropped as `reason="stalled"`: reloads go on and
/// requests are answered within 1 s. What it did write, read at the end, is whole JSON lines.
#[test]
fn a_stalled_stderr_never_blocks_requests() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keystore.json");
    write_private(&path, &keystore("p1"));
    let server = serve(&["--keystore", path.to_str().unwrap(), "--log-format", "json"])
        .stall_stderr()
        .start();
    let refused = request("GET", &format!("/verify/{}", "x".repeat(4000)), &[]);
    let mut conn = server.conn();
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    for n in 0..3000 {
        let asked = Instant::now();
        let reply = conn
            .try_send(&refused)
            .unwrap_or_else(|e| panic!("refused request {n}: {e} after {:?}", asked.elapsed()));
        assert_eq!(reply.status, 401, "request {n}");
        slowest = slowest.max(asked.elapsed());
    }
    eprintln!(
        "3,000 refusals in {:?}, the slowest {slowest:?}",
        started.elapsed()
    );
    assert!(
        slowest < Duration::from_secs(1),
        "slowest refusal {slowest:?}"
    );
    let reply = answers_within(
        &server,
        &authorized("/verify", &day_token("gw1", "p1")),
        200,
        RESPONSIVE,
    );
    assert_eq!(reply.header("x-apim-gateway-id"), Some("gw1"));
    answers_within(&server, &request("GET", "/healthz", &[]), 200, RESPONSIVE);
    let metrics = server.metrics();
    let dropped = samples(&metrics, "apim_sas_log_lines_dropped_total");
    eprintln!("after 3,000 refusals, dropped: {dropped:?}");
    assert!(
        !dropped.is_empty(),
        "no apim_sas_log_lines_dropped_total:\n{metrics}"
    );
    assert!(
        dropped.iter().map(|(_, v)| v).sum::<f64>() > 0.0,
        "{dropped:?}"
    );

    // Refusal lines are mostly dropped by their rate limit; reload lines are not limited: a
    // storm of SIGHUPs overflows what stderr can take, and the service still answers.
    let stalled = r#"apim_sas_log_lines_dropped_total{reason="stalled"}"#;
    let oks = r#"apim_sas_keystore_reloads_total{result="ok"}"#;
    // Paced a little, so that the signals are not all merged into one reload.
    let mut storm = Command::new("sh")
        .args([
            "-c",
            &format!(
                "while kill -HUP {}; do j=0; while [ $j -lt 100 ]; do j=$((j+1)); done; done",
                server.pid()
            ),
        ])
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut reloads = 0.0;
    while server.metric(stalled) == 0.0 {
        if started.elapsed() > Duration::from_secs(120) {
            let _ = storm.kill();
            let _ = storm.wait();
            panic!(
                "no line dropped as stalled after {reloads} reloads:\n{}",
                server.metrics()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
        answers_within(&server, &request("GET", "/healthz", &[]), 200, RESPONSIVE);
        wait_until(
            Duration::from_secs(2),
            || server.metric(oks) > reloads,
            || format!("reloads stuck at {reloads}"),
        );
        reloads = server.metric(oks);
    }
    let _ = storm.kill();
    let _ = storm.wait();
    eprintln!(
        "{reloads} reloads in {:?} before a line was dropped as stalled",
        started.elapsed()
    );
    answers_within(
        &server,
        &authorized("/verify", &day_token("gw1", "p1")),
        200,
        RESPONSIVE,
    );
    let metrics = server.metrics();
    let dropped = samples(&metrics, "apim_sas_log_lines_dropped_total");
    eprintln!("at the end, dropped: {dropped:?}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("# TYPE apim_sas_log_lines_dropped") && l.ends_with(" counter")),
        "{metrics}"
    );

    let stderr = String::from_utf8(stderr_to_end(server)).expect("stderr is UTF-8");
    let lines: Vec<&str> = stderr.split_terminator('\n').collect();
    eprintln!("{} lines written", lines.len());
    for line in &lines {
        let record: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:.300}"));
        assert!(record.is_object(), "{line:.300}");
    }
    assert!(
        stderr.ends_with('\n'),
        "{:.300}",
        &stderr[stderr.len().saturating_sub(300)..]
    );
}

// ---------------------------------------------------------------------------------------------
// 4. JSON logs are one record per line for every reader.
// ---------------------------------------------------------------------------------------------

/// Line breaks, C1 controls and bidi controls, sent raw (UTF-8) and percent-encoded.
const HOSTILE: &[char] = &[
    '\u{85}', '\u{2028}', '\u{2029}', '\u{202e}', '\u{9b}', '\u{80}', '\u{9f}', '\u{61c}',
    '\u{200e}', '\u{200f}', '\u{202a}', '\u{2066}', '\u{2069}',
];
/// C0 controls and DEL: percent-encoded (raw, they are not a valid request target).
const CONTROLS: &[u8] = &[
    0x00, 0x01, 0x07, 0x08, b'\t', b'\n', 0x0b, 0x0c, b'\r', 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x7f,
];
/// C0 controls sent raw in the request target.
const RAW_CONTROLS: &[u8] = &[0x01, 0x0b, 0x0c, 0x1b, 0x1c, 0x7f];

/// Characters every log line writes as an escape (`\n` ends the line).
fn must_be_escaped(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{9}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{61c}' | '\u{200e}'
        | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}'
        | '\u{2029}')
}

/// Python's `str.splitlines()`: split on every Unicode line break, `\r\n` as one.
fn splitlines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if matches!(
            c,
            '\n' | '\r'
                | '\u{b}'
                | '\u{c}'
                | '\u{1c}'
                | '\u{1d}'
                | '\u{1e}'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        ) {
            lines.push(&text[start..at]);
            start = at + c.len_utf8();
            if c == '\r' && chars.peek().is_some_and(|&(_, next)| next == '\n') {
                chars.next();
                start += 1;
            }
        }
    }
    if start < text.len() {
        lines.push(&text[start..]);
    }
    lines
}

fn percent_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        if bytes[i] == b'%' {
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Every character of the forbidden sets present, as `U+XXXX`.
fn raw_forbidden(text: &str) -> Vec<String> {
    let found: BTreeSet<u32> = text
        .chars()
        .filter(|&c| must_be_escaped(c))
        .map(u32::from)
        .collect();
    found.iter().map(|c| format!("U+{c:04X}")).collect()
}

/// The code points written as `\u{X…}` in `text`.
fn rust_escapes(text: &str) -> BTreeSet<u32> {
    text.match_indices("\\u{")
        .filter_map(|(at, _)| {
            let rest = &text[at + 3..];
            let end = rest.find('}')?;
            u32::from_str_radix(&rest[..end], 16).ok()
        })
        .collect()
}

/// Sends raw bytes as a request on a new connection: the status line's code, if any.
fn raw_request(addr: SocketAddr, head: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(head).unwrap();
    let mut answer = [0u8; 64];
    let n = stream.read(&mut answer).unwrap_or(0);
    String::from_utf8_lossy(&answer[..n])
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()
}

/// The refusal paths sent, by marker: (marker, raw target, what `path` may log).
fn hostile_requests(addr: SocketAddr) -> Vec<(String, String, Vec<String>)> {
    let mut sent = Vec::new();
    let mut conn = Conn::open(addr);
    let mut raw_all = String::from("/verify/rawall-");
    for (i, c) in HOSTILE.iter().enumerate() {
        let marker = format!("raw{i}-");
        let path = format!("/verify/{marker}a{c}b");
        raw_all.push(*c);
        sent.push((marker, path.clone(), vec![path]));
        let marker = format!("pct{i}-");
        let mut utf8 = [0u8; 4];
        let encoded = percent_encode(c.encode_utf8(&mut utf8).as_bytes());
        let path = format!("/verify/{marker}a{encoded}b");
        let decoded = format!("/verify/{marker}a{c}b");
        sent.push((marker, path.clone(), vec![path, decoded]));
    }
    sent.push(("rawall-".into(), raw_all.clone(), vec![raw_all]));
    for (i, b) in CONTROLS.iter().enumerate() {
        let marker = format!("c0pct{i}-");
        let path = format!("/verify/{marker}a{}b", percent_encode(&[*b]));
        let decoded = format!("/verify/{marker}a{}b", char::from(*b));
        sent.push((marker, path.clone(), vec![path, decoded]));
    }
    for (_, path, _) in &sent {
        let reply = conn.send(&request("GET", path, &[]));
        assert_eq!(reply.status, 401, "{path:?}: {reply:?}");
        assert_eq!(
            reply.header("www-authenticate"),
            Some(r#"SharedAccessSignature error="EmptyToken""#)
        );
    }
    // Raw C0 controls: not a valid request target (hyper answers 400); whatever is logged must
    // still be one record per line.
    for (i, b) in RAW_CONTROLS.iter().enumerate() {
        let mut head = format!("GET /verify/c0raw{i}-a").into_bytes();
        head.push(*b);
        head.extend_from_slice(b"b HTTP/1.1\r\nHost: x\r\n\r\n");
        let status = raw_request(addr, &head);
        eprintln!("raw {b:#04x} in the target: {status:?}");
    }
    sent
}

/// Finding 4, "JSON logs are one record per line for every reader": refusals of paths holding
/// U+0085, U+2028, U+2029, U+202E, U+009B and other C1 and bidi controls (raw UTF-8 and
/// percent-encoded), C0 controls and DEL (percent-encoded; raw they are a 400) give a stderr
/// whose Unicode lines (`str.splitlines()`) are exactly its JSON records, with `path` given back
/// as sent; the key file permission warning is a JSON line, logged once per change of the file
/// (not per SIGHUP), its path (holding U+2028, U+0085, U+202E and ESC) escaped too. Under
/// `--log-format text` the characters are written as `\u{XXXX}`.
#[test]
fn json_logs_are_one_record_per_line_for_every_reader() {
    let dir = tempfile::tempdir().unwrap();
    let keys_dir = dir.path().join("keys\u{2028}\u{85}\u{202e}\u{1b}dir");
    std::fs::create_dir(&keys_dir).unwrap();
    let path = keys_dir.join("keystore.json");
    write_with_mode(&path, &keystore("p1"), 0o640);
    let server = serve(&[
        "--keystore",
        path.to_str().unwrap(),
        "--log-format",
        "json",
        "--poll",
        "none",
    ])
    .start();
    let sent = hostile_requests(server.addr);
    wait_until(
        Duration::from_secs(5),
        || count_log(&server, r#""message":"refused""#) >= sent.len(),
        || format!("not every refusal logged:\n{}", server.log()),
    );

    // The permission warning: once at start, not again for 3 SIGHUPs without a change.
    let oks = r#"apim_sas_keystore_reloads_total{result="ok"}"#;
    let warned = |server: &Serve| count_log(server, "readable by group or others");
    for n in 1..=3 {
        server.signal("HUP");
        wait_until(
            Duration::from_secs(3),
            || server.metric(oks) == f64::from(n),
            || format!("SIGHUP {n} not reloaded:\n{}", server.log()),
        );
    }
    assert_eq!(warned(&server), 1, "{}", server.log());
    // A change: once more.
    write_with_mode(&path, &keystore("p2"), 0o640);
    server.signal("HUP");
    wait_until(
        Duration::from_secs(3),
        || server.metric(oks) == 4.0,
        || format!("SIGHUP after the change not reloaded:\n{}", server.log()),
    );
    assert_eq!(
        server
            .conn()
            .send(&authorized("/verify", &day_token("gw1", "p2")))
            .status,
        200
    );
    server.signal("HUP");
    wait_until(
        Duration::from_secs(3),
        || server.metric(oks) == 5.0,
        || format!("the last SIGHUP not reloaded:\n{}", server.log()),
    );
    assert_eq!(warned(&server), 2, "{}", server.log());

    let stderr = String::from_utf8(stderr_to_end(server)).expect("stderr is UTF-8");
    assert!(!stderr.contains(CANARY), "{stderr}");
    assert!(stderr.ends_with('\n'), "{stderr}");
    let records: Vec<&str> = stderr.split_terminator('\n').collect();
    let forbidden = raw_forbidden(&stderr);
    assert!(
        forbidden.is_empty(),
        "written raw, not escaped: {forbidden:?}"
    );
    assert_eq!(
        splitlines(&stderr),
        records,
        "the Unicode lines are not the records"
    );
    let records: Vec<serde_json::Map<String, serde_json::Value>> = records
        .iter()
        .map(|l| match serde_json::from_str(l) {
            Ok(serde_json::Value::Object(record)) => record,
            other => panic!("not a JSON object ({other:?}): {l}"),
        })
        .collect();
    let mut forms = BTreeSet::new();
    for (marker, target, expected) in &sent {
        let logged: Vec<&str> = records
            .iter()
            .filter(|r| r.get("message").and_then(|m| m.as_str()) == Some("refused"))
            .filter_map(|r| r.get("path").and_then(|p| p.as_str()))
            .filter(|p| p.contains(&format!("/{marker}")))
            .collect();
        assert_eq!(logged.len(), 1, "{target:?}: {logged:?}");
        assert!(
            expected.iter().any(|e| e == logged[0]),
            "{target:?} logged as {:?}",
            logged[0]
        );
        if target.contains('%') {
            forms.insert(if logged[0] == target {
                "as sent"
            } else {
                "decoded"
            });
        }
        // What was decoded from the percent signs is what was meant.
        if logged[0] != target {
            assert_eq!(logged[0].as_bytes(), percent_decode(target));
        }
    }
    eprintln!("percent-encoded paths are logged {forms:?}");
    for record in &records {
        let path_field = record.get("path").and_then(|p| p.as_str());
        if let Some(p) = path_field.filter(|p| p.contains("/c0raw")) {
            panic!("a raw C0 control reached a refusal line: {p:?}");
        }
    }
    let warnings: Vec<_> = records
        .iter()
        .filter(|r| {
            r.values().any(|v| {
                v.as_str()
                    .is_some_and(|s| s.contains("readable by group or others"))
            })
        })
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    for warning in &warnings {
        eprintln!("the warning: {}", serde_json::to_string(warning).unwrap());
        assert!(
            warning.values().any(|v| v
                .as_str()
                .is_some_and(|s| s.contains(path.to_str().unwrap()))),
            "the path not given back: {warning:?}"
        );
    }

    // Text: the same characters as `\u{XXXX}`.
    let text_dir = tempfile::tempdir().unwrap();
    let text_path = text_dir.path().join("keystore.json");
    write_private(&text_path, &keystore("p1"));
    let server = serve(&["--keystore", text_path.to_str().unwrap()]).start();
    let sent = hostile_requests(server.addr);
    wait_until(
        Duration::from_secs(5),
        || count_log(&server, "refused") >= sent.len(),
        || format!("not every refusal logged:\n{}", server.log()),
    );
    let stderr = String::from_utf8(stderr_to_end(server)).expect("stderr is UTF-8");
    let forbidden = raw_forbidden(&stderr);
    assert!(
        forbidden.is_empty(),
        "written raw, not escaped: {forbidden:?}\n{stderr}"
    );
    assert_eq!(
        splitlines(&stderr),
        stderr.split_terminator('\n').collect::<Vec<_>>()
    );
    let escaped = rust_escapes(&stderr);
    for c in HOSTILE {
        assert!(
            escaped.contains(&u32::from(*c)),
            "U+{:04X} not written as \\u{{…}}:\n{stderr}",
            u32::from(*c)
        );
    }
    let sample = stderr
        .lines()
        .find(|l| l.contains("raw1-"))
        .unwrap_or_default();
    eprintln!("text: {sample}");
    assert!(sample.contains("\\u{2028}"), "{sample}");
}

// ---------------------------------------------------------------------------------------------
// 5. Half-closed clients get their answer.
// ---------------------------------------------------------------------------------------------

/// Sends `head`, shuts down the write side, reads to EOF.
fn half_closed(addr: SocketAddr, head: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(head).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    if let Err(e) = stream.read_to_end(&mut answer) {
        panic!(
            "{e} after {:?}",
            String::from_utf8_lossy(&answer).into_owned()
        );
    }
    answer
}

/// `tries` half-closed `head`s from each of `clients` at once: the answers that are not a 200
/// holding `holds` (lower case), as (try, answer).
fn half_close_tries(
    addr: SocketAddr,
    head: &str,
    clients: usize,
    tries: usize,
    holds: &'static str,
) -> Vec<(usize, String)> {
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let head = head.to_owned();
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                for n in 0..tries {
                    let answer = half_closed(addr, head.as_bytes());
                    let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
                    if !(text.starts_with("http/1.1 200") && text.contains(holds)) {
                        failures.push((n, text));
                    }
                }
                failures
            })
        })
        .collect();
    workers
        .into_iter()
        .flat_map(|worker| worker.join().unwrap())
        .collect()
}

/// Finding 5, "half-closed clients get their answer": a client that sends a complete request
/// and shuts down its write side gets the full response: 500 of 500 tries one after another,
/// 2,000 of 2,000 from 4 clients at once (where the FIN more often arrives before the answer is
/// written), and a valid `/verify` its 200 with the gateway header, 400 of 400.
#[test]
fn half_closed_clients_get_their_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keystore.json");
    write_private(&path, &keystore("p1"));
    let server = serve(&["--keystore", path.to_str().unwrap()]).start();
    let healthz = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    for (clients, tries) in [(1, 500), (4, 500)] {
        let failures = half_close_tries(server.addr, healthz, clients, tries, "\r\n\r\nok\n");
        assert!(
            failures.is_empty(),
            "{} of {} half-closed /healthz ({clients} at once) without their answer, e.g. {:?}",
            failures.len(),
            clients * tries,
            failures.first()
        );
    }
    let token = day_token("gw1", "p1");
    let verify = format!("GET /verify HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n\r\n");
    let failures = half_close_tries(
        server.addr,
        &verify,
        4,
        100,
        "\r\nx-apim-gateway-id: gw1\r\n",
    );
    assert!(
        failures.is_empty(),
        "{} of 400 half-closed /verify without their answer, e.g. {:?}",
        failures.len(),
        failures.first()
    );
}
