//! HAProxy's Stream Processing Offload Engine: an agent that tells HAProxy whether a request's
//! token is valid, in variables (feature `spoe`).
//!
//! HAProxy asks a neighbour about a request by sending it a NOTIFY frame, over a kept-open TCP
//! connection that speaks SPOP (the protocol of HAProxy's `doc/SPOE.txt`), with the messages its
//! SPOE configuration declares; the agent answers with an ACK frame that sets variables, and
//! HAProxy's own rules turn them into a `401` or headers. [`Agent`] gives the same verdict as the
//! tower [`VerifyLayer`], over the same [`SharedVerifier`](crate::layer::SharedVerifier) (its
//! keys, its rotation, its verdict cache) and the same [`Observer`](crate::layer::Observer).
//!
//! What it reads, from any message of the NOTIFY:
//!
//! - `token`: the token header's value (`args token=req.fhdr(authorization)`), read in any
//!   spelling a [`Verifier`](crate::Verifier) reads. Absent or NULL (HAProxy sends NULL for a
//!   header the request lacks) is [`header::missing`](crate::header::missing), `EmptyToken`; an
//!   empty value is a token of no bytes (`EmptyToken` too). Given twice, it is refused as
//!   [`header::repeated`](crate::header::repeated).
//! - `count`: how many such headers the request has (`count=req.fhdr_cnt(authorization)`): more
//!   than one is [`header::repeated`](crate::header::repeated), `MalformedToken`, whichever of
//!   them is valid (a proxy in front may keep the first and the API read the last).
//!
//! What it answers, in the transaction's scope (HAProxy puts the agent's `var-prefix` before each
//! name: `txn.apim.valid` with `option var-prefix apim`):
//!
//! | variable | set when | value |
//! | --- | --- | --- |
//! | `valid` | always | a boolean |
//! | `gateway_id` | valid | the gateway id, as `X-Apim-Gateway-Id` |
//! | `key_type` | valid | `primary` or `secondary`, as `X-Apim-Key-Type` |
//! | `token_expiry` | valid | RFC 3339 in UTC, as `X-Apim-Token-Expiry` |
//! | `token_format` | valid | `compact` or `uid`, as `X-Apim-Token-Format` |
//! | `code` | refused | the error code, e.g. `SignatureMismatch` |
//! | `www_authenticate` | refused | `SharedAccessSignature error="<Code>"` |
//! | `body` | refused | Azure's ErrorResponse JSON, byte for byte the layer's 401 body |
//!
//! [`Connection`] is the protocol on one connection, without I/O: bytes in, answers out. It
//! answers HAProxy's HELLO (the health check's too, for `option spop-check`) announcing SPOP 2.0,
//! pipelining, and no fragmentation; each NOTIFY with its ACK; a DISCONNECT with its own. Every
//! frame is read within the maximum frame size agreed in the HELLO (before it, within
//! [`frame::MAX_FRAME_SIZE`]), and anything else (a frame too long, of an unknown type, out of
//! turn, fragmented, or that does not parse) is answered with an AGENT-DISCONNECT carrying the
//! protocol's status code, after which the connection reads nothing more and is to be closed.
//! The wire format itself is [`frame`].
//!
//! ```
//! use apim_sas::layer::SharedVerifier;
//! use apim_sas::spoe::frame::{Action, Builder, Data, Frame, FrameType, Scope, FIN};
//! use apim_sas::spoe::{Agent, Connection};
//! use apim_sas::{GatewayKey, KeyType, Policy, Verifier};
//!
//! let mut verifier = Verifier::new(Policy::default());
//! verifier.insert("gw1", KeyType::Primary, &GatewayKey::new("sample-key-do-not-use")?)?;
//! let agent = Agent::new(SharedVerifier::new(verifier));
//!
//! // What HAProxy sends: its HELLO, then a NOTIFY for a request without a token.
//! let mut input = Vec::new();
//! Builder::new(&mut input, FrameType::HaproxyHello, FIN, 0, 0)
//!     .kv(b"supported-versions", &Data::String(b"2.0"))
//!     .kv(b"max-frame-size", &Data::Uint32(16380))
//!     .kv(b"capabilities", &Data::String(b"pipelining"))
//!     .finish(16380)?;
//! Builder::new(&mut input, FrameType::Notify, FIN, 1, 1)
//!     .message(b"check-token", &[(b"token", Data::Null), (b"count", Data::Int64(0))])
//!     .finish(16380)?;
//!
//! let mut connection = Connection::new();
//! let mut output = Vec::new();
//! assert_eq!(connection.receive(&agent, &input, &mut output), input.len());
//!
//! let (hello, used) = Frame::read(&output, 16380)?.expect("the AGENT-HELLO");
//! assert_eq!(hello.frame_type, FrameType::AgentHello);
//! let (ack, _) = Frame::read(&output[used..], 16380)?.expect("the ACK");
//! let actions: Vec<Action<'_>> = ack.actions().collect::<Result<_, _>>()?;
//! assert_eq!(
//!     actions[..2],
//!     [
//!         Action::SetVar { scope: Scope::Transaction, name: b"valid", value: Data::Bool(false) },
//!         Action::SetVar { scope: Scope::Transaction, name: b"code", value: Data::String(b"EmptyToken") },
//!     ]
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use http::{Method, Uri};

