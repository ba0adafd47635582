"""From a customer's INVITE reaching callbridge to the ringing card in the
operator's panel: a real `callbridge serve`, SIPp as the provider (on
127.0.0.2) calling `--calls` times at `--rate` calls a second from a number
in the CRM, a SIPp desk phone that answers each, and the panel signed in
in headless Chromium (Debian's, through Playwright).

    .venv/bin/python bench/ringing_card.py [--calls 100] [--rate 1.5]

One operator with one line takes one call at a time (a second one while
the first lasts gets 486 Busy Here): each call is answered after 300 ms and
lasts 100 ms, so the rate stays under two a second.

The INVITE's arrival is the server log's `sip.recv` line (its wall clock,
to the millisecond); the card's is `Date.now()` in the page when an element
with the call's id first appears (a MutationObserver); both clocks are this
machine's. Calls are matched through the call records' `sip_call_id`.
The path measured: the provider's INVITE, routing, the CRM lookup (the
`ringing` event waits for it up to 150 ms), the event bus, /ws/events, and
React rendering the card. Goal: p99 < 300 ms.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from playwright.sync_api import sync_playwright  # noqa: E402
from tests.integration.conftest import free_port, start_server, start_sipp, stop_server  # noqa: E402
from tests.integration.test_calls import BOB, ENV, Pbx  # noqa: E402
from tests.integration.test_trunk_calls import (  # noqa: E402
    DID,
    PROVIDER,
    external_line,
    route_incoming_to,
)
from tests.web.conftest import BASE_ARGS, CHROMIUM  # noqa: E402

LOGIN, PASSWORD = "bob", "bob-bench-password"
CUSTOMER = "89161234567"
_INVITE = re.compile(
    rf"^(\S+)Z DEBUG callbridge\.transport sip\.recv src=udp:{re.escape(PROVIDER)}:\d+ "
    r"method=INVITE call_id=(\S+)",
    re.MULTILINE,
)
_CARDS = """() => {
  window.__cards = {};
  const seen = () => {
    for (const card of document.querySelectorAll('.ringing[data-call-id]')) {
      const id = card.getAttribute('data-call-id');
      if (!(id in window.__cards)) window.__cards[id] = Date.now();
    }
  };
  new MutationObserver(seen).observe(document.body, {childList: true, subtree: true});
}"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1.5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        pbx = Pbx(start_server(tmp, **ENV), tmp)
        try:
            result = run(pbx, args.calls, args.rate)
        finally:
            for phone in pbx.phones:
                phone.stop()
            stop_server(pbx.server.process)
    print(json.dumps(result), flush=True)


def run(pbx: Pbx, calls: int, rate: float) -> dict[str, object]:
    line_id = pbx.line(BOB, ring_timeout=30, max_devices=2)
    with pbx.api() as api:
        employee = api.post(
            "/api/v1/employees",
            json={"name": "Bob", "login": LOGIN, "password": PASSWORD, "internal_line_id": line_id},
        )
        assert employee.status_code == 201, employee.text
        pbx.apply(api)
        contact = api.post(
            "/api/v1/contacts",
            json={
                "name": "Anna Petrova",
                "owner_id": employee.json()["id"],
                "phones": [{"type": "mobile", "number": "+7 916 123-45-67"}],
            },
        )
        assert contact.status_code == 201, contact.text
    provider_port = free_port(host=PROVIDER)
    external_line(pbx, provider_port, total_lines=50)
    route_incoming_to(pbx, BOB.number)
    seconds = calls / rate + 60
    phone_port, media_port = free_port(), free_port()
    pbx.register(BOB, phone_port)
    desk_phone = start_sipp(
        "call_uas_answer.xml",
        pbx.server,
        pbx.tmp_path,
        port=phone_port,
        media_port=media_port,
        calls=calls,
        timeout=seconds,
        extra=["-s", BOB.number, "-key", "rtp_port", str(media_port)],
    )
    pbx.phones.append(desk_phone)
    base = f"http://127.0.0.1:{pbx.server.http_port}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BASE_ARGS)
        try:
            page = browser.new_context(locale="en-US").new_page()
            page.goto(f"{base}/")
            page.get_by_label("Login").fill(LOGIN)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.locator('.panel[data-events="online"]').wait_for()
            page.evaluate(_CARDS)
            customer = start_sipp(
                "provider_uac_call.xml",
                pbx.server,
                pbx.tmp_path,
                port=provider_port,
                local_ip=PROVIDER,
                calls=calls,
                timeout=seconds,
                extra=["-s", CUSTOMER, "-key", "did", DID, "-d", "100", "-r", str(rate)],
            )
            pbx.phones.append(customer)
            done = customer.wait(timeout=seconds + 30)
            if done.successful != calls:
                print(customer.output()[-3000:], file=sys.stderr)
            desk_phone.wait(timeout=30)
            time.sleep(1)
            cards: dict[str, int] = page.evaluate("() => window.__cards")
        finally:
            browser.close()
    with pbx.api() as api:
        records = api.get("/api/v1/calls", params={"limit": 500}).json()["items"]
    by_sip = {r["sip_call_id"]: r["id"] for r in records}
    delays = []
    for stamp, sip_call_id in _INVITE.findall(pbx.server.log()):
        record = by_sip.get(sip_call_id)
        if record is None or record not in cards:
            continue
        received = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
        delays.append(cards[record] - received.timestamp() * 1000)
    return {
        "bench": "ringing_card",
        "calls": calls,
        "rate": rate,
        "successful": done.successful,
        "cards_seen": len(cards),
        "measured": len(delays),
        "p50_ms": percentile(delays, 0.5) if delays else None,
        "p90_ms": percentile(delays, 0.9) if delays else None,
        "p99_ms": percentile(delays, 0.99) if delays else None,
        "max_ms": round(max(delays), 1) if delays else None,
    }


if __name__ == "__main__":
    main()
