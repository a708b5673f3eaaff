//! SPOP written and read by hand, from HAProxy's `doc/SPOE.txt` (section 3) and the bytes HAProxy
//! 2.6 sends, independently of the crate's codec: the tests speak to `serve --spoe-listen` as
//! HAProxy (or a hostile peer) would, and compare its answers byte for byte.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A varint, as HAProxy's `encode_varint` writes it (include/haproxy/intops.h).
pub fn varint(mut value: u64) -> Vec<u8> {
    if value < 240 {
        return vec![value as u8];
    }
    let mut out = vec![(value as u8) | 0xF0];
    value = (value - 240) >> 4;
    while value >= 128 {
        out.push((value as u8) | 0x80);
        value = (value - 128) >> 7;
    }
    out.push(value as u8);
    out
}

/// A length-prefixed string (names have no type byte).
pub fn string(bytes: &[u8]) -> Vec<u8> {
    let mut out = varint(bytes.len() as u64);
    out.extend_from_slice(bytes);
    out
}

/// Typed data: a string.
pub fn str_data(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![8];
    out.extend(string(bytes));
    out
}

/// Typed data: an unsigned 32-bit integer.
pub fn uint32(value: u64) -> Vec<u8> {
    let mut out = vec![3];
    out.extend(varint(value));
    out
}

/// Typed data: a signed 64-bit integer (what HAProxy sends a count as).
pub fn int64(value: u64) -> Vec<u8> {
    let mut out = vec![4];
    out.extend(varint(value));
    out
}

/// Typed data: NULL (what HAProxy sends for an absent header).
pub const NULL: [u8; 1] = [0];

/// A whole frame: length, type, flags, stream id, frame id, payload.
pub fn frame(kind: u8, flags: u32, stream: u64, id: u64, payload: &[u8]) -> Vec<u8> {
    let mut body = vec![kind];
    body.extend_from_slice(&flags.to_be_bytes());
    body.extend(varint(stream));
    body.extend(varint(id));
    body.extend_from_slice(payload);
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

pub const FIN: u32 = 1;

/// HAProxy 2.6's HAPROXY-HELLO (`spoe_prepare_hahello_frame`): versions, its maximum frame size
/// (tune.bufsize 16384 less 4), the capabilities of `option pipelining` and `option async`, and
/// for a health check (`option spop-check`) no capabilities and `healthcheck: true`.
pub fn hello(health_check: bool) -> Vec<u8> {
    let mut payload = string(b"supported-versions");
    payload.extend(str_data(b"2.0"));
    payload.extend(string(b"max-frame-size"));
    payload.extend(uint32(16380));
    payload.extend(string(b"capabilities"));
    if health_check {
        payload.extend(str_data(b""));
        payload.extend(string(b"healthcheck"));
        payload.push(0x11);
    } else {
        payload.extend(str_data(b"pipelining,async"));
        payload.extend(string(b"engine-id"));
        payload.extend(str_data(b"5BAB2B43-6D2B-4E2D-8C5A-4B1D2C3E4F50"));
    }
    frame(1, FIN, 0, 0, &payload)
}

/// The AGENT-HELLO serve answers HAProxy 2.6's HELLO with: SPOP 2.0, HAProxy's own maximum frame
/// size, pipelining and async.
pub fn agent_hello() -> Vec<u8> {
    let mut payload = string(b"version");
    payload.extend(str_data(b"2.0"));
    payload.extend(string(b"max-frame-size"));
    payload.extend(uint32(16380));
    payload.extend(string(b"capabilities"));
    payload.extend(str_data(b"pipelining,async"));
    frame(101, FIN, 0, 0, &payload)
}

/// A NOTIFY of one message, `check-token`, with `args` (each a name and typed data).
pub fn notify(stream: u64, id: u64, args: &[(&[u8], Vec<u8>)]) -> Vec<u8> {
    let mut payload = string(b"check-token");
    payload.push(args.len() as u8);
    for (name, value) in args {
        payload.extend(string(name));
        payload.extend_from_slice(value);
    }
    frame(3, FIN, stream, id, &payload)
}

/// An AGENT-DISCONNECT with `status` and HAProxy's reason for it.
pub fn agent_disconnect(status: u64, message: &str) -> Vec<u8> {
    let mut payload = string(b"status-code");
    payload.extend(uint32(status));
    payload.extend(string(b"message"));
    payload.extend(str_data(message.as_bytes()));
    frame(102, FIN, 0, 0, &payload)
}

/// A HAPROXY-DISCONNECT, as HAProxy sends one when it closes an idle connection.
pub fn haproxy_disconnect() -> Vec<u8> {
    let mut payload = string(b"status-code");
    payload.extend(uint32(0));
    payload.extend(string(b"message"));
    payload.extend(str_data(b"normal"));
    frame(2, FIN, 0, 0, &payload)
}

/// One SET-VAR action in the transaction's scope.
pub fn set_var(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![1, 3, 2];
    out.extend(string(name));
    out.extend_from_slice(value);
    out
}

/// The ACK of a valid token: `valid` true and the four identity variables.
pub fn ack_valid(stream: u64, id: u64, identity: [&str; 4]) -> Vec<u8> {
    let mut payload = set_var(b"valid", &[0x11]);
    for (name, value) in ["gateway_id", "key_type", "token_expiry", "token_format"]
        .iter()
        .zip(identity)
    {
        payload.extend(set_var(name.as_bytes(), &str_data(value.as_bytes())));
    }
    frame(103, FIN, stream, id, &payload)
}

/// The ACK of a refusal: `valid` false, the code, the challenge and the body.
pub fn ack_refused(stream: u64, id: u64, code: &str, body: &[u8]) -> Vec<u8> {
    let mut payload = set_var(b"valid", &[0x01]);
    payload.extend(set_var(b"code", &str_data(code.as_bytes())));
    let challenge = format!("SharedAccessSignature error=\"{code}\"");
    payload.extend(set_var(
        b"www_authenticate",
        &str_data(challenge.as_bytes()),
    ));
    payload.extend(set_var(b"body", &str_data(body)));
    frame(103, FIN, stream, id, &payload)
}

/// A TCP connection to the SPOE port.
pub struct Peer {
    pub stream: TcpStream,
}

impl Peer {
    pub fn connect(addr: SocketAddr) -> Peer {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Peer { stream }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Exactly `n` bytes, or what came before the connection closed or the read timed out.
    pub fn read(&mut self, n: usize) -> Vec<u8> {
        let mut out = vec![0; n];
        let mut got = 0;
        while got < n {
            match self.stream.read(&mut out[got..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => got += k,
            }
        }
        out.truncate(got);
        out
    }

    /// One whole frame (its length first).
    pub fn frame(&mut self) -> Vec<u8> {
        let mut out = self.read(4);
        if out.len() < 4 {
            return out;
        }
        let length = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        out.extend(self.read(length));
        out
    }

    /// Whether the agent closed the connection (end of stream), waiting at most `within`; bytes
    /// that came first are an error.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        self.stream.set_read_timeout(Some(within)).unwrap();
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => panic!("bytes after the last frame: {byte:?}"),
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }
}
