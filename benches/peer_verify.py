#!/usr/bin/env python3
"""A plain Python peer of `apim-sas verify --batch`, and the token files the comparison runs on.

The peer is what a Python service would write: `hmac` + `base64` (OpenSSL's SHA-512 underneath),
each key's HMAC state precomputed once and `copy()`-ed per token, one output line per input line.
It prints one JSON line per token (`line`, `valid`, and `id`/`keyType` or an error `code`).

    python3 benches/peer_verify.py make --count 400000 --keystore ks.json --out tokens.txt
    python3 benches/peer_verify.py verify --keystore ks.json --input tokens.txt --now 2026-04-21T00:00:00Z
"""

import argparse
import base64
import binascii
import calendar
import hashlib
import hmac
import json
import random
import sys

LEEWAY = 60
MAX_LIFETIME = 30 * 86400


def o_form_compact(exp: str) -> str:
    return f"{exp[0:4]}-{exp[4:6]}-{exp[6:8]}T{exp[8:10]}:{exp[10:12]}:00.0000000Z"


def epoch(o: str) -> float:
    secs = calendar.timegm((int(o[0:4]), int(o[5:7]), int(o[8:10]), int(o[11:13]), int(o[14:16]), int(o[17:19])))
    return secs + int(o[20:27]) / 1e7


def make(args) -> None:
    rng = random.Random(7)
    now = epoch(args.now.replace("Z", ".0000000Z") if "." not in args.now else args.now)
    store = {}
    for g in range(args.gateways):
        store[f"gateway-{g:04d}"] = {
            "primary": base64.b64encode(rng.randbytes(64)).decode(),
            "secondary": base64.b64encode(rng.randbytes(64)).decode(),
        }
    with open(args.keystore, "w") as f:
        json.dump(store, f)
    ids = list(store)
    with open(args.out, "w") as out:
        for i in range(args.count):
            gw = rng.choice(ids)
            key = store[gw]["primary" if rng.random() < 0.8 else "secondary"]
            expiry = int(now) + rng.randint(60, 29 * 86400)
            t = list(__import__("time").gmtime(expiry))
            compact = f"{t[0]:04d}{t[1]:02d}{t[2]:02d}{t[3]:02d}{t[4]:02d}"
            o = o_form_compact(compact)
            sig = base64.b64encode(hmac.new(key.encode(), f"{gw}\n{o}".encode(), hashlib.sha512).digest()).decode()
            token = f"GatewayKey {gw}&{compact}&{sig}"
            r = rng.random()
            if r < 0.02:  # forged
                token = token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:]
            elif r < 0.03:  # malformed
                token = "not a token"
            out.write(token + "\n")


def verify(args) -> None:
    store = json.load(open(args.keystore))
    keyed = {gw: [(kt, hmac.new(k.encode(), digestmod=hashlib.sha512)) for kt, k in keys.items()]
             for gw, keys in store.items()}
    now = epoch(args.now.replace("Z", ".0000000Z") if "." not in args.now else args.now)
    source = open(args.input, "rb") if args.input else sys.stdin.buffer
    write = sys.stdout.write
    epochs = {}  # the expiry's instant, computed once per distinct expiry
    for n, raw in enumerate(source, 1):
        line = raw.strip().decode("utf-8", "replace")
        code = None
        head = line[:22].lower()
        if head.startswith("gatewaykey "):
            line = line[11:].lstrip(" ")
        elif head.startswith("sharedaccesssignature "):
            line = line[22:].lstrip(" ")
        parts = line.split("&")
        if not line:
            code = "EmptyToken"
        elif len(line) > 1024:
            code = "TokenTooLong"
        elif line.startswith("uid=") and len(parts) == 3 and parts[1].startswith("ex=") and parts[2].startswith("sn="):
            gw, o, sig = parts[0][4:], parts[1][3:], parts[2][3:]
        elif len(parts) == 3 and len(parts[1]) == 12 and parts[1].isdigit():
            gw, o, sig = parts[0], o_form_compact(parts[1]), parts[2]
        else:
            code = "MalformedToken"
        if code is None:
            try:
                mac = base64.b64decode(sig, validate=True)
                if len(sig) != 88 or len(mac) != 64:
                    raise binascii.Error
            except (binascii.Error, ValueError):
                code = "MalformedSignature"
        if code is None:
            keys = keyed.get(gw)
            if keys is None:
                code = "GatewayNotExist"
            else:
                msg = f"{gw}\n{o}".encode()
                matched = None
                for kt, state in keys:
                    h = state.copy()
                    h.update(msg)
                    if hmac.compare_digest(h.digest(), mac):
                        matched = kt
                        break
                if matched is None:
                    code = "SignatureMismatch"
                else:
                    e = epochs.get(o)
                    if e is None:
                        e = epochs[o] = epoch(o)
                    if now >= e + LEEWAY:
                        code = "TokenExpired"
                    elif e - now > MAX_LIFETIME + LEEWAY:
                        code = "ExpiryTooFar"
        if code is None:
            write(f'{{"line":{n},"valid":true,"id":"{gw}","keyType":"{matched}"}}\n')
        else:
            write(f'{{"line":{n},"valid":false,"error":{{"code":"{code}"}}}}\n')


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--count", type=int, default=400000)
    m.add_argument("--gateways", type=int, default=100)
    m.add_argument("--keystore", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--now", default="2026-04-21T00:00:00Z")
    v = sub.add_parser("verify")
    v.add_argument("--keystore", required=True)
    v.add_argument("--input")
    v.add_argument("--now", default="2026-04-21T00:00:00Z")
    args = p.parse_args()
    make(args) if args.cmd == "make" else verify(args)


if __name__ == "__main__":
    main()