use crate::expiry::push_rfc3339;
use crate::header;
use crate::layer::{Config, VerifyLayer};

pub mod frame;

use frame::{Builder, Data, Frame, FrameType, Scope, Status, FIN};

/// The SPOP version spoken: 2.0, the only one HAProxy 2.6 to 3.x speak (1.0 was dropped in 2.0).
const VERSION: &[u8] = b"2.0";

/// The capabilities announced. Pipelining: HAProxy may send the next NOTIFY before the last is
/// answered, so one connection carries many requests at once (without it a check costs a round
/// trip of its own). Async: any connection may carry the answer, as this agent always answers on
/// the connection that asked, which async allows; HAProxy 3.1 and later no longer offer it. Not
/// fragmentation: a token and a count fit any frame.
const CAPABILITIES: &[u8] = b"pipelining,async";

/// How many bytes of answers [`Connection::receive`] writes before it returns, so that a peer
/// sending many small frames has them answered, and its answers written, a batch at a time: what
/// one connection can make the agent hold is a frame read and a batch of answers. HAProxy keeps
/// at most `max-waiting-frames` (20 by default) NOTIFYs unanswered on a connection: some 6 KiB of
/// ACKs.
pub const OUTPUT_BATCH: usize = 8 * 1024;

/// The longest message an AGENT-DISCONNECT carries: HAProxy refuses one over 255 bytes.
const MAX_MESSAGE: usize = 255;

/// The variables' scope: the transaction, so that the request's rules and its response's see
/// them, and the next request on the same client connection does not.
const SCOPE: Scope = Scope::Transaction;

/// The agent's verdicts: a NOTIFY read, its token verified, the answer as variables; see the
/// [module docs](self).
///
/// Built from a [`VerifyLayer`] (its verifier, clock and observer; its header list is not used,
/// HAProxy's configuration names the header) or from a verifier alone, and cloned cheaply.
#[derive(Clone)]
pub struct Agent {
    layer: VerifyLayer,
    /// What the observer is told of a check's request: HAProxy does not say.
    uri: Uri,
}

impl Agent {
    /// Verifies against `verifier` at the current time, observes nothing.
    pub fn new(verifier: crate::layer::SharedVerifier) -> Agent {
        Agent::from(VerifyLayer::new(verifier))
    }

    /// The layer whose configuration this agent uses.
    pub fn layer(&self) -> &VerifyLayer {
        &self.layer
    }

    fn config(&self) -> &Config {
        &self.layer.config
    }

    /// Answers one NOTIFY: appends to `out` the ACK (same stream and frame ids) that sets the
    /// verdict's variables, at most `max` bytes long. The observer is told of the check as of a
    /// request for `GET /`, HAProxy sending no request line. A payload that is not a list of
    /// messages is [`Status::Invalid`], and nothing is appended or observed.
    pub fn ack(&self, notify: &Frame<'_>, out: &mut Vec<u8>, max: u32) -> Result<usize, Status> {
        let mut token = None;
        let mut twice = false;
        let mut count = None;
        for message in notify.messages() {
            for (name, value) in message?.args() {
                match name {
                    b"token" => twice |= token.replace(value).is_some(),
                    b"count" => count = count.or(value.integer()),
                    _ => {}
                }
            }
        }
        let config = self.config();
        let verdict = config.verdict(|| {
            if twice || count.is_some_and(|n| n > 1) {
                return Err(header::repeated());
            }
            token
                .and_then(|token| token.bytes())
                .ok_or_else(header::missing)
        });
        config.observe(&verdict, &Method::GET, &self.uri);
        let mut ack = Builder::new(out, FrameType::Ack, FIN, notify.stream_id, notify.frame_id);
        match &verdict.result {
            Ok(identity) => {
                ack.set_var(SCOPE, b"valid", &Data::Bool(true))
                    .set_var(
                        SCOPE,
                        b"gateway_id",
                        &Data::String(identity.id().as_bytes()),
                    )
                    .set_var(
                        SCOPE,
                        b"key_type",
                        &Data::String(identity.key_type().as_str().as_bytes()),
                    )
                    .set_var_with(SCOPE, b"token_expiry", |out| {
                        push_rfc3339(out, identity.expiry())
                    })
                    .set_var(
                        SCOPE,
                        b"token_format",
                        &Data::String(identity.format().as_str().as_bytes()),
                    );
            }
            Err(error) => {
                let refusal = config.refusal(error);
                ack.set_var(SCOPE, b"valid", &Data::Bool(false)).set_var(
                    SCOPE,
                    b"code",
                    &Data::String(error.code().as_bytes()),
                );
                if let Some(challenge) = &refusal.challenge {
                    ack.set_var(
                        SCOPE,
                        b"www_authenticate",
                        &Data::String(challenge.as_bytes()),
                    );
                }
                ack.set_var(SCOPE, b"body", &Data::String(&refusal.body));
            }
        }
        ack.finish(max)
    }
}

