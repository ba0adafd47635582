"""How many typical INVITEs one core parses and serializes per second.

    .venv/bin/python bench/parse_bench.py [--seconds 3]

CPU time (time.process_time) of this process only, best of five rounds, so
another process on the machine costs us less accuracy than wall time would.
"""

from __future__ import annotations

import argparse
import json
import time

from callbridge.sip import parse

SDP = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 192.0.2.101\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.101\r\n"
    b"t=0 0\r\n"
    b"m=audio 49172 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)

# What a desk phone or softphone sends: 14 headers and an SDP offer.
INVITE = (
    b"INVITE sip:+380441234567@pbx.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:+380441234567@pbx.example.com>\r\n"
    b'From: "Alice Liddell" <sip:101@pbx.example.com>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@192.0.2.101\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:101@192.0.2.101:5060;transport=udp>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY, UPDATE\r\n"
    b"Supported: replaces, timer\r\n"
    b"User-Agent: Yealink SIP-T46U 108.86.0.45\r\n"
    b"Session-Expires: 1800\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)


def rate(func: object, seconds: float) -> float:
    """Calls per CPU second of `func`, best of five rounds."""
    assert callable(func)
    best = 0.0
    for _ in range(5):
        count = 0
        start = time.process_time()
        deadline = start + seconds / 5
        while True:
            for _ in range(200):
                func()
            count += 200
            now = time.process_time()
            if now >= deadline:
                break
        best = max(best, count / (now - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    message = parse(INVITE)
    assert parse(message.to_bytes()).to_bytes() == message.to_bytes()
    result = {
        "invite_bytes": len(INVITE),
        "parse_per_s": round(rate(lambda: parse(INVITE), args.seconds)),
        "serialize_per_s": round(rate(message.to_bytes, args.seconds)),
        "parse_and_serialize_per_s": round(rate(lambda: parse(INVITE).to_bytes(), args.seconds)),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
