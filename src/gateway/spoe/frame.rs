//! SPOP's wire format, read and written over bytes (no I/O): frames, their metadata, varints,
//! typed data, and the three payloads (a list of key/values, a NOTIFY's messages, an ACK's
//! actions), as HAProxy's `doc/SPOE.txt` (section 3) specifies them and as HAProxy 2.6 to 3.x
//! encode them.
//!
//! ```text
//! <FRAME-LENGTH:4 bytes, big-endian> <FRAME-TYPE:1 byte> <FLAGS:4 bytes> <STREAM-ID:varint>
//! <FRAME-ID:varint> <PAYLOAD>
//! ```
//!
//! Every read is bounded: a frame whose length says more than the connection's maximum is refused
//! from its first 4 bytes ([`Status::TooBig`]), before any more of it is held; every length inside
//! a frame is checked against the bytes the frame has; nothing here panics or allocates on input.
//! Every refusal is a [`Status`], the protocol's own error code, which the agent sends back in its
//! AGENT-DISCONNECT frame before closing the connection.
//!
//! ```
//! use apim_sas::spoe::frame::{Builder, Data, Frame, FrameType, Scope, FIN};
//!
//! let mut out = Vec::new();
//! Builder::new(&mut out, FrameType::Ack, FIN, 7, 1)
//!     .set_var(Scope::Transaction, b"valid", &Data::Bool(true))
//!     .finish(256)?;
//! assert_eq!(out, b"\x00\x00\x00\x11\x67\x00\x00\x00\x01\x07\x01\x01\x03\x02\x05valid\x11");
//!
//! let (frame, length) = Frame::read(&out, 256)?.expect("a whole frame");
//! assert_eq!((frame.frame_type, frame.stream_id, frame.frame_id, length), (FrameType::Ack, 7, 1, 21));
//! # Ok::<(), apim_sas::spoe::frame::Status>(())
//! ```

use std::fmt;

/// The smallest maximum frame size a peer may announce (SPOE.txt 3.2).
pub const MIN_FRAME_SIZE: u32 = 256;

/// The largest frame this agent reads or writes, its 4-byte length not counted: HAProxy's own
/// default (`tune.bufsize` 16384, less the length), and the most it offers unless its buffers are
/// made larger. A HELLO is read within it; after the HELLO, within what was agreed.
pub const MAX_FRAME_SIZE: u32 = 16_380;

/// Flag FIN: the frame is the last (or only) fragment of its payload.
pub const FIN: u32 = 0x0000_0001;

/// Flag ABORT: the fragmented payload this frame belongs to is abandoned.
pub const ABORT: u32 = 0x0000_0002;

/// The fewest bytes a frame has: its type, its flags, and one-byte stream and frame ids.
const SMALLEST_FRAME: usize = 7;

/// The types of the data a payload holds (the low 4 bits of a type byte).
const T_NULL: u8 = 0;
const T_BOOL: u8 = 1;
const T_INT32: u8 = 2;
const T_UINT32: u8 = 3;
const T_INT64: u8 = 4;
const T_UINT64: u8 = 5;
const T_IPV4: u8 = 6;
const T_IPV6: u8 = 7;
const T_STRING: u8 = 8;
const T_BINARY: u8 = 9;
/// A boolean's value: the first bit of the type byte's flags.
const BOOL_TRUE: u8 = 0x10;

/// The actions an ACK may carry.
const SET_VAR: u8 = 1;
const UNSET_VAR: u8 = 2;

/// What a frame is, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    /// 0: a fragment after the first of a fragmented payload.
    Unset,
    /// 1: HAProxy opens a connection (or checks the agent's health).
    HaproxyHello,
    /// 2: HAProxy closes the connection, or answers the agent's DISCONNECT.
    HaproxyDisconnect,
    /// 3: HAProxy asks: the messages of one event or group.
    Notify,
    /// 101: the agent's answer to HAProxy's HELLO.
    AgentHello,
    /// 102: the agent closes the connection, saying why.
    AgentDisconnect,
    /// 103: the agent's answer to one NOTIFY: actions such as setting variables.
    Ack,
}

impl FrameType {
    /// The type of a frame starting with `byte`; `None` for a type SPOP does not have.
    pub const fn from_u8(byte: u8) -> Option<FrameType> {
        Some(match byte {
            0 => FrameType::Unset,
            1 => FrameType::HaproxyHello,
            2 => FrameType::HaproxyDisconnect,
            3 => FrameType::Notify,
            101 => FrameType::AgentHello,
            102 => FrameType::AgentDisconnect,
            103 => FrameType::Ack,
            _ => return None,
        })
    }

