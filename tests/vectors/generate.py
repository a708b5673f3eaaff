#!/usr/bin/env python3
"""Golden vectors for apim-sas, computed independently of the crate.

Uses only Python's standard library: hmac, hashlib, base64 (and random, json, datetime for the
inputs). Flooring is done on the decimal text of the expiry, not with any time library, so it
shares nothing with the Rust code.

Regenerate (deterministic, seeded):

    python3 tests/vectors/generate.py > tests/vectors/golden.json

Each vector: `id`, `key` (the key's text), `expiry` (what a caller asks for, RFC 3339 with up to
9 fractional digits), `format` (compact | uid), `expiry_o` (the O form that gets signed),
`token` (the bare token), `now` (an instant at which minting with the default policy succeeds
and verifying with the default policy accepts the token).
"""

import base64
import datetime as dt
import hashlib
import hmac
import json
import random
import string

rng = random.Random(20260421)

ID_ALPHABET = [chr(c) for c in range(0x21, 0x7F) if chr(c) != "&"]


def sign(key: str, id_: str, expiry_o: str) -> str:
    msg = (id_ + "\n" + expiry_o).encode("utf-8")
    mac = hmac.new(key.encode("utf-8"), msg, hashlib.sha512).digest()
    return base64.b64encode(mac).decode("ascii")


def split_expiry(text: str):
    """'YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z' -> (date part, HH, MM, SS, fraction digits)."""
    assert text.endswith("Z")
    body = text[:-1]
    if "." in body:
        body, frac = body.split(".")
    else:
        frac = ""
    date, time = body.split("T")
    hh, mm, ss = time.split(":")
    return date, hh, mm, ss, frac


def o_form(text: str, fmt: str) -> str:
    """Floors by truncating decimal digits: to the minute (compact) or to 100 ns (uid)."""
    date, hh, mm, ss, frac = split_expiry(text)
    if fmt == "compact":
        ss, frac7 = "00", "0000000"
    else:
        frac7 = (frac + "0000000")[:7]
    return f"{date}T{hh}:{mm}:{ss}.{frac7}Z"


def compact_form(expiry_o: str) -> str:
    return expiry_o[0:4] + expiry_o[5:7] + expiry_o[8:10] + expiry_o[11:13] + expiry_o[14:16]


def token(fmt: str, id_: str, expiry_o: str, sig: str) -> str:
    if fmt == "compact":
        return f"{id_}&{compact_form(expiry_o)}&{sig}"
    return f"uid={id_}&ex={expiry_o}&sn={sig}"


def parse_o(expiry_o: str) -> dt.datetime:
    # Microseconds are enough to pick a `now`; the 100 ns digit only matters for the signature.
    return dt.datetime.strptime(expiry_o[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=dt.timezone.utc)


def rfc3339(t: dt.datetime) -> str:
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        text += "." + f"{t.microsecond:06d}".rstrip("0")
    # strftime does not zero-pad years below 1000 everywhere: pad by hand.
    year, rest = text.split("-", 1)
    return f"{int(year):04d}-{rest}Z"


def pick_now(expiry_o: str) -> str:
    """An instant before the floored expiry, within 29 days (or just after it, in the leeway,
    when the expiry is at the very start of year 0001)."""
    at = parse_o(expiry_o)
    back = dt.timedelta(seconds=rng.randint(1, 29 * 86400), microseconds=rng.randint(0, 999999))
    try:
        now = at - back
        if now.year < 1:
            raise OverflowError
        return rfc3339(now)
    except OverflowError:
        # Start of year 0001: stay before the expiry if possible.
        if at > dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=1):
            return rfc3339(dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc))
        return "0001-01-01T00:00:00Z"


def random_id(length: int) -> str:
    while True:
        id_ = "".join(rng.choice(ID_ALPHABET) for _ in range(length))
        if not id_.startswith("uid=") and id_.lower() != "managed":
            return id_


def azure_key() -> str:
    return base64.b64encode(bytes(rng.getrandbits(8) for _ in range(64))).decode("ascii")


