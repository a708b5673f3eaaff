//! SPOP from arbitrary bytes, fed to the agent's connection (`apim_sas::spoe::Connection`, which
//! reads every frame through the codec of `apim_sas::spoe::frame`) in pieces cut where the input
//! says: never a panic; every answer a well-formed frame of the agent's (AGENT-HELLO, ACK or
//! AGENT-DISCONNECT, each within the frame size agreed, its payload read back whole); nothing
//! answered after the AGENT-DISCONNECT that closes the connection; and the same answers however
//! the bytes are cut, a byte at a time included. Varints read back what was written.
#![no_main]

use std::sync::OnceLock;

use apim_sas::chrono::{DateTime, TimeZone, Utc};
use apim_sas::layer::{SharedVerifier, VerifyLayer};
use apim_sas::spoe::frame::{self, Frame, FrameType, MAX_FRAME_SIZE};
use apim_sas::spoe::{Agent, Connection};
use apim_sas::{GatewayKey, KeyType, Policy, Verifier};
use libfuzzer_sys::fuzz_target;

/// The keystore of fuzz_targets/verify.rs's first gateway (fuzz/seed.py signs for it).
const GATEWAY: (&str, &str, &str) = ("gw1", "primary-key-of-gw1", "secondary-key-of-gw1");

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, 21, 0, 0, 0).unwrap()
}

fn agent() -> &'static Agent {
    static AGENT: OnceLock<Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        let mut verifier = Verifier::new(Policy::new().with_max_lifetime(None));
        let (id, primary, secondary) = GATEWAY;
        verifier
            .insert(id, KeyType::Primary, &GatewayKey::new(primary).unwrap())
            .unwrap();
        verifier
            .insert(id, KeyType::Secondary, &GatewayKey::new(secondary).unwrap())
            .unwrap();
        Agent::from(VerifyLayer::new(SharedVerifier::new(verifier)).with_clock(now))
    })
}

/// What the agent answers `input` sent in pieces ending at `cuts`, every answer checked.
fn answers(input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut connection = Connection::new();
    let mut pending = Vec::new();
    let mut answered = Vec::new();
    let mut start = 0;
    for end in cuts.iter().copied().chain([input.len()]) {
        let end = end.clamp(start, input.len());
        pending.extend_from_slice(&input[start..end]);
        start = end;
        loop {
            let mut output = Vec::new();
            let read = connection.receive(agent(), &pending, &mut output);
            assert!(read <= pending.len());
            pending.drain(..read);
            check(&output, &connection);
            answered.extend_from_slice(&output);
            if connection.is_closed() {
                return answered;
            }
            if read == 0 {
                break;
            }
            // What is left is never a whole frame the connection could have read.
            if output.len() < apim_sas::spoe::OUTPUT_BATCH {
                assert!(matches!(
                    Frame::read(&pending, connection.max_frame_size()),
                    Ok(None)
                ));
            }
        }
    }
    answered
}

/// Every frame of `output` is one an agent sends, whole and within the size agreed; a
/// DISCONNECT comes last, and only once the connection is closed.
fn check(output: &[u8], connection: &Connection) {
    let mut rest = output;
    while !rest.is_empty() {
        let (frame, length) = Frame::read(rest, MAX_FRAME_SIZE)
            .expect("the agent's frames are well formed")
            .expect("the agent's frames are whole");
        rest = &rest[length..];
        assert!(frame.is_fin());
        match frame.frame_type {
            FrameType::AgentHello => {
                assert_eq!((frame.stream_id, frame.frame_id), (0, 0));
                assert_eq!(frame.kv_list().filter(|kv| kv.is_ok()).count(), 3);
            }
            FrameType::Ack => {
                assert!(length - 4 <= connection.max_frame_size() as usize);
                let actions: Vec<_> = frame.actions().collect::<Result<_, _>>().unwrap();
                assert!(actions.len() == 4 || actions.len() == 5, "{actions:?}");
            }
            FrameType::AgentDisconnect => {
                assert!(rest.is_empty(), "answers after a DISCONNECT");
                assert!(connection.is_closed());
                let items: Vec<_> = frame.kv_list().collect::<Result<_, _>>().unwrap();
                assert_eq!(items.len(), 2);
                let code = items[0].1.integer().unwrap();
                let status = connection.closed_with().unwrap();
                assert_eq!(code, i128::from(status.code()));
            }
            other => panic!("the agent sent {other:?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The first two bytes say where to cut the rest, what the peer sends.
    let (how, input) = data.split_at(data.len().min(2));
    let whole = answers(input, &[]);
    let cut = |byte: Option<&u8>| usize::from(byte.copied().unwrap_or(0)) * input.len() / 256;
    let (a, b) = (cut(how.first()), cut(how.get(1)));
    assert_eq!(answers(input, &[a.min(b), a.max(b)]), whole);
    if input.len() <= 512 {
        let every: Vec<usize> = (1..input.len()).collect();
        assert_eq!(answers(input, &every), whole);
    }
    // Varints: what is written is read back, in as many bytes.
    if let Some(bytes) = input.get(..8) {
        let value = u64::from_le_bytes(bytes.try_into().unwrap());
        let mut out = Vec::new();
        frame::put_varint(&mut out, value);
        assert_eq!(frame::get_varint(&out), Some((value, out.len())));
    }
});
