//! The other programs the tests run beside serve (a gateway: nginx, Caddy, HAProxy), and the
//! free ports they are given.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

pub use super::ports::free_port;

/// `kill -NAME PID`, which must succeed.
#[track_caller]
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name}");
}

/// A child process stopped by its own id when dropped: SIGCONT (it may be stopped), SIGTERM (a
/// master then stops its workers), then SIGKILL if it lingers 5 s.
pub struct Running(pub Child);

impl Running {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// How it exited, if it has.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.0.try_wait().unwrap()
    }

    /// Waits (10 s) until `addr`, where it listens, takes a connection; `log()` says why not.
    #[track_caller]
    pub fn await_listening(&mut self, addr: SocketAddr, log: impl Fn() -> String) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            let exited = self.try_wait();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "never listened on {addr} ({exited:?}):\n{}",
                log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return; // reaped: its pid may be another process's by now
        }
        for signal in ["-CONT", "-TERM"] {
            let _ = Command::new("kill")
                .args([signal, &self.pid().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