    /// The byte a frame of this type starts with.
    pub const fn as_u8(self) -> u8 {
        match self {
            FrameType::Unset => 0,
            FrameType::HaproxyHello => 1,
            FrameType::HaproxyDisconnect => 2,
            FrameType::Notify => 3,
            FrameType::AgentHello => 101,
            FrameType::AgentDisconnect => 102,
            FrameType::Ack => 103,
        }
    }
}

/// SPOP's status codes (SPOE.txt 3.5): why a connection ends, sent in a DISCONNECT frame.
///
/// Only these codes are ever sent: HAProxy 2.6 looks the reason of a code up in its own table,
/// which has no entry (a null pointer) for the unassigned codes 14 to 98.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// 0: no error (a connection closed in good order).
    Normal,
    /// 1: an I/O error.
    Io,
    /// 2: a timeout.
    Timeout,
    /// 3: a frame longer than the maximum frame size.
    TooBig,
    /// 4: a frame that is not SPOP, or not expected now.
    Invalid,
    /// 5: a HELLO without `supported-versions`.
    NoVersion,
    /// 6: a HELLO without `max-frame-size`.
    NoFrameSize,
    /// 7: a HELLO without `capabilities`.
    NoCapabilities,
    /// 8: no version the agent speaks.
    BadVersion,
    /// 9: a `max-frame-size` under 256 bytes.
    BadFrameSize,
    /// 10: a fragmented payload, which the agent does not announce it reads.
    FragmentationNotSupported,
    /// 11: fragments of two payloads interlaced.
    InterlacedFrames,
    /// 12: a frame id that matches no frame.
    FrameIdNotFound,
    /// 13: resources could not be had.
    Resource,
    /// 99: any other error.
    Unknown,
}

impl Status {
    /// Every status, in the order of their codes.
    pub const ALL: [Status; 15] = [
        Status::Normal,
        Status::Io,
        Status::Timeout,
        Status::TooBig,
        Status::Invalid,
        Status::NoVersion,
        Status::NoFrameSize,
        Status::NoCapabilities,
        Status::BadVersion,
        Status::BadFrameSize,
        Status::FragmentationNotSupported,
        Status::InterlacedFrames,
        Status::FrameIdNotFound,
        Status::Resource,
        Status::Unknown,
    ];

    /// The code sent in a DISCONNECT frame's `status-code`.
    pub const fn code(self) -> u32 {
        match self {
            Status::Normal => 0,
            Status::Io => 1,
            Status::Timeout => 2,
            Status::TooBig => 3,
            Status::Invalid => 4,
            Status::NoVersion => 5,
            Status::NoFrameSize => 6,
            Status::NoCapabilities => 7,
            Status::BadVersion => 8,
            Status::BadFrameSize => 9,
            Status::FragmentationNotSupported => 10,
            Status::InterlacedFrames => 11,
            Status::FrameIdNotFound => 12,
            Status::Resource => 13,
            Status::Unknown => 99,
        }
    }

    /// The status of `code`, `None` for an unassigned one.
    pub fn from_code(code: u64) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|s| u64::from(s.code()) == code)
    }

    /// The reason, worded as HAProxy words it in its logs: what a DISCONNECT's `message` says.
    pub const fn reason(self) -> &'static str {
        match self {
            Status::Normal => "normal",
            Status::Io => "I/O error",
            Status::Timeout => "a timeout occurred",
            Status::TooBig => "frame is too big",
            Status::Invalid => "invalid frame received",
            Status::NoVersion => "version value not found",
            Status::NoFrameSize => "max-frame-size value not found",
            Status::NoCapabilities => "capabilities value not found",
            Status::BadVersion => "unsupported version",
            Status::BadFrameSize => "max-frame-size too big or too small",
            Status::FragmentationNotSupported => "fragmentation not supported",
            Status::InterlacedFrames => "invalid interlaced frames",
            Status::FrameIdNotFound => "frame-id not found",
            Status::Resource => "resource allocation error",
            Status::Unknown => "an unknown error occurred",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SPOP status {}: {}", self.code(), self.reason())
    }
}

impl std::error::Error for Status {}

