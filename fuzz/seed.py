#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, from the golden vectors (and, for `verify`, tokens signed
with Python's hmac for the fixed keystore of fuzz_targets/verify.rs, so that the fuzzer starts
from tokens that verify; for `spop`, what HAProxy sends an agent, with such tokens). Run from the
repository root: python3 fuzz/seed.py"""

import base64
import hashlib
import hmac
import json
import os
import random

root = os.path.dirname(os.path.abspath(__file__))
vectors = json.load(open(os.path.join(root, "..", "tests", "vectors", "golden.json")))
vectors += json.load(open(os.path.join(root, "..", "tests", "vectors", "sample-vectors.json")))


def write(target, name, data):
    d = os.path.join(root, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


rng = random.Random(1)
for i, v in enumerate(vectors):
    token = v["token"].encode()
    write("parse", f"golden-{i:03d}", token)
    if i % 3 == 0:
        write("parse", f"golden-{i:03d}-gk", b"GatewayKey " + token)
    if i % 3 == 1:
        write("parse", f"golden-{i:03d}-sas", b"sharedaccesssignature  " + token)
    if i % 3 == 2:
        write("parse", f"golden-{i:03d}-portal", b'SharedAccessSignature token="' + token + b'",refresh="true"')
    write("roundtrip", f"seed-{i:03d}", token + bytes(rng.getrandbits(8) for _ in range(16)))

GATEWAYS = [
    ("gw1", "primary-key-of-gw1", "secondary-key-of-gw1"),
    ("53dd860e1b72ff0467030003",
     "pXeTVcmdbU9XxH6fPcPlq8Y9D9G3Cdo5Eh2nMSgKj/DWqeSFFXDdmpz5Trv+L2hQNM+nGa704Rf8Z22W9O1jdQ==", "321"),
    ("integration", "clé-ünïcødé", "k"),
]
for gw, primary, secondary in GATEWAYS:
    for key_name, key in (("p", primary), ("s", secondary)):
        for o in ("2026-04-25T12:30:00.0000000Z", "2026-05-01T00:00:00.1234567Z", "2026-04-20T23:59:30.0000000Z"):
            sig = base64.b64encode(hmac.new(key.encode(), f"{gw}\n{o}".encode(), hashlib.sha512).digest()).decode()
            write("verify", f"{gw[:8]}-{key_name}-{o[:19]}-uid", f"uid={gw}&ex={o}&sn={sig}".encode())
            if o[17:] == "00.0000000Z":
                c = o[0:4] + o[5:7] + o[8:10] + o[11:13] + o[14:16]
                write("verify", f"{gw[:8]}-{key_name}-{o[:19]}-compact", f"GatewayKey {gw}&{c}&{sig}".encode())
                write("verify", f"{gw[:8]}-{key_name}-{o[:19]}-portal",
                      f'SharedAccessSignature token="{gw}&{c}&{sig}"'.encode())

# `spop`: what HAProxy sends an agent (two bytes first: where the fuzz target cuts the rest). Its
# HELLO, as HAProxy 2.6 writes it, then NOTIFYs carrying tokens of gw1 signed above (valid, with
# the secondary key, forged), none, or two; a health check's HELLO; HAProxy's DISCONNECT.


def varint(value):
    if value < 240:
        return bytes([value])
    out = bytearray([(value & 0xFF) | 0xF0])
    value = (value - 240) >> 4
    while value >= 128:
        out.append((value & 0xFF) | 0x80)
        value = (value - 128) >> 7
    out.append(value)
    return bytes(out)


def spop_string(data):
    return varint(len(data)) + data


def spop_frame(kind, stream, frame_id, payload, flags=1):
    body = bytes([kind]) + flags.to_bytes(4, "big") + varint(stream) + varint(frame_id) + payload
    return len(body).to_bytes(4, "big") + body


def spop_hello(health_check=False):
    payload = spop_string(b"supported-versions") + b"\x08" + spop_string(b"2.0")
    payload += spop_string(b"max-frame-size") + b"\x03" + varint(16380)
    caps = b"" if health_check else b"pipelining,async"
    payload += spop_string(b"capabilities") + b"\x08" + spop_string(caps)
    if health_check:
        payload += spop_string(b"healthcheck") + b"\x11"
    return spop_frame(1, 0, 0, payload)


def spop_notify(stream, frame_id, token, count):
    args = []
    if token is not None:
        args.append(spop_string(b"token") + b"\x08" + spop_string(token))
    if count is not None:
        args.append(spop_string(b"count") + b"\x04" + varint(count))
    payload = spop_string(b"check-token") + bytes([len(args)]) + b"".join(args)
    return spop_frame(3, stream, frame_id, payload)


def gw1_token(key, o_form):
    sig = base64.b64encode(hmac.new(key.encode(), f"gw1\n{o_form}".encode(), hashlib.sha512).digest())
    return b"GatewayKey gw1&" + (o_form[0:4] + o_form[5:7] + o_form[8:10] + o_form[11:13] + o_form[14:16]).encode() + b"&" + sig


valid = gw1_token("primary-key-of-gw1", "2026-04-25T12:30:00.0000000Z")
secondary = gw1_token("secondary-key-of-gw1", "2026-05-01T00:00:00.0000000Z")
forged = valid.replace(b"&202604251230&", b"&202604251231&")
disconnect = spop_frame(2, 0, 0, spop_string(b"status-code") + b"\x03" + varint(0)
                        + spop_string(b"message") + b"\x08" + spop_string(b"normal"))
seeds = {
    "health-check": spop_hello(True),
    "hello-only": spop_hello(),
    "valid": spop_hello() + spop_notify(1, 1, valid, 1),
    "pipelined": spop_hello() + spop_notify(1, 1, valid, 1) + spop_notify(2, 1, secondary, 1)
    + spop_notify(2, 2, forged, 1) + spop_notify(300, 7, None, 0) + spop_notify(301, 1, valid, 2)
    + disconnect,
    "empty-token": spop_hello() + spop_notify(9, 1, b"", 1),
    "notify-first": spop_notify(1, 1, valid, 1) + spop_hello(),
}
for name, data in seeds.items():
    for cut in (b"\x00\x00", b"\x40\xc0", b"\x80\x81"):
        write("spop", f"{name}-{cut.hex()}", cut + data)
