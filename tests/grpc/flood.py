#!/usr/bin/env python3
"""A hostile HTTP/2 client of `apim-sas serve`'s gRPC side: streams that start a message and never
finish it, on connections kept alive with PINGs and WINDOW_UPDATEs.

Python's `h2` (the HTTP/2 state machine alone, no gRPC library: every frame is this script's
choice) on plain sockets, installed with grpcio by .ci/deps/grpc.sh. tests/it/grpc_bounds.rs runs
it:

    target/grpc-venv/bin/python tests/grpc/flood.py ADDR:PORT < spec.json

The spec on stdin is one JSON object:

    {"connections": 6, "streams": 200, "path": "/envoy.service.auth.v3.Authorization/Check",
     "flag": 0, "declare": 1048576, "send": 0, "pid": 1234, "seconds": 40, "until": "reset"}

Each of `connections` connections waits for serve's SETTINGS, then opens `streams` calls at once,
beyond serve's SETTINGS_MAX_CONCURRENT_STREAMS too (as a hostile client may): each sends its
headers, a gRPC prefix (compressed flag `flag`, message length `declare`) and `send` bytes of the
message (as flow control allows), and never ends its side. From then on each connection gets a PING
and a WINDOW_UPDATE every 100 ms and nothing else, GOAWAY or not. It stops when every stream was
reset by serve (`until: "reset"`), or when serve closed every connection (`until: "closed"`), or
after `seconds`.

stdout: the line `holding` once every stream is opened and its bytes are sent (or it has ended),
then one JSON object:

    {"max_concurrent_streams": n, "opened": n, "refused": n,
     "answers": [{"status": ":status", "grpc_status": s, "grpc_message": m,
                  "check": <the CheckResponse as check.py reports it, or null>, "count": n}],
     "resets": {"<error code>": n}, "unreset": n, "ended_after": [min, max] or null,
     "goaways": {"<error code>": n}, "goaway_after": [min, max] or null,
     "closed": n, "closed_after": [min, max] or null,
     "holding_after": s or null, "peak_rss_kib": n or null}

`refused` counts streams reset with REFUSED_STREAM before any answer; `ended_after` is how long
after its opening each answered stream was reset (or its connection closed); `goaways` counts the
GOAWAY frames by error code, `goaway_after` and `closed_after` say when each connection got its
first and was closed by serve, after the script started; `peak_rss_kib` is the highest VmRSS
of process `pid` seen while the streams were held (sampled every 100 ms).
"""

import json
import select
import socket
import sys
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

from check import response_fields
from envoy.service.auth.v3 import external_auth_pb2

TICK = 0.1


class Hostile(h2.connection.H2Connection):
    """Opens streams whatever serve's SETTINGS_MAX_CONCURRENT_STREAMS says (h2 would refuse to)."""

    @property
    def open_outbound_streams(self):
        return 0

    def _receive_goaway_frame(self, frame):
        # Reads (and PINGs) on after GOAWAY, as a hostile client may: h2 would refuse every frame.
        state = self.state_machine.state
        frames, events = super()._receive_goaway_frame(frame)
        self.state_machine.state = state
        return frames, events


class Stream:
    def __init__(self, stream_id, opened, unsent):
        self.id = stream_id
        self.opened = opened
        self.unsent = unsent
        self.headers = {}
        self.data = b""
        self.trailers = {}
        self.reset = None
        self.ended = None

    def answer(self):
        check = None
        if self.headers.get("content-type", "").startswith("application/grpc") and len(self.data) >= 5:
            check = response_fields(external_auth_pb2.CheckResponse.FromString(self.data[5:]))
        # A trailers-only answer carries grpc-status in its headers.
        meta = self.trailers or self.headers
        return {
            "status": self.headers.get(":status"),
            "grpc_status": meta.get("grpc-status"),
            "grpc_message": meta.get("grpc-message"),
            "check": check,
        }