impl From<VerifyLayer> for Agent {
    /// Verifies as `layer` does: its verifier, clock and observer.
    fn from(layer: VerifyLayer) -> Agent {
        Agent {
            layer,
            uri: Uri::from_static("/"),
        }
    }
}

impl fmt::Debug for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent").field("layer", &self.layer).finish()
    }
}

/// Where a connection is in the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for HAProxy's HELLO.
    Hello,
    /// HELLO answered: NOTIFYs are answered.
    Running,
    /// Done: the last answer written (an AGENT-DISCONNECT, or a health check's AGENT-HELLO);
    /// nothing more is read.
    Closed,
}

/// SPOP on one connection, without I/O; see the [module docs](self).
///
/// Feed it the bytes as they come ([`receive`](Connection::receive)), write what it appends to
/// the output, and close the connection once [`is_closed`](Connection::is_closed).
#[derive(Debug, Clone)]
pub struct Connection {
    state: State,
    /// Before the HELLO, the most this agent reads; after it, what was agreed.
    max_frame_size: u32,
    /// The reason a HELLO is refused, for an agent that cannot verify yet.
    unavailable: Option<&'static str>,
    /// Why the connection closed, once it has.
    ended: Option<Status>,
}

impl Default for Connection {
    fn default() -> Connection {
        Connection::new()
    }
}

impl Connection {
    /// A connection waiting for HAProxy's HELLO, reading frames of at most
    /// [`frame::MAX_FRAME_SIZE`] bytes.
    pub fn new() -> Connection {
        Connection {
            state: State::Hello,
            max_frame_size: frame::MAX_FRAME_SIZE,
            unavailable: None,
            ended: None,
        }
    }

    /// A connection that refuses HAProxy's HELLO (health check or not) with an AGENT-DISCONNECT
    /// of status 99 (`Unknown`) and `reason` as its message: for an agent that cannot verify yet
    /// (its keys not loaded). HAProxy's `spop-check` then marks the agent down, and requests are
    /// refused at once rather than refused wrongly.
    pub fn unavailable(reason: &'static str) -> Connection {
        Connection {
            unavailable: Some(reason),
            ..Connection::new()
        }
    }

    /// The most bytes a frame may have (its 4-byte length not counted): the agent's own maximum
    /// before the HELLO, the one agreed after it.
    pub fn max_frame_size(&self) -> u32 {
        self.max_frame_size
    }

    /// Whether the HELLO was answered and NOTIFYs are.
    pub fn is_running(&self) -> bool {
        self.state == State::Running
    }

    /// Whether the connection is done: once what was appended to the output is written, close
    /// it. Nothing more is read.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Why the connection closed: the status of the AGENT-DISCONNECT it sent ([`Status::Normal`]
    /// after a health check's HELLO, answered with none); `None` while it is open.
    pub fn closed_with(&self) -> Option<Status> {
        self.ended
    }

    /// Reads the whole frames at the start of `input` and appends their answers to `output`;
    /// returns how many bytes of `input` it read (the rest is the start of a frame not yet
    /// whole, or frames left for the next call). Stops early once `output` holds
    /// [`OUTPUT_BATCH`] bytes: write them, then call again with the rest. A frame that breaks
    /// the protocol is answered with an AGENT-DISCONNECT, and the connection is closed.
    pub fn receive(&mut self, agent: &Agent, mut input: &[u8], output: &mut Vec<u8>) -> usize {
        let mut read = 0;
        while !self.is_closed() && output.len() < OUTPUT_BATCH {
            let (frame, length) = match Frame::read(input, self.max_frame_size) {
                Ok(Some(whole)) => whole,
                Ok(None) => break,
                Err(status) => {
                    self.disconnect(status, output);
                    break;
                }
            };
            read += length;
            input = input.get(length..).unwrap_or_default();
            if let Err((status, message)) = self.answer(agent, &frame, output) {
                self.close(status, message, output);
            }
        }
        read
    }