/// One value of a payload (SPOE.txt 3.1, "typed data").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Data<'a> {
    /// No value (a sample HAProxy could not fetch, such as an absent header).
    Null,
    /// A boolean.
    Bool(bool),
    /// A 32-bit signed integer.
    Int32(i32),
    /// A 32-bit unsigned integer.
    Uint32(u32),
    /// A 64-bit signed integer (what HAProxy sends any integer sample as).
    Int64(i64),
    /// A 64-bit unsigned integer.
    Uint64(u64),
    /// An IPv4 address, in network order.
    Ipv4([u8; 4]),
    /// An IPv6 address, in network order.
    Ipv6([u8; 16]),
    /// A string: bytes, not necessarily UTF-8.
    String(&'a [u8]),
    /// Binary data.
    Binary(&'a [u8]),
}

impl<'a> Data<'a> {
    /// The bytes of a string or binary value.
    pub fn bytes(&self) -> Option<&'a [u8]> {
        match *self {
            Data::String(bytes) | Data::Binary(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// The value of an integer of any of the four types.
    pub fn integer(&self) -> Option<i128> {
        match *self {
            Data::Int32(n) => Some(n.into()),
            Data::Uint32(n) => Some(n.into()),
            Data::Int64(n) => Some(n.into()),
            Data::Uint64(n) => Some(n.into()),
            _ => None,
        }
    }
}

/// Appends `value` as a varint: HAProxy's "Peers" encoding, 1 byte under 240, else 4 bits in
/// the first byte and 7 in each of the next, whose high bit says whether one more follows.
pub fn put_varint(out: &mut Vec<u8>, value: u64) {
    if value < 240 {
        out.push(value as u8);
        return;
    }
    out.push((value as u8) | 0xF0);
    let mut rest = (value - 240) >> 4;
    while rest >= 128 {
        out.push((rest as u8) | 0x80);
        rest = (rest - 128) >> 7;
    }
    out.push(rest as u8);
}

/// A varint at the start of `bytes` (see [`put_varint`]) and how many bytes it took; `None` if
/// it is cut short or its value does not fit 64 bits.
pub fn get_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let (&first, mut rest) = bytes.split_first()?;
    if first < 240 {
        return Some((first.into(), 1));
    }
    // As HAProxy decodes it (each further byte added whole, its high bit included, shifted by
    // 4, 11, 18, … bits), counted in 128 bits so that no byte can overflow unseen.
    let mut value = u128::from(first);
    let mut shift = 4u32;
    let mut used = 1;
    loop {
        let (&byte, tail) = rest.split_first()?;
        rest = tail;
        used += 1;
        value += u128::from(byte) << shift;
        if value > u128::from(u64::MAX) {
            return None;
        }
        if byte < 128 {
            return u64::try_from(value).ok().map(|v| (v, used));
        }
        shift += 7;
        if shift > 64 {
            return None;
        }
    }
}

/// Reads a payload's parts from the front of its bytes.
#[derive(Debug, Clone, Copy)]
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn byte(&mut self) -> Result<u8, Status> {
        let (&byte, rest) = self.bytes.split_first().ok_or(Status::Invalid)?;
        self.bytes = rest;
        Ok(byte)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Status> {
        if n > self.bytes.len() {
            return Err(Status::Invalid);
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Status> {
        self.take(N)?.try_into().map_err(|_| Status::Invalid)
    }

    fn varint(&mut self) -> Result<u64, Status> {
        let (value, used) = get_varint(self.bytes).ok_or(Status::Invalid)?;
        self.take(used)?;
        Ok(value)
    }

    /// A length-prefixed string (a name: no type byte before it).
    fn string(&mut self) -> Result<&'a [u8], Status> {
        let length = self.varint()?;
        self.take(usize::try_from(length).map_err(|_| Status::Invalid)?)
    }

    fn data(&mut self) -> Result<Data<'a>, Status> {
        let type_byte = self.byte()?;
        Ok(match type_byte & 0x0F {
            T_NULL => Data::Null,
            T_BOOL => Data::Bool(type_byte & BOOL_TRUE != 0),
            T_INT32 => {
                Data::Int32(i32::try_from(self.varint()? as i64).map_err(|_| Status::Invalid)?)
            }
            T_UINT32 => Data::Uint32(u32::try_from(self.varint()?).map_err(|_| Status::Invalid)?),
            // HAProxy writes a signed integer's two's complement as the varint.
            T_INT64 => Data::Int64(self.varint()? as i64),
            T_UINT64 => Data::Uint64(self.varint()?),
            T_IPV4 => Data::Ipv4(self.array()?),
            T_IPV6 => Data::Ipv6(self.array()?),
            T_STRING => Data::String(self.string()?),
            T_BINARY => Data::Binary(self.string()?),
            _ => return Err(Status::Invalid),
        })
    }
}

/// One frame, read from its bytes: the payload is borrowed, not copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// What the frame is.
    pub frame_type: FrameType,
    /// Its flags ([`FIN`], [`ABORT`]).
    pub flags: u32,
    /// The stream it belongs to (0 for HELLO and DISCONNECT).
    pub stream_id: u64,
    /// Its id within the stream (0 for HELLO and DISCONNECT).
    pub frame_id: u64,
    /// Its payload, undecoded: see [`kv_list`](Frame::kv_list), [`messages`](Frame::messages),
    /// [`actions`](Frame::actions).
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// The frame at the start of `input`, whose first 4 bytes are its length, and how many bytes
    /// it takes with them; `None` while it is not all there. A length over `max` is
    /// [`Status::TooBig`] and one too short to hold a frame's metadata [`Status::Invalid`], both
    /// as soon as the length is read.
    pub fn read(input: &'a [u8], max: u32) -> Result<Option<(Frame<'a>, usize)>, Status> {
        let Some(length) = Frame::declared(input, max)? else {
            return Ok(None);
        };
        let Some(bytes) = input.get(4..4 + length) else {
            return Ok(None);
        };
        Ok(Some((Frame::parse(bytes)?, 4 + length)))
    }

    /// The length the frame at the start of `input` declares (not counting its 4 bytes), once
    /// they are there, checked as [`read`](Frame::read) checks it.
    pub fn declared(input: &[u8], max: u32) -> Result<Option<usize>, Status> {
        let Some(prefix) = input.get(..4) else {
            return Ok(None);
        };
        let mut length = [0; 4];
        length.copy_from_slice(prefix);
        let length = u32::from_be_bytes(length);
        if length > max {
            return Err(Status::TooBig);
        }
        let length = usize::try_from(length).map_err(|_| Status::TooBig)?;
        if length < SMALLEST_FRAME {
            return Err(Status::Invalid);
        }
        Ok(Some(length))
    }

    /// A frame from its bytes (after the 4 of its length): its type, flags and ids.
    pub fn parse(bytes: &'a [u8]) -> Result<Frame<'a>, Status> {
        let mut cursor = Cursor { bytes };
        let frame_type = FrameType::from_u8(cursor.byte()?).ok_or(Status::Invalid)?;
        let flags = u32::from_be_bytes(cursor.array()?);
        let stream_id = cursor.varint()?;
        let frame_id = cursor.varint()?;
        Ok(Frame {
            frame_type,
            flags,
            stream_id,
            frame_id,
            payload: cursor.bytes,
        })
    }

    /// Whether this is the last (or only) fragment of its payload.
    pub fn is_fin(&self) -> bool {
        self.flags & FIN != 0
    }

    /// The payload as a list of key/values: HELLO and DISCONNECT frames.
    pub fn kv_list(&self) -> KvList<'a> {
        KvList {
            cursor: Cursor {
                bytes: self.payload,
            },
        }
    }

    /// The payload as a list of messages: NOTIFY frames.
    pub fn messages(&self) -> Messages<'a> {
        Messages {
            cursor: Cursor {
                bytes: self.payload,
            },
        }
    }

    /// The payload as a list of actions: ACK frames.
    pub fn actions(&self) -> Actions<'a> {
        Actions {
            cursor: Cursor {
                bytes: self.payload,
            },
        }
    }
}