class Connection:
    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.authority = addr
        self.conn = Hostile(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.streams = {}
        self.settled = False
        self.goaways = []
        self.goaway = None
        self.closed = None
        self.last_tick = 0.0
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data and self.closed is None:
            try:
                self.sock.sendall(data)
            except OSError:
                pass

    def receive(self, now):
        try:
            data = self.sock.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            self.closed = now
            for stream in self.streams.values():
                if stream.ended is None:
                    stream.ended = now
            return
        for event in self.conn.receive_data(data):
            self.handle(event, now)
        self.flush()

    def handle(self, event, now):
        if isinstance(event, h2.events.RemoteSettingsChanged):
            self.settled = True
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaways.append(int(event.error_code))
            if self.goaway is None:
                self.goaway = now
        elif isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                target = stream.headers if isinstance(event, h2.events.ResponseReceived) else stream.trailers
                target.update({str(k): str(v) for k, v in event.headers})
        elif isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.data += event.data
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.get(event.stream_id)
            if stream is not None and stream.reset is None:
                stream.reset = int(event.error_code)
                if stream.ended is None:
                    stream.ended = now

    def open(self, spec, now):
        prefix = bytes([spec.get("flag", 0)]) + spec["declare"].to_bytes(4, "big")
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", spec["path"]),
            (":authority", self.authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        for _ in range(spec["streams"]):
            stream_id = self.conn.get_next_available_stream_id()
            self.conn.send_headers(stream_id, headers)
            stream = Stream(stream_id, now, spec.get("send", 0))
            self.streams[stream_id] = stream
            self.conn.send_data(stream_id, prefix)
        self.flush()

    def pump(self):
        """Sends what flow control allows of each stream's message bytes, round robin."""
        moved = True
        while moved:
            moved = False
            for stream in self.streams.values():
                if stream.unsent <= 0 or stream.reset is not None:
                    continue
                try:
                    window = min(
                        self.conn.local_flow_control_window(stream.id),
                        self.conn.max_outbound_frame_size,
                        stream.unsent,
                    )
                except h2.exceptions.ProtocolError:
                    stream.unsent = 0
                    continue
                if window <= 0:
                    continue
                try:
                    self.conn.send_data(stream.id, bytes(window))
                except h2.exceptions.ProtocolError:
                    stream.unsent = 0
                    continue
                stream.unsent -= window
                moved = True
            self.flush()

    def tick(self, now):
        if now - self.last_tick < TICK or self.closed is not None:
            return
        self.last_tick = now
        self.conn.ping(int(now * 1000).to_bytes(8, "big"))
        self.conn.increment_flow_control_window(1)
        self.flush()

    def sent(self):
        return all(s.unsent <= 0 or s.reset is not None for s in self.streams.values())


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def span(values):
    return [min(values), max(values)] if values else None


def main():
    addr = sys.argv[1]
    spec = json.load(sys.stdin)
    started = time.monotonic()
    deadline = started + spec.get("seconds", 30)
    connections = [Connection(addr) for _ in range(spec["connections"])]
    holding = None
    peak = None
    last_sample = 0.0
    while time.monotonic() < deadline:
        live = [c for c in connections if c.closed is None]
        now = time.monotonic()
        if live:
            readable, _, _ = select.select([c.sock for c in live], [], [], TICK / 2)
            now = time.monotonic()
            for c in live:
                if c.sock in readable:
                    c.receive(now)
        for c in connections:
            if c.settled and not c.streams and spec["streams"] and c.goaway is None and c.closed is None:
                c.open(spec, now)
            c.pump()
            c.tick(now)
        if holding is None and all(c.settled and len(c.streams) == spec["streams"] and c.sent() for c in connections):
            holding = now - started
            print("holding", flush=True)
        if holding is not None and "pid" in spec and now - last_sample >= TICK:
            last_sample = now
            rss = rss_kib(spec["pid"])
            if rss is not None:
                peak = rss if peak is None else max(peak, rss)
        streams = [s for c in connections for s in c.streams.values()]
        if spec.get("until", "reset") == "reset":
            if holding is not None and all(s.reset is not None or s.ended is not None for s in streams):
                break
        elif all(c.closed is not None for c in connections):
            break
    streams = [s for c in connections for s in c.streams.values()]
    refused = [s for s in streams if s.reset == h2.errors.ErrorCodes.REFUSED_STREAM and not s.headers]
    answers = {}
    for stream in streams:
        if stream in refused or (not stream.headers and stream.reset is None):
            continue
        answer = stream.answer()
        key = json.dumps(answer, sort_keys=True)
        answers.setdefault(key, dict(answer, count=0))["count"] += 1
    resets = {}
    for stream in streams:
        if stream.reset is not None:
            resets[str(stream.reset)] = resets.get(str(stream.reset), 0) + 1
    goaways = {}
    for c in connections:
        for code in c.goaways:
            goaways[str(code)] = goaways.get(str(code), 0) + 1
    settings = connections[0].conn.remote_settings if connections else None
    report = {
        "max_concurrent_streams": settings.max_concurrent_streams if settings else None,
        "opened": len(streams),
        "refused": len(refused),
        "answers": sorted(answers.values(), key=lambda a: -a["count"]),
        "resets": resets,
        "unreset": sum(1 for s in streams if s.reset is None and s.ended is None),
        "ended_after": span([s.ended - s.opened for s in streams if s not in refused and s.ended is not None]),
        "goaways": goaways,
        "goaway_after": span([c.goaway - started for c in connections if c.goaway is not None]),
        "closed": sum(1 for c in connections if c.closed is not None),
        "closed_after": span([c.closed - started for c in connections if c.closed is not None]),
        "holding_after": holding,
        "peak_rss_kib": peak,
    }
    for c in connections:
        c.sock.close()
    json.dump(report, sys.stdout)
    print(flush=True)


if __name__ == "__main__":
    main()