    /// Appends an AGENT-DISCONNECT with `status` (its reason as the message) and closes the
    /// connection: for a peer too slow, or an agent shutting down ([`Status::Normal`]).
    pub fn disconnect(&mut self, status: Status, output: &mut Vec<u8>) {
        self.close(status, status.reason(), output);
    }

    fn close(&mut self, status: Status, message: &str, output: &mut Vec<u8>) {
        if self.is_closed() {
            return;
        }
        self.state = State::Closed;
        self.ended = Some(status);
        let mut end = message.len().min(MAX_MESSAGE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let mut disconnect = Builder::new(output, FrameType::AgentDisconnect, FIN, 0, 0);
        disconnect
            .kv(b"status-code", &Data::Uint32(status.code()))
            .kv(
                b"message",
                &Data::String(message.get(..end).unwrap_or_default().as_bytes()),
            );
        // Under 300 bytes, within any maximum (at least 256, and the message at most 255 of it
        // only past what HAProxy ever sends); if not, the connection closes without it.
        let _ = disconnect.finish(frame::MAX_FRAME_SIZE);
    }

    /// Answers one frame; the status and message to close with if it breaks the protocol.
    fn answer(
        &mut self,
        agent: &Agent,
        frame: &Frame<'_>,
        output: &mut Vec<u8>,
    ) -> Result<(), (Status, &'static str)> {
        match (self.state, frame.frame_type) {
            // HAProxy closes: say goodbye in good order.
            (_, FrameType::HaproxyDisconnect) => Err((Status::Normal, Status::Normal.reason())),
            // Not announced, so never sent: HAProxy 2.6 checks the agent's capabilities first.
            (_, FrameType::Unset) => Err(status(Status::FragmentationNotSupported)),
            (State::Hello, FrameType::HaproxyHello) => self.hello(frame, output),
            (State::Running, FrameType::Notify) => {
                if !frame.is_fin() {
                    return Err(status(Status::FragmentationNotSupported));
                }
                agent
                    .ack(frame, output, self.max_frame_size)
                    .map(drop)
                    .map_err(status)
            }
            _ => Err(status(Status::Invalid)),
        }
    }

    /// Answers HAProxy's HELLO: the version, the frame size agreed, the capabilities; closes
    /// after a health check's.
    fn hello(
        &mut self,
        frame: &Frame<'_>,
        output: &mut Vec<u8>,
    ) -> Result<(), (Status, &'static str)> {
        if !frame.is_fin() {
            return Err(status(Status::FragmentationNotSupported));
        }
        if frame.stream_id != 0 || frame.frame_id != 0 {
            return Err(status(Status::Invalid));
        }
        let (mut versions, mut size, mut capabilities, mut health_check) =
            (None, None, None, false);
        for item in frame.kv_list() {
            let (name, value) = item.map_err(status)?;
            match name {
                b"supported-versions" => versions = Some(string(&value)?),
                b"max-frame-size" => {
                    size = Some(value.integer().ok_or(status(Status::Invalid))?);
                }
                b"capabilities" => capabilities = Some(string(&value)?),
                b"healthcheck" => health_check = value == Data::Bool(true),
                _ => {}
            }
        }
        let versions = versions.ok_or(status(Status::NoVersion))?;
        if !speaks_version_2(versions) {
            return Err(status(Status::BadVersion));
        }
        let size = size.ok_or(status(Status::NoFrameSize))?;
        if size < i128::from(frame::MIN_FRAME_SIZE) {
            return Err(status(Status::BadFrameSize));
        }
        capabilities.ok_or(status(Status::NoCapabilities))?;
        if let Some(reason) = self.unavailable {
            return Err((Status::Unknown, reason));
        }
        let agreed = u32::try_from(size)
            .unwrap_or(u32::MAX)
            .min(self.max_frame_size);
        let mut hello = Builder::new(output, FrameType::AgentHello, FIN, 0, 0);
        hello
            .kv(b"version", &Data::String(VERSION))
            .kv(b"max-frame-size", &Data::Uint32(agreed))
            .kv(b"capabilities", &Data::String(CAPABILITIES));
        hello.finish(agreed).map_err(status)?;
        self.max_frame_size = agreed;
        // A health check's HELLO is answered, then the connection closed (SPOE.txt 3.2.3).
        if health_check {
            self.state = State::Closed;
            self.ended = Some(Status::Normal);
        } else {
            self.state = State::Running;
        }
        Ok(())
    }
}

fn status(status: Status) -> (Status, &'static str) {
    (status, status.reason())
}

fn string<'a>(value: &Data<'a>) -> Result<&'a [u8], (Status, &'static str)> {
    match *value {
        Data::String(bytes) => Ok(bytes),
        _ => Err(status(Status::Invalid)),
    }
}

