"""CPU cost of one OPTIONS through the whole server path, sockets excepted:
parse, Via stamp, transaction match, the UA's answer, response routing and
serialization. Shows where the time of `options_load.py` goes.

    .venv/bin/python bench/pipeline_bench.py
"""

from __future__ import annotations

import time

from callbridge.app import tune_garbage_collector
from callbridge.pbx.ua import UserAgent
from callbridge.sip import parse
from callbridge.sip.transaction import NewRequest, Send, TransactionLayer
from callbridge.transport import Address, response_destination, stamp_received

OPTIONS = (
    "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5199;branch=z9hG4bK-{n};rport\r\n"
    "Max-Forwards: 70\r\n"
    'From: "sipp" <sip:sipp@127.0.0.1:5199>;tag=1234SIPpTag00{n}\r\n'
    "To: <sip:127.0.0.1:5060>\r\n"
    "Call-ID: {n}-1234@127.0.0.1\r\n"
    "CSeq: 1 OPTIONS\r\n"
    "Contact: <sip:sipp@127.0.0.1:5199;transport=UDP>\r\n"
    "Accept: application/sdp\r\n"
    "Content-Length: 0\r\n\r\n"
)


def main(count: int = 20_000) -> None:
    datagrams = [OPTIONS.format(n=n).encode() for n in range(count)]
    tune_garbage_collector()  # as `callbridge serve` runs
    source = Address("udp", "127.0.0.1", 5199)
    layer = TransactionLayer()
    ua = UserAgent()
    stages = dict.fromkeys(["parse", "stamp", "match", "answer", "respond", "route", "bytes"], 0.0)
    clock = time.perf_counter
    for now, data in enumerate(datagrams):
        t0 = clock()
        message = parse(data)
        t1 = clock()
        stamp_received(message, source)
        t2 = clock()
        effects = layer.receive(message, source, float(now))
        t3 = clock()
        new = next(e for e in effects if isinstance(e, NewRequest))
        response = ua.answer(new.request)
        assert response is not None
        t4 = clock()
        sends = layer.respond(new.transaction, response, float(now))
        t5 = clock()
        for send in sends:
            assert isinstance(send, Send)
            response_destination(send.message.top_via, source)
            t6 = clock()
            send.message.to_bytes()
        t7 = clock()
        for stage, spent in zip(
            stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6), strict=True
        ):
            stages[stage] += spent
    total = sum(stages.values())
    for stage, spent in stages.items():
        print(f"{stage:8s} {spent / count * 1e6:7.1f} us")
    print(
        f"{'total':8s} {total / count * 1e6:7.1f} us  -> {count / total:,.0f} OPTIONS/s on one core"
    )


if __name__ == "__main__":
    main()