/// The key/values of a HELLO or DISCONNECT payload, in order: each a name and its value. An
/// error ends the list.
#[derive(Debug, Clone)]
pub struct KvList<'a> {
    cursor: Cursor<'a>,
}

impl<'a> Iterator for KvList<'a> {
    type Item = Result<(&'a [u8], Data<'a>), Status>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.cursor.is_empty() {
            return None;
        }
        let item = self
            .cursor
            .string()
            .and_then(|name| Ok((name, self.cursor.data()?)));
        if item.is_err() {
            self.cursor.bytes = &[];
        }
        Some(item)
    }
}

/// The messages of a NOTIFY payload, in order. An error ends the list.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    cursor: Cursor<'a>,
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, Status>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.cursor.is_empty() {
            return None;
        }
        let message = self.message();
        if message.is_err() {
            self.cursor.bytes = &[];
        }
        Some(message)
    }
}

impl<'a> Messages<'a> {
    /// The next message, its arguments all read once so that a bad one is refused here.
    fn message(&mut self) -> Result<Message<'a>, Status> {
        let name = self.cursor.string()?;
        let count = self.cursor.byte()?;
        let start = self.cursor.bytes;
        for _ in 0..count {
            self.cursor.string()?;
            self.cursor.data()?;
        }
        let used = start.len() - self.cursor.bytes.len();
        Ok(Message {
            name,
            args: start.get(..used).unwrap_or_default(),
            count,
        })
    }
}