/// Whether HAProxy's `supported-versions` (`"2.0"`, or a list such as `"2.0, 1.5"`) has a 2.x:
/// announcing a major version means every minor one of it below is spoken too.
fn speaks_version_2(versions: &[u8]) -> bool {
    versions.split(|&b| b == b',').any(|version| {
        let version = version.trim_ascii();
        match version.iter().position(|&b| b == b'.') {
            Some(dot) => {
                let (major, minor) = version.split_at(dot);
                let minor = minor.get(1..).unwrap_or_default();
                major == b"2" && !minor.is_empty() && minor.iter().all(u8::is_ascii_digit)
            }
            None => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::frame::{Action, MAX_FRAME_SIZE};
    use super::*;
    use crate::layer::{SharedVerifier, Verification};
    use crate::{Format, GatewayKey, KeyType, Policy, Signer, Verifier};
    use chrono::{DateTime, TimeDelta, TimeZone, Utc};
    use std::sync::{Arc, Mutex};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 4, 21, 0, 44, 0).unwrap()
    }

    fn agent() -> (Agent, Arc<Mutex<Vec<String>>>) {
        let mut verifier = Verifier::new(Policy::default());
        verifier
            .insert("gw1", KeyType::Primary, &GatewayKey::new("k1").unwrap())
            .unwrap();
        verifier
            .insert("gw1", KeyType::Secondary, &GatewayKey::new("k2").unwrap())
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let layer = VerifyLayer::new(SharedVerifier::new(verifier))
            .with_clock(now)
            .with_observer(move |v: &Verification<'_>| {
                let what = match v.result {
                    Ok(identity) => format!("valid {}", identity.id()),
                    Err(error) => error.code().to_owned(),
                };
                record
                    .lock()
                    .unwrap()
                    .push(format!("{what} {} {}", v.method, v.uri));
            });
        (Agent::from(layer), seen)
    }

    fn token(key: &str, format: Format) -> String {
        Signer::new("gw1", &GatewayKey::new(key).unwrap())
            .unwrap()
            .sign(now() + TimeDelta::days(1), format)
            .unwrap()
            .to_string()
    }

    fn hello(extra: &[(&[u8], Data<'_>)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut frame = Builder::new(&mut out, FrameType::HaproxyHello, FIN, 0, 0);
        frame
            .kv(b"supported-versions", &Data::String(b"2.0"))
            .kv(b"max-frame-size", &Data::Uint32(16380))
            .kv(b"capabilities", &Data::String(b"pipelining,async"))
            .kv(b"engine-id", &Data::String(b"e1"));
        for (name, value) in extra {
            frame.kv(name, value);
        }
        frame.finish(MAX_FRAME_SIZE).unwrap();
        drop(frame);
        out
    }

    fn notify(stream: u64, id: u64, args: &[(&[u8], Data<'_>)]) -> Vec<u8> {
        let mut out = Vec::new();
        Builder::new(&mut out, FrameType::Notify, FIN, stream, id)
            .message(b"check-token", args)
            .finish(MAX_FRAME_SIZE)
            .unwrap();
        out
    }

    /// The frames in `bytes`, as their type, ids and decoded payload.
    fn frames(bytes: &[u8]) -> Vec<(FrameType, u64, u64, Vec<String>)> {
        let mut rest = bytes;
        let mut out = Vec::new();
        while !rest.is_empty() {
            let (frame, used) = Frame::read(rest, MAX_FRAME_SIZE).unwrap().unwrap();
            let show = |data: &Data<'_>| match data {
                Data::String(b) => String::from_utf8_lossy(b).into_owned(),
                other => format!("{other:?}"),
            };
            let items = match frame.frame_type {
                FrameType::Ack => frame
                    .actions()
                    .map(|a| match a.unwrap() {
                        Action::SetVar { scope, name, value } => {
                            assert_eq!(scope, Scope::Transaction);
                            format!("{}={}", String::from_utf8_lossy(name), show(&value))
                        }
                        other => panic!("{other:?}"),
                    })
                    .collect(),
                _ => frame
                    .kv_list()
                    .map(|kv| {
                        let (name, value) = kv.unwrap();
                        format!("{}={}", String::from_utf8_lossy(name), show(&value))
                    })
                    .collect(),
            };
            out.push((frame.frame_type, frame.stream_id, frame.frame_id, items));
            rest = &rest[used..];
        }
        out
    }

    fn run(input: &[u8]) -> (Connection, Vec<u8>, usize) {
        let (agent, _) = agent();
        let mut connection = Connection::new();
        let mut output = Vec::new();
        let read = connection.receive(&agent, input, &mut output);
        (connection, output, read)
    }

    fn disconnect(status: Status) -> (FrameType, u64, u64, Vec<String>) {
        (
            FrameType::AgentDisconnect,
            0,
            0,
            vec![
                format!("status-code=Uint32({})", status.code()),
                format!("message={}", status.reason()),
            ],
        )
    }

    #[test]
    fn hello_is_answered_with_version_size_and_capabilities() {
        let (connection, output, read) = run(&hello(&[]));
        assert!(connection.is_running());
        assert_eq!(read, hello(&[]).len());
        // Byte for byte: what HAProxy's spop-check parses.
        let mut expected = b"\x00\x00\x00\x46\x65\x00\x00\x00\x01\x00\x00".to_vec();
        expected.extend_from_slice(b"\x07version\x08\x032.0");
        expected.extend_from_slice(b"\x0emax-frame-size\x03\xfc\xf0\x06");
        expected.extend_from_slice(b"\x0ccapabilities\x08\x10pipelining,async");
        assert_eq!(output, expected);

        // A smaller maximum is agreed; a larger one is not.
        let mut small = hello(&[]);
        let at = small.windows(3).position(|w| w == b"\xfc\xf0\x06").unwrap();
        small.splice(at..at + 3, *b"\xf0\x10");
        small[3] -= 1;
        let (connection, output, _) = run(&small);
        assert_eq!(connection.max_frame_size(), 496);
        assert_eq!(frames(&output)[0].3[1], "max-frame-size=Uint32(496)");
    }

    #[test]
    fn a_health_check_hello_is_answered_then_the_connection_closes() {
        let mut input = hello(&[(b"healthcheck", Data::Bool(true))]);
        input.extend(notify(1, 1, &[(b"token", Data::Null)]));
        let (connection, output, read) = run(&input);
        assert!(connection.is_closed());
        assert_eq!(
            read,
            input.len() - notify(1, 1, &[(b"token", Data::Null)]).len()
        );
        let frames = frames(&output);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].0, FrameType::AgentHello);
    }

    #[test]
    fn notifies_are_answered_with_the_verdicts_variables_in_order() {
        let (agent, seen) = agent();
        let compact = token("k1", Format::Compact);
        let uid = token("k2", Format::Uid);
        let mut input = hello(&[]);
        let scheme = format!("GatewayKey {compact}");
        let sas = format!("SharedAccessSignature {uid}");
        input.extend(notify(
            9,
            1,
            &[
                (b"token", Data::String(scheme.as_bytes())),
                (b"count", Data::Int64(1)),
            ],
        ));
        input.extend(notify(
            9,
            2,
            &[
                (b"count", Data::Int64(1)),
                (b"token", Data::Binary(sas.as_bytes())),
            ],
        ));
        input.extend(notify(
            10,
            1,
            &[(b"token", Data::Null), (b"count", Data::Int64(0))],
        ));
        input.extend(notify(11, 1, &[]));
        input.extend(notify(
            12,
            1,
            &[
                (b"token", Data::String(scheme.as_bytes())),
                (b"count", Data::Int64(2)),
            ],
        ));
        let forged = scheme.replace("&202604220044&", "&202604230044&");
        input.extend(notify(
            13,
            1,
            &[(b"token", Data::String(forged.as_bytes()))],
        ));
        input.extend(notify(14, 7, &[(b"token", Data::String(b""))]));
        input.extend(notify(
            15,
            1,
            &[
                (b"token", Data::String(b"a")),
                (b"token", Data::String(b"a")),
            ],
        ));
        let mut connection = Connection::new();
        let mut output = Vec::new();
        assert_eq!(connection.receive(&agent, &input, &mut output), input.len());
        assert!(connection.is_running());

        let valid = |key_type: &str, format: &str| {
            vec![
                "valid=Bool(true)".to_owned(),
                "gateway_id=gw1".to_owned(),
                format!("key_type={key_type}"),
                "token_expiry=2026-04-22T00:44:00Z".to_owned(),
                format!("token_format={format}"),
            ]
        };
        let refused = |code: &str, message: &str| {
            vec![
                "valid=Bool(false)".to_owned(),
                format!("code={code}"),
                format!("www_authenticate=SharedAccessSignature error=\"{code}\""),
                format!(
                    "body={{\"error\":{{\"code\":\"{code}\",\"message\":\"{message}\",\"target\":\"token\"}}}}"
                ),
            ]
        };
        let missing = header::missing();
        let repeated = header::repeated();
        let answers = frames(&output);
        let expected = [
            (FrameType::AgentHello, 0, 0, answers[0].3.clone()),
            (FrameType::Ack, 9, 1, valid("primary", "compact")),
            (FrameType::Ack, 9, 2, valid("secondary", "uid")),
            (
                FrameType::Ack,
                10,
                1,
                refused("EmptyToken", missing.message()),
            ),
            (
                FrameType::Ack,
                11,
                1,
                refused("EmptyToken", missing.message()),
            ),
            (
                FrameType::Ack,
                12,
                1,
                refused("MalformedToken", repeated.message()),
            ),
        ];
        assert_eq!(answers[..6], expected);
        assert_eq!(answers[6].3[1], "code=SignatureMismatch");
        assert_eq!(answers[7].3[1], "code=EmptyToken");
        assert_eq!((answers[7].1, answers[7].2), (14, 7));
        assert_eq!(answers[8].3[1], "code=MalformedToken");
        assert_eq!(answers.len(), 9);
        // The body is the layer's, byte for byte.
        let body = crate::layer::error_body(&missing);
        assert_eq!(
            answers[3].3[3],
            format!("body={}", String::from_utf8_lossy(&body))
        );
        // Every check is observed, as a request for GET /.
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 8);
        assert_eq!(seen[0], "valid gw1 GET /");
        assert_eq!(seen[2], "EmptyToken GET /");
    }

    #[test]
    fn frames_out_of_turn_or_broken_are_refused_with_the_protocols_status() {
        let valid = notify(1, 1, &[(b"token", Data::Null)]);
        let mut unfinished = valid.clone();
        unfinished[8] = 0; // FIN cleared
        let mut agent_frame = valid.clone();
        agent_frame[4] = 103;
        let mut unknown = valid.clone();
        unknown[4] = 4;
        let mut unset = valid.clone();
        unset[4] = 0;
        let mut bad_payload = valid.clone();
        bad_payload.extend_from_slice(b"\x05ab");
        bad_payload[3] += 3;
        let too_big = [0u8, 0, 0x40, 0];
        let cases: Vec<(Vec<u8>, Vec<u8>, Status)> = vec![
            (vec![], valid.clone(), Status::Invalid),
            (
                vec![],
                hello(&[]).into_iter().chain(hello(&[])).collect(),
                Status::Invalid,
            ),
            (hello(&[]), hello(&[]), Status::Invalid),
            (hello(&[]), unfinished, Status::FragmentationNotSupported),
            (hello(&[]), unset, Status::FragmentationNotSupported),
            (hello(&[]), agent_frame, Status::Invalid),
            (hello(&[]), unknown, Status::Invalid),
            (hello(&[]), bad_payload, Status::Invalid),
            (hello(&[]), too_big.to_vec(), Status::TooBig),
            (vec![], vec![0, 0, 0, 3], Status::Invalid),
        ];
        for (before, bad, status) in cases {
            let mut input = before.clone();
            input.extend_from_slice(&bad);
            input.extend(notify(2, 1, &[(b"token", Data::Null)]));
            let (connection, output, _) = run(&input);
            assert_eq!(connection.closed_with(), Some(status));
            let answers = frames(&output);
            assert_eq!(answers.last(), Some(&disconnect(status)), "{status:?}");
            // Nothing after the refusal is answered: before it, a HELLO at most.
            assert!(answers.len() <= 2, "{status:?}");
            assert!(answers[..answers.len() - 1]
                .iter()
                .all(|a| a.0 == FrameType::AgentHello));
        }
    }

    #[test]
    fn hellos_haproxy_cannot_be_served_by_are_refused() {
        let hello_with = |items: &[(&[u8], Data<'_>)]| {
            let mut out = Vec::new();
            let mut frame = Builder::new(&mut out, FrameType::HaproxyHello, FIN, 0, 0);
            for (name, value) in items {
                frame.kv(name, value);
            }
            frame.finish(MAX_FRAME_SIZE).unwrap();
            drop(frame);
            out
        };
        let versions = (&b"supported-versions"[..], Data::String(b"2.0"));
        let size = (&b"max-frame-size"[..], Data::Uint32(16380));
        let capabilities = (&b"capabilities"[..], Data::String(b""));
        let cases = [
            (hello_with(&[size, capabilities]), Status::NoVersion),
            (hello_with(&[versions, capabilities]), Status::NoFrameSize),
            (hello_with(&[versions, size]), Status::NoCapabilities),
            (
                hello_with(&[
                    (b"supported-versions", Data::String(b"1.0, 3.1")),
                    size,
                    capabilities,
                ]),
                Status::BadVersion,
            ),
            (
                hello_with(&[
                    versions,
                    (b"max-frame-size", Data::Uint32(255)),
                    capabilities,
                ]),
                Status::BadFrameSize,
            ),
            (
                hello_with(&[
                    versions,
                    (b"max-frame-size", Data::String(b"1")),
                    capabilities,
                ]),
                Status::Invalid,
            ),
        ];
        for (input, status) in cases {
            let (connection, output, _) = run(&input);
            assert!(connection.is_closed());
            assert_eq!(frames(&output), [disconnect(status)], "{status:?}");
        }
        // Versions announced with spaces and several majors; a health check with no capabilities
        // of its own (HAProxy 2.6's sends an empty list).
        let (connection, _, _) = run(&hello_with(&[
            (b"supported-versions", Data::String(b" 3.0 , 2.5 ")),
            size,
            capabilities,
        ]));
        assert!(connection.is_running());
        // An agent not ready refuses with status 99 and its reason.
        let (agent, _) = agent();
        let mut connection = Connection::unavailable("keys not loaded yet");
        let mut output = Vec::new();
        connection.receive(
            &agent,
            &hello(&[(b"healthcheck", Data::Bool(true))]),
            &mut output,
        );
        assert!(connection.is_closed());
        assert_eq!(
            frames(&output),
            [(
                FrameType::AgentDisconnect,
                0,
                0,
                vec![
                    "status-code=Uint32(99)".to_owned(),
                    "message=keys not loaded yet".to_owned()
                ]
            )]
        );
    }

    #[test]
    fn haproxys_disconnect_is_answered_in_good_order() {
        let mut input = hello(&[]);
        Builder::new(&mut input, FrameType::HaproxyDisconnect, FIN, 0, 0)
            .kv(b"status-code", &Data::Uint32(2))
            .kv(b"message", &Data::String(b"a timeout occurred"))
            .finish(MAX_FRAME_SIZE)
            .unwrap();
        let (connection, output, read) = run(&input);
        assert!(connection.is_closed());
        assert_eq!(read, input.len());
        assert_eq!(frames(&output)[1], disconnect(Status::Normal));
    }

    #[test]
    fn frames_split_anywhere_are_answered_alike_and_batches_are_bounded() {
        let (agent, _) = agent();
        let scheme = format!("GatewayKey {}", token("k1", Format::Compact));
        let mut input = hello(&[]);
        for id in 1..=3 {
            input.extend(notify(
                5,
                id,
                &[(b"token", Data::String(scheme.as_bytes()))],
            ));
        }
        let (_, whole, _) = run(&input);
        for cut in 0..input.len() {
            let mut connection = Connection::new();
            let mut output = Vec::new();
            let read = connection.receive(&agent, &input[..cut], &mut output);
            let mut rest = input[read..].to_vec();
            let read = connection.receive(&agent, &rest, &mut output);
            rest.drain(..read);
            assert!(rest.is_empty(), "cut at {cut}");
            assert_eq!(output, whole, "cut at {cut}");
        }
        // Many small NOTIFYs: answered a batch at a time.
        let mut input = hello(&[]);
        for id in 1..=200 {
            input.extend(notify(1, id, &[]));
        }
        let mut connection = Connection::new();
        let mut rest = &input[..];
        let mut batches = 0;
        let mut answered = 0;
        while !rest.is_empty() {
            let mut output = Vec::new();
            let read = connection.receive(&agent, rest, &mut output);
            assert!(output.len() < OUTPUT_BATCH + 1024);
            answered += frames(&output).len();
            rest = &rest[read..];
            batches += 1;
        }
        assert_eq!(answered, 201);
        assert!(batches > 2, "{batches}");
    }

    #[test]
    fn versions_are_read_as_haproxy_writes_them() {
        for yes in ["2.0", "2.0, 1.5", "1.0,2.3", " 2.10 "] {
            assert!(speaks_version_2(yes.as_bytes()), "{yes}");
        }
        for no in ["", "2", "2.", "20.0", "1.0", "2.x", "3.0", ",", "2 .0"] {
            assert!(!speaks_version_2(no.as_bytes()), "{no}");
        }
    }
}