def random_expiry(digits: int) -> str:
    start = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    t = start + dt.timedelta(seconds=rng.randint(0, 12 * 365 * 86400))
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + "".join(rng.choice(string.digits) for _ in range(digits))
    return text + "Z"


IDS = ["gw1", "a", "westeurope-gw-01", "53dd860e1b72ff0467030003", "Gw.With~Odd!Chars", "managed-not",
       "x" * 80, random_id(80), random_id(1), "UID=looks-like-uid", "id=with=equals"]

KEYS = [
    "k",
    "sample-key-do-not-use",
    "key with inner spaces",
    "clé-ünïcødé-2144743702",
    "鍵🔑ключ-κλειδί",
    "é" * 64,  # 128 bytes of UTF-8, exactly one SHA-512 block
    "é" * 65,  # 130 bytes: longer than the block, hashed first
    "K" * 128,
    "K" * 129,
    "long-" * 100,
    azure_key(),
    azure_key(),
]

EDGE_EXPIRIES = [
    "2024-02-29T23:59:59.9999999Z",  # leap day
    "2024-02-29T00:00:00Z",
    "2000-02-29T12:34:56.123456789Z",  # century leap year
    "2028-02-29T23:59:00Z",
    "2026-12-31T23:59:59.999999999Z",  # year end, nanoseconds floored
    "2026-01-01T00:00:00Z",  # year start
    "2026-04-30T23:59:59.99999Z",  # 30-day month end
    "2026-01-31T23:59:30.5Z",  # 31-day month end
    "2026-02-28T23:59:59.9Z",  # February end, not a leap year
    "2026-06-30T12:00:00.0000001Z",  # one tick
    "2026-06-30T12:00:00.00000009Z",  # under one tick: floors to zero
    "2026-07-15T08:30:59.999999999Z",  # sub-second floored
    "2019-04-21T00:44:00Z",
    "0001-01-01T00:00:00Z",  # first instant
    "0001-01-01T00:01:00.0000001Z",
    "9999-12-31T23:59:59.9999999Z",  # last tick
    "9999-12-31T23:59:00Z",
    "1970-01-01T00:00:00Z",
    "1999-12-31T23:59:59.999Z",
]


def vector(id_: str, key: str, expiry: str, fmt: str) -> dict:
    expiry_o = o_form(expiry, fmt)
    sig = sign(key, id_, expiry_o)
    return {
        "id": id_,
        "key": key,
        "expiry": expiry,
        "format": fmt,
        "token": token(fmt, id_, expiry_o, sig),
        "expiry_o": expiry_o,
        "now": pick_now(expiry_o),
    }


def main() -> None:
    vectors = []
    # Every edge expiry in both forms, with rotating ids and keys.
    for i, expiry in enumerate(EDGE_EXPIRIES):
        for fmt in ("compact", "uid"):
            vectors.append(vector(IDS[i % len(IDS)], KEYS[(i * 2 + len(fmt)) % len(KEYS)], expiry, fmt))
    # Every key and every id at least once in each form.
    for i, key in enumerate(KEYS):
        for fmt in ("compact", "uid"):
            vectors.append(vector(IDS[(i * 3) % len(IDS)], key, random_expiry(rng.choice([0, 3, 7, 9])), fmt))
    for i, id_ in enumerate(IDS):
        for fmt in ("compact", "uid"):
            vectors.append(vector(id_, KEYS[(i * 5) % len(KEYS)], random_expiry(rng.choice([0, 1, 6, 8])), fmt))
    # Random: ids of 1-80 bytes, Azure-like keys, expiries with 0-9 fractional digits.
    while len(vectors) < 240:
        fmt = rng.choice(["compact", "uid"])
        id_ = random_id(rng.choice([1, 2, 5, 12, 24, 40, 79, 80]))
        key = azure_key() if rng.random() < 0.7 else rng.choice(KEYS)
        vectors.append(vector(id_, key, random_expiry(rng.randint(0, 9)), fmt))
    print(json.dumps(vectors, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