/// One message of a NOTIFY: its name and its arguments (each a name, empty for an unnamed one,
/// and a value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// The name of the `spoe-message` section it comes from.
    pub name: &'a [u8],
    args: &'a [u8],
    count: u8,
}

impl<'a> Message<'a> {
    /// Its arguments, in the order the `args` line declares them.
    pub fn args(&self) -> Args<'a> {
        Args {
            cursor: Cursor { bytes: self.args },
            left: self.count,
        }
    }
}

/// The arguments of a [`Message`] (already read whole once, when the message was).
#[derive(Debug, Clone)]
pub struct Args<'a> {
    cursor: Cursor<'a>,
    left: u8,
}

impl<'a> Iterator for Args<'a> {
    type Item = (&'a [u8], Data<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        self.left = self.left.checked_sub(1)?;
        let name = self.cursor.string().ok()?;
        let value = self.cursor.data().ok()?;
        Some((name, value))
    }
}

/// A variable's scope in HAProxy: where it lives, and so for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// 0: `proc`, the process.
    Process,
    /// 1: `sess`, the client's session.
    Session,
    /// 2: `txn`, the transaction (request and response).
    Transaction,
    /// 3: `req`, the request's processing.
    Request,
    /// 4: `res`, the response's processing.
    Response,
}

impl Scope {
    fn from_u8(byte: u8) -> Option<Scope> {
        Some(match byte {
            0 => Scope::Process,
            1 => Scope::Session,
            2 => Scope::Transaction,
            3 => Scope::Request,
            4 => Scope::Response,
            _ => return None,
        })
    }

    const fn as_u8(self) -> u8 {
        match self {
            Scope::Process => 0,
            Scope::Session => 1,
            Scope::Transaction => 2,
            Scope::Request => 3,
            Scope::Response => 4,
        }
    }
}

/// One action of an ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Sets the variable `name` (HAProxy adds the agent's `var-prefix`) of `scope` to `value`.
    SetVar {
        /// The variable's scope.
        scope: Scope,
        /// Its name.
        name: &'a [u8],
        /// Its value.
        value: Data<'a>,
    },
    /// Unsets the variable `name` of `scope`.
    UnsetVar {
        /// The variable's scope.
        scope: Scope,
        /// Its name.
        name: &'a [u8],
    },
}

/// The actions of an ACK payload, in order. An error ends the list.
#[derive(Debug, Clone)]
pub struct Actions<'a> {
    cursor: Cursor<'a>,
}

impl<'a> Iterator for Actions<'a> {
    type Item = Result<Action<'a>, Status>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.cursor.is_empty() {
            return None;
        }
        let action = self.action();
        if action.is_err() {
            self.cursor.bytes = &[];
        }
        Some(action)
    }
}

impl<'a> Actions<'a> {
    fn action(&mut self) -> Result<Action<'a>, Status> {
        let kind = self.cursor.byte()?;
        let count = self.cursor.byte()?;
        let scope = Scope::from_u8(self.cursor.byte()?).ok_or(Status::Invalid)?;
        let name = self.cursor.string()?;
        match (kind, count) {
            (SET_VAR, 3) => Ok(Action::SetVar {
                scope,
                name,
                value: self.cursor.data()?,
            }),
            (UNSET_VAR, 2) => Ok(Action::UnsetVar { scope, name }),
            _ => Err(Status::Invalid),
        }
    }
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_data(out: &mut Vec<u8>, value: &Data<'_>) {
    match *value {
        Data::Null => out.push(T_NULL),
        Data::Bool(value) => out.push(if value { T_BOOL | BOOL_TRUE } else { T_BOOL }),
        Data::Int32(n) => {
            out.push(T_INT32);
            put_varint(out, i64::from(n) as u64);
        }
        Data::Uint32(n) => {
            out.push(T_UINT32);
            put_varint(out, n.into());
        }
        Data::Int64(n) => {
            out.push(T_INT64);
            put_varint(out, n as u64);
        }
        Data::Uint64(n) => {
            out.push(T_UINT64);
            put_varint(out, n);
        }
        Data::Ipv4(address) => {
            out.push(T_IPV4);
            out.extend_from_slice(&address);
        }
        Data::Ipv6(address) => {
            out.push(T_IPV6);
            out.extend_from_slice(&address);
        }
        Data::String(bytes) => {
            out.push(T_STRING);
            put_string(out, bytes);
        }
        Data::Binary(bytes) => {
            out.push(T_BINARY);
            put_string(out, bytes);
        }
    }
}

