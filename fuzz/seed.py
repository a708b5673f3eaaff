#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, from the golden vectors (and, for `verify`, tokens signed
with Python's hmac for the fixed keystore of fuzz_targets/verify.rs, so that the fuzzer starts
from tokens that verify). Run from the repository root: python3 fuzz/seed.py"""

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
