//! The API behind a gateway: an HTTP/1.1 server that records every request that reaches it and
//! answers it `200`, with the request as JSON (`Upstream::echoing`: the client sees what went
//! upstream for its own request) or with the `x-apim…` headers it got (`Upstream::listing_apim`).
//! A thread per connection, kept alive as the gateway keeps it (closed after an HTTP/1.0 request
//! or `Connection: close`); the accepting thread lives as long as the test process.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use super::http::Reply;

/// One request as it reached the upstream.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request line, lossily decoded (the target may hold any byte): `GET /orders/7
    /// HTTP/1.1`. In what `echoed` gives, the method and the target alone.
    pub line: String,
    /// Every header, names in their own spelling, in order.
    pub headers: Vec<(String, String)>,
    /// The body, by its `Content-Length` (none in what `echoed` gives).
    pub body: Vec<u8>,
}

impl Seen {
    /// Every header a backend could take for an identity header, whatever its case or
    /// separators (CGI, WSGI and PHP read `X_Apim_Gateway_Id` as `HTTP_X_APIM_GATEWAY_ID`):
    /// names lower-cased, sorted.
    pub fn apim(&self) -> Vec<(String, String)> {
        let mut apim: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
            .filter(|(n, _)| n.replace(['_', '.'], "-").starts_with("x-apim"))
            .collect();
        apim.sort();
        apim
    }
}

/// What the upstream answers with.
#[derive(Clone, Copy)]
enum Answer {
    /// `{"line": "GET /x", "headers": [["host", "…"], …]}`, for HTTP/1.1 requests only.
    Echo,
    /// `Seen::apim`, one `name: value` line each.
    Apim,
}

pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    /// Answers each request with the request as JSON (`echoed` reads it back).
    pub fn echoing() -> Upstream {
        Upstream::start(Answer::Echo)
    }

    /// Answers each request with the `x-apim…` headers it got (`Seen::apim`), one `name: value`
    /// line each, as text.
    pub fn listing_apim() -> Upstream {
        Upstream::start(Answer::Apim)
    }

    fn start(answer: Answer) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let log = Arc::clone(&log);
                std::thread::spawn(move || Upstream::serve(stream, &log, answer));
            }
        });
        Upstream { addr, seen }
    }

    fn serve(stream: TcpStream, log: &Mutex<Vec<Seen>>, answer: Answer) {
        let _ = stream.set_nodelay(true);
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        while let Some(seen) = read_request(&mut reader) {
            let close = seen.line.ends_with(" HTTP/1.0")
                || seen.headers.iter().any(|(n, v)| {
                    n.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close")
                });
            let (content_type, body) = match answer {
                Answer::Echo => {
                    let line = seen.line.strip_suffix(" HTTP/1.1").unwrap_or_else(|| {
                        panic!("upstream: not an HTTP/1.1 request line: {:?}", seen.line)
                    });
                    let json = serde_json::json!({ "line": line, "headers": seen.headers });
                    ("application/json", json.to_string())
                }
                Answer::Apim => {
                    let lines: String = seen
                        .apim()
                        .iter()
                        .map(|(n, v)| format!("{n}: {v}\n"))
                        .collect();
                    ("text/plain", lines)
                }
            };
            log.lock().unwrap().push(seen);
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n{}\r\n{body}",
                body.len(),
                if close { "connection: close\r\n" } else { "" }
            );
            if writer.write_all(reply.as_bytes()).is_err() || close {
                return;
            }
        }
    }

    /// How many requests have reached the upstream so far.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Every request that has reached the upstream, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// One request from a kept-alive connection: its line, its headers, a body of its
/// `Content-Length` (a chunked one is not expected); none once the connection ends.
pub fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Seen> {
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
            return None;
        }
        let line = String::from_utf8_lossy(&line).trim_end().to_owned();
        if line.is_empty() {
            break;
        }
        lines.push(line);
    }
    let (line, rest) = lines.split_first()?;
    let headers: Vec<(String, String)> = rest
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_owned(), v.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap());
    assert!(
        !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding")),
        "upstream: a chunked request: {headers:?}"
    );
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Seen {
        line: line.clone(),
        headers,
        body,
    })
}

/// What an echoing upstream answered with: the request as it reached it (the body of its
/// `200`), its line the method and the target.
pub fn echoed(reply: &Reply) -> Seen {
    assert_eq!(reply.status, 200, "{reply:?}");
    let value: serde_json::Value = serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("not the upstream's echo ({e}): {reply:?}"));
    Seen {
        line: value["line"].as_str().unwrap().to_owned(),
        headers: value["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                (
                    pair[0].as_str().unwrap().to_owned(),
                    pair[1].as_str().unwrap().to_owned(),
                )
            })
            .collect(),
        body: Vec::new(),
    }
}