/// Writes one frame at the end of a buffer: the metadata first, then the payload part by part,
/// the length last ([`finish`](Builder::finish)). A builder dropped unfinished takes its bytes
/// back out of the buffer, so it borrows the buffer until dropped: chain the calls in one
/// statement, as in the [module docs](self), or drop it before reading the buffer.
#[derive(Debug)]
pub struct Builder<'o> {
    out: &'o mut Vec<u8>,
    start: usize,
    finished: bool,
}

impl<'o> Builder<'o> {
    /// Starts a frame of `frame_type` with `flags` and ids at the end of `out`.
    pub fn new(
        out: &'o mut Vec<u8>,
        frame_type: FrameType,
        flags: u32,
        stream_id: u64,
        frame_id: u64,
    ) -> Builder<'o> {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        out.push(frame_type.as_u8());
        out.extend_from_slice(&flags.to_be_bytes());
        put_varint(out, stream_id);
        put_varint(out, frame_id);
        Builder {
            out,
            start,
            finished: false,
        }
    }

    /// Adds a key/value (HELLO and DISCONNECT payloads).
    pub fn kv(&mut self, name: &[u8], value: &Data<'_>) -> &mut Self {
        if self.finished {
            return self;
        }
        put_string(self.out, name);
        put_data(self.out, value);
        self
    }

    /// Adds a message (NOTIFY payloads): its name and its arguments, at most 255 (the count is
    /// one byte; any more are left out).
    pub fn message(&mut self, name: &[u8], args: &[(&[u8], Data<'_>)]) -> &mut Self {
        if self.finished {
            return self;
        }
        let args = args.get(..args.len().min(255)).unwrap_or_default();
        put_string(self.out, name);
        self.out.push(args.len() as u8);
        for (name, value) in args {
            put_string(self.out, name);
            put_data(self.out, value);
        }
        self
    }

    /// Adds the action that sets variable `name` of `scope` to `value` (ACK payloads).
    pub fn set_var(&mut self, scope: Scope, name: &[u8], value: &Data<'_>) -> &mut Self {
        if self.finished {
            return self;
        }
        self.out.extend_from_slice(&[SET_VAR, 3, scope.as_u8()]);
        put_string(self.out, name);
        put_data(self.out, value);
        self
    }

    /// Adds the action that sets variable `name` of `scope` to the string `write` appends to
    /// the buffer (so that a value can be formatted in place, without a buffer of its own).
    pub fn set_var_with(
        &mut self,
        scope: Scope,
        name: &[u8],
        write: impl FnOnce(&mut Vec<u8>),
    ) -> &mut Self {
        if self.finished {
            return self;
        }
        self.out.extend_from_slice(&[SET_VAR, 3, scope.as_u8()]);
        put_string(self.out, name);
        self.out.push(T_STRING);
        // One byte for the length, right for any value under 240 bytes; a longer one has its
        // varint put in place of it.
        let at = self.out.len();
        self.out.push(0);
        write(self.out);
        let length = self.out.len() - at - 1;
        if let (Ok(short @ 0..=239), Some(slot)) = (u8::try_from(length), self.out.get_mut(at)) {
            *slot = short;
        } else {
            let mut varint = Vec::with_capacity(10);
            put_varint(&mut varint, length as u64);
            self.out.splice(at..at + 1, varint);
        }
        self
    }

    /// Adds the action that unsets variable `name` of `scope` (ACK payloads).
    pub fn unset_var(&mut self, scope: Scope, name: &[u8]) -> &mut Self {
        if self.finished {
            return self;
        }
        self.out.extend_from_slice(&[UNSET_VAR, 2, scope.as_u8()]);
        put_string(self.out, name);
        self
    }

    /// Ends the frame: writes its length and returns how many bytes it took with it. A frame
    /// longer than `max` is taken back out and [`Status::TooBig`]. Once finished, a builder
    /// writes nothing more (its other methods do nothing, and finishing again is an error).
    pub fn finish(&mut self, max: u32) -> Result<usize, Status> {
        if self.finished {
            return Err(Status::Invalid);
        }
        self.finished = true;
        let written = self.out.len() - self.start;
        let length = u32::try_from(written - 4)
            .ok()
            .filter(|&length| length <= max);
        match (length, self.out.get_mut(self.start..self.start + 4)) {
            (Some(length), Some(prefix)) => {
                prefix.copy_from_slice(&length.to_be_bytes());
                Ok(written)
            }
            _ => {
                self.out.truncate(self.start);
                Err(Status::TooBig)
            }
        }
    }
}

impl Drop for Builder<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.out.truncate(self.start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_haproxys_peers_encoding() {
        // The boundaries of each length, and what HAProxy's own encoder writes for them
        // (include/haproxy/intops.h, encode_varint).
        let cases: [(u64, &[u8]); 8] = [
            (0, &[0x00]),
            (239, &[0xEF]),
            (240, &[0xF0, 0x00]),
            (2287, &[0xFF, 0x7F]),
            (2288, &[0xF0, 0x80, 0x00]),
            (16380, &[0xFC, 0xF0, 0x06]),
            (264_431, &[0xFF, 0xFF, 0x7F]),
            (264_432, &[0xF0, 0x80, 0x80, 0x00]),
        ];
        for (value, bytes) in cases {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out, bytes, "{value}");
            assert_eq!(get_varint(bytes), Some((value, bytes.len())), "{value}");
        }
        for value in [
            u64::MAX,
            u64::MAX - 1,
            1 << 63,
            u32::MAX.into(),
            4_328_786_159,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert!(out.len() <= 10);
            assert_eq!(get_varint(&out), Some((value, out.len())), "{value}");
            // Cut short anywhere: not a varint.
            for cut in 0..out.len() {
                assert_eq!(get_varint(&out[..cut]), None);
            }
        }
        // Too many bytes, or a value past 64 bits.
        assert_eq!(get_varint(&[0xFF; 12]), None);
        assert_eq!(
            get_varint(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),
            None
        );
    }

    #[test]
    fn a_length_over_the_maximum_is_refused_from_its_four_bytes() {
        assert_eq!(Frame::read(&[0, 0, 1], 256), Ok(None));
        assert_eq!(Frame::read(&[0, 0, 1, 1], 256), Err(Status::TooBig));
        assert_eq!(Frame::read(&[0xFF; 4], MAX_FRAME_SIZE), Err(Status::TooBig));
        assert_eq!(Frame::read(&[0, 0, 0, 6], 256), Err(Status::Invalid));
        assert_eq!(Frame::read(&[0, 0, 0, 0], 256), Err(Status::Invalid));
        // A whole frame of an unknown type, and one whose ids overrun it.
        assert_eq!(
            Frame::read(&[0, 0, 0, 7, 4, 0, 0, 0, 1, 0, 0], 256),
            Err(Status::Invalid)
        );
        assert_eq!(
            Frame::read(&[0, 0, 0, 7, 3, 0, 0, 0, 1, 0, 0xF0], 256),
            Err(Status::Invalid)
        );
        let notify = [0, 0, 0, 7, 3, 0, 0, 0, 1, 5, 1];
        let (frame, used) = Frame::read(&notify, 256).unwrap().unwrap();
        assert_eq!(used, 11);
        assert_eq!(
            (
                frame.frame_type,
                frame.is_fin(),
                frame.stream_id,
                frame.frame_id
            ),
            (FrameType::Notify, true, 5, 1)
        );
        assert!(frame.payload.is_empty());
        assert_eq!(Frame::read(&notify[..10], 256), Ok(None));
    }

    #[test]
    fn payloads_read_what_builders_write() {
        let mut out = Vec::new();
        let mut frame = Builder::new(&mut out, FrameType::Notify, FIN, 300, 2);
        frame.message(
            b"check-token",
            &[
                (b"token", Data::String(b"GatewayKey gw1&x")),
                (b"count", Data::Int64(1)),
                (b"", Data::Null),
            ],
        );
        frame.message(
            b"other",
            &[
                (b"a", Data::Bool(true)),
                (b"b", Data::Ipv4([127, 0, 0, 1])),
                (b"c", Data::Ipv6([1; 16])),
                (b"d", Data::Binary(&[0, 255])),
                (b"e", Data::Int32(-5)),
                (b"f", Data::Uint32(u32::MAX)),
                (b"g", Data::Int64(i64::MIN)),
                (b"h", Data::Uint64(u64::MAX)),
                (b"i", Data::Bool(false)),
            ],
        );
        let length = frame.finish(MAX_FRAME_SIZE).unwrap();
        drop(frame);
        assert_eq!(length, out.len());
        let (frame, _) = Frame::read(&out, MAX_FRAME_SIZE).unwrap().unwrap();
        let messages: Vec<Message<'_>> = frame.messages().map(Result::unwrap).collect();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].name, b"check-token");
        let args: Vec<_> = messages[0].args().collect();
        assert_eq!(
            args,
            [
                (&b"token"[..], Data::String(b"GatewayKey gw1&x")),
                (&b"count"[..], Data::Int64(1)),
                (&b""[..], Data::Null),
            ]
        );
        let args: Vec<_> = messages[1].args().map(|(_, v)| v).collect();
        assert_eq!(
            args,
            [
                Data::Bool(true),
                Data::Ipv4([127, 0, 0, 1]),
                Data::Ipv6([1; 16]),
                Data::Binary(&[0, 255]),
                Data::Int32(-5),
                Data::Uint32(u32::MAX),
                Data::Int64(i64::MIN),
                Data::Uint64(u64::MAX),
                Data::Bool(false),
            ]
        );

        let mut out = Vec::new();
        let mut ack = Builder::new(&mut out, FrameType::Ack, FIN, 1, 1);
        ack.set_var(Scope::Transaction, b"valid", &Data::Bool(false))
            .set_var_with(Scope::Request, b"long", |out| out.extend([b'x'; 300]))
            .set_var_with(Scope::Response, b"short", |out| out.extend(b"abc"))
            .unset_var(Scope::Session, b"gone");
        ack.finish(MAX_FRAME_SIZE).unwrap();
        drop(ack);
        let (frame, _) = Frame::read(&out, MAX_FRAME_SIZE).unwrap().unwrap();
        let actions: Vec<Action<'_>> = frame.actions().map(Result::unwrap).collect();
        assert_eq!(
            actions,
            [
                Action::SetVar {
                    scope: Scope::Transaction,
                    name: b"valid",
                    value: Data::Bool(false)
                },
                Action::SetVar {
                    scope: Scope::Request,
                    name: b"long",
                    value: Data::String(&[b'x'; 300])
                },
                Action::SetVar {
                    scope: Scope::Response,
                    name: b"short",
                    value: Data::String(b"abc")
                },
                Action::UnsetVar {
                    scope: Scope::Session,
                    name: b"gone"
                },
            ]
        );
    }

    #[test]
    fn bad_payloads_end_their_lists_with_invalid() {
        // A name longer than the payload, a value of type 10, an INT32 over 32 bits, a message
        // with more arguments than it has.
        let bad: [&[u8]; 4] = [
            b"\x05ab",
            b"\x01a\x0A",
            b"\x01a\x02\xF0\x80\x80\x80\x7F",
            b"\x01m\x02\x01a\x00",
        ];
        for payload in bad {
            let frame = Frame {
                frame_type: FrameType::Notify,
                flags: FIN,
                stream_id: 1,
                frame_id: 1,
                payload,
            };
            let kv: Vec<_> = frame.kv_list().collect();
            let messages: Vec<_> = frame.messages().collect();
            let actions: Vec<_> = frame.actions().collect();
            assert!(kv.last().unwrap().is_err() || messages.last().unwrap().is_err());
            for list in [
                kv.iter().map(|r| r.is_err()).collect::<Vec<_>>(),
                messages.iter().map(|r| r.is_err()).collect(),
                actions.iter().map(|r| r.is_err()).collect(),
            ] {
                // An error is the last item.
                if let Some(at) = list.iter().position(|e| *e) {
                    assert_eq!(at, list.len() - 1);
                }
            }
        }
    }

    #[test]
    fn a_frame_over_the_maximum_is_taken_back() {
        let mut out = b"kept".to_vec();
        let mut frame = Builder::new(&mut out, FrameType::Ack, FIN, 1, 1);
        frame.set_var(Scope::Transaction, b"body", &Data::String(&[b'x'; 300]));
        assert_eq!(frame.finish(256), Err(Status::TooBig));
        drop(frame);
        assert_eq!(out, b"kept");
        // Finished: it writes nothing more.
        let mut frame = Builder::new(&mut out, FrameType::Ack, FIN, 1, 1);
        assert_eq!(frame.finish(256), Ok(7 + 4));
        frame.set_var(Scope::Transaction, b"valid", &Data::Bool(true));
        assert_eq!(frame.finish(256), Err(Status::Invalid));
        drop(frame);
        assert_eq!(out, b"kept\x00\x00\x00\x07\x67\x00\x00\x00\x01\x01\x01");
        out.truncate(4);
        // Dropped unfinished: taken back too.
        drop(Builder::new(&mut out, FrameType::Ack, FIN, 1, 1));
        assert_eq!(out, b"kept");
    }

    #[test]
    fn statuses_are_haproxys_codes_and_reasons() {
        for status in Status::ALL {
            assert_eq!(Status::from_code(status.code().into()), Some(status));
            assert!(status.reason().len() < 256);
        }
        assert_eq!(Status::from_code(14), None);
        assert_eq!(Status::Unknown.code(), 99);
        assert_eq!(
            Status::FragmentationNotSupported.to_string(),
            "SPOP status 10: fragmentation not supported"
        );
    }
}
