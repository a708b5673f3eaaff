//! A minimal HTTP/1.1 client for the tests that drive `apim-sas serve` over real TCP: requests
//! written byte for byte, replies read exactly (status, headers in order, body by
//! `Content-Length`), on keep-alive connections.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A request head with `Host` and `headers`, no body.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: apim-sas.test\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.into_bytes()
}

pub fn authorized(path: &str, token: &str) -> Vec<u8> {
    request("GET", path, &[("Authorization", token)])
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Header names in lower case, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

/// A keep-alive HTTP/1.1 connection: a minimal client, exact about what comes back.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        Conn::try_open(addr).unwrap()
    }

    pub fn try_open(addr: SocketAddr) -> std::io::Result<Conn> {
        Conn::of(TcpStream::connect(addr)?)
    }

    /// A connection made otherwise (`TcpStream::connect_timeout`, say).
    pub fn of(stream: TcpStream) -> std::io::Result<Conn> {
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    pub fn send(&mut self, request: &[u8]) -> Reply {
        self.try_send(request).unwrap()
    }

    pub fn try_send(&mut self, request: &[u8]) -> std::io::Result<Reply> {
        self.stream.write_all(request)?;
        self.read_reply()
    }

    pub fn read_reply(&mut self) -> std::io::Result<Reply> {
        self.read_reply_for(true)
    }

    /// The reply to a `HEAD`: its `Content-Length` is what a `GET` would get, with no body.
    #[allow(dead_code)] // nginx/tests/module.rs's: nginx/tests/common includes this file
    pub fn send_head(&mut self, request: &[u8]) -> Reply {
        self.stream.write_all(request).unwrap();
        self.read_reply_for(false).unwrap()
    }

    fn read_reply_for(&mut self, with_body: bool) -> std::io::Result<Reply> {
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let mut lines = head.split("\r\n");
                let status = lines
                    .next()
                    .and_then(|l| l.split(' ').nth(1))
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let length: usize = match with_body {
                    true => headers
                        .iter()
                        .find(|(n, _)| n == "content-length")
                        .map_or(0, |(_, v)| v.parse().unwrap()),
                    false => 0,
                };
                while self.buf.len() < end + 4 + length {
                    let n = read_some(&mut self.stream, &mut chunk)?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                let body = self.buf[end + 4..end + 4 + length].to_vec();
                self.buf.drain(..end + 4 + length);
                return Ok(Reply {
                    status,
                    headers,
                    body,
                });
            }
            let n = read_some(&mut self.stream, &mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Whether the server has closed the connection, waiting at most `within`.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        self.stream.set_read_timeout(Some(within)).unwrap();
        let mut byte = [0u8; 1];
        match read_some(&mut self.stream, &mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }
}

/// `read`, again when a signal interrupted it. A socket with a read timeout (these all have one)
/// gets `EINTR` even when the signal's handler asked for `SA_RESTART` (signal(7)), seen in CI as
/// a request failing with "Interrupted system call" while other tests ran beside it.
fn read_some(stream: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            read => return read,
        }
    }
}
