"""A card's call history with ten million calls in the database:
`crm.history.history_page` timed through the real async session with
`--calls` call records (default 10,000,000) and, in the same command, with
10,000 (the reference) spread the same way.

    .venv/bin/python bench/history_load.py [--backend sqlite|postgresql|both]
        [--calls 10000000] [--reads 200] [--rounds 2] [--explain]

Goal: < 20 ms per page (50 calls), first page and a deep one (offset 1,000).

The calls span three years, in the order they happened, with a realistic
skew: 69% linked to a contact (most contacts a few calls, the busiest tens
of thousands), 8% to an account itself, 8% to a lead, the rest to no card;
one "big" account whose 500 contacts have 1% of all calls (100,000 of ten
million) and 0.1% of its own; 90% handled by an employee, a few employees
far busier than the rest. One contact per 10 calls, one account per 20
contacts (30% of contacts belong to one), one lead per 100 calls, one
employee per 50,000 calls.

The reads, each a first page and an offset-1,000 page: a typical contact
(the median count among contacts with calls), the busiest contact, the big
account (its own calls and its contacts'), the busiest employee. `--explain`
prints the plan of every statement a read runs (EXPLAIN QUERY PLAN on
SQLite, EXPLAIN ANALYZE on PostgreSQL).

Prints one JSON line per database and round, then one summary line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from array import array
from bisect import bisect
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Any

from callbridge.crm.history import HistoryOf, history_page
from callbridge.store import Database
from crm_store import BenchDatabase, create, explain, load, load_average, summary_ms

REFERENCE_CALLS = 10_000
START = datetime(2024, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=3 * 365)
BIG_ACCOUNT_SHARE = 0.01  # of all calls, through the big account's contacts
BIG_ACCOUNT_OWN = 0.001  # to the big account's own numbers
DEEP_OFFSET = 1000
PAGE = 50
BUDGET_S = 30.0  # per read and page

STAMPS = ("created_at", "updated_at")
EMPLOYEE_COLUMNS = ("id", "name", "email", "phone", "active", "telephony_enabled")
ACCOUNT_COLUMNS = ("id", "name", "email", "website", "owner_id", "comment", *STAMPS)
CONTACT_COLUMNS = ("id", "name", "email", "company", "position", "account_id", "owner_id")
CONTACT_COLUMNS += ("comment", *STAMPS)
LEAD_COLUMNS = ("id", "name", "email", "company", "status", "contact_id", "owner_id", "comment")
LEAD_COLUMNS += STAMPS
CALL_COLUMNS = (
    "id",
    "direction",
    "caller_number",
    "callee_number",
    "caller_raw",
    "callee_raw",
    "internal_line_id",
    "employee_id",
    "started_at",
    "answered_at",
    "ended_at",
    "talk_seconds",
    "status",
    "hangup_side",
    "hangup_cause",
    "sip_call_id",
    "client_number",
    "contact_id",
    "account_id",
    "lead_id",
    "matches",
)


class Calls:
    """The cards and `calls` call records, generated in the order the calls
    happened; counts per contact and employee are kept while generating."""

    def __init__(self, calls: int, seed: int = 11) -> None:
        self.calls = calls
        self.seed = seed
        self.contacts = max(100, calls // 10)
        self.accounts = max(10, self.contacts // 20)
        self.leads = max(10, calls // 100)
        self.employees = max(10, calls // 50_000)
        self.big_account = 1
        self.big_contacts = max(5, min(500, self.contacts // 100))  # contacts 1..big_contacts
        # Employee n (1-based) is busier than n+1, as 1/sqrt(n).
        self.employee_weights = list(accumulate(1 / (n**0.5) for n in range(1, self.employees + 1)))
        self.per_contact = array("l", bytes(8 * (self.contacts + 1)))
        self.per_employee = array("l", bytes(8 * (self.employees + 1)))

    def account_of(self, contact_id: int) -> int | None:
        """The big account's contacts, then 30% of the rest in one of the others."""
        if contact_id <= self.big_contacts:
            return self.big_account
        if contact_id * 40503 % 10 >= 3:
            return None
        return 2 + contact_id * 2654435761 % (self.accounts - 1)

    def tables(self, backend: str) -> list[tuple[str, tuple[str, ...], Iterator[tuple[Any, ...]]]]:
        sqlite = backend == "sqlite"
        created: Any = _sqlite_time(START) if sqlite else START
        stamps = (created, created)
        return [
            (
                "employees",
                EMPLOYEE_COLUMNS,
                (
                    (e, f"Employee {e}", f"e{e}@example.com", None, True, True)
                    for e in range(1, self.employees + 1)
                ),
            ),
            (
                "accounts",
                ACCOUNT_COLUMNS,
                (
                    (a, f"Account {a}", None, None, None, "", created, created)
                    for a in range(1, self.accounts + 1)
                ),
            ),
            (
                "contacts",
                CONTACT_COLUMNS,
                (
                    (c, f"Contact {c}", None, None, None, self.account_of(c), None, "", *stamps)
                    for c in range(1, self.contacts + 1)
                ),
            ),
            (
                "leads",
                LEAD_COLUMNS,
                (
                    (j, f"Lead {j}", None, None, "working", None, None, "", created, created)
                    for j in range(1, self.leads + 1)
                ),
            ),
            ("calls", CALL_COLUMNS, self._call_rows(sqlite)),
        ]

    def _call_rows(self, sqlite: bool) -> Iterator[tuple[Any, ...]]:
        rng = random.Random(self.seed)
        rand, bits = rng.random, rng.getrandbits
        step = SPAN / self.calls
        # SQLite stores timestamps as text (UTC, no zone), PostgreSQL as timestamptz.
        start = START.replace(tzinfo=None) if sqlite else START
        stamp = (lambda moment: moment.isoformat(" ", "microseconds")) if sqlite else _same
        others = self.contacts - self.big_contacts
        for n in range(self.calls):
            started = start + step * n
            contact_id = account_id = lead_id = None
            r = rand()
            if r < BIG_ACCOUNT_SHARE:
                contact_id = 1 + int(self.big_contacts * rand())
            elif r < BIG_ACCOUNT_SHARE + BIG_ACCOUNT_OWN:
                account_id = self.big_account
            elif r < 0.70:
                contact_id = self.big_contacts + 1 + int(others * rand() ** 3)
            elif r < 0.78:
                account_id = 2 + int((self.accounts - 1) * rand() ** 3)
            elif r < 0.86:
                lead_id = 1 + int(self.leads * rand() ** 3)
            card = contact_id or account_id or lead_id
            if contact_id is not None:
                self.per_contact[contact_id] += 1
                # As callbridge links them: a contact's call carries its account.
                account_id = self.account_of(contact_id)
            employee_id = None
            if rand() < 0.9:
                employee_id = 1 + bisect(self.employee_weights, rand() * self.employee_weights[-1])
                self.per_employee[employee_id] += 1
            client = f"+7916{card or int(rand() * 9_999_999):07d}"
            line = f"{100 + (employee_id or 0)}"
            direction = "incoming" if card is None or rand() < 0.6 else "outgoing"
            if card is None and rand() < 0.3:
                direction, client = "internal", None
            caller, callee = (client or "150", line) if direction != "outgoing" else (line, client)
            status = "answered" if (s := rand()) < 0.7 else "missed" if s < 0.9 else "busy"
            answered = started + timedelta(seconds=5) if status == "answered" else None
            talk = int(rand() * 600) if answered else 0
            ended = (answered or started) + timedelta(seconds=talk or 20)
            yield (
                f"{bits(128):032x}",
                direction,
                caller,
                callee,
                f"sip:{caller}@trunk.example.net",
                f"sip:{callee}@pbx.example.com",
                None,
                employee_id,
                stamp(started),
                None if answered is None else stamp(answered),
                stamp(ended),
                talk,
                status,
                "caller" if rand() < 0.5 else "callee",
                None if status == "answered" else "480 Temporarily Unavailable",
                f"{bits(64):016x}@192.0.2.10",
                client,
                contact_id,
                account_id,
                lead_id,
                None,
            )

    def reads(self) -> dict[str, tuple[HistoryOf, int]]:
        """The cards whose history is read (after the calls were generated)."""
        counts = sorted(
            (count, c)
            for c, count in enumerate(self.per_contact)
            if count and c > self.big_contacts
        )
        return {
            "typical_contact": ("contact", counts[len(counts) // 2][1]),
            "busiest_contact": ("contact", counts[-1][1]),
            "big_account": ("account", self.big_account),
            "busiest_employee": (
                "employee",
                max(range(1, self.employees + 1), key=lambda e: self.per_employee[e]),
            ),
        }


def _same(moment: datetime) -> datetime:
    return moment


def _sqlite_time(moment: datetime) -> str:
    """A timestamp as SQLAlchemy stores it in SQLite (UTC, no zone)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


async def time_reads(
    url: str, reads: dict[str, tuple[HistoryOf, int]], count: int
) -> dict[str, dict[str, Any]]:
    """Per read and page: seconds per `history_page` (a session each, as an
    API request has), with the rows and total it returned."""
    database = Database(url)
    out: dict[str, dict[str, Any]] = {}
    try:
        for name, (of, owner) in reads.items():
            for offset in (0, DEEP_OFFSET):
                seconds: list[float] = []
                deadline = time.monotonic() + BUDGET_S
                for _ in range(count + 10):  # the first 10 warm up
                    if time.monotonic() > deadline and len(seconds) > 20:
                        break  # a read far off the goal: enough samples to say so
                    async with database.session() as session:
                        started = time.perf_counter()
                        rows, total = await history_page(
                            session, of, owner, limit=PAGE, offset=offset
                        )
                        seconds.append(time.perf_counter() - started)
                key = f"{name}@{offset}"
                out[key] = {"rows": len(rows), "total": total, **summary_ms(seconds[10:])}
    finally:
        await database.close()
    return out


async def run_one(
    backend: str, calls: int, reads_per_case: int, rounds: int, workdir: Path, show_plans: bool
) -> dict[str, Any]:
    data = Calls(calls)
    bench: BenchDatabase = await create(backend, workdir, f"history{calls}")
    try:
        await load(bench, data.tables(backend))
        reads = data.reads()
        result: dict[str, Any] = {
            "backend": backend,
            "calls": calls,
            "contacts": data.contacts,
            "accounts": data.accounts,
            "leads": data.leads,
            "employees": data.employees,
            "cards": {name: f"{of} {owner}" for name, (of, owner) in reads.items()},
            **bench.timings,
            "db_bytes": await bench.size_bytes(),
            "rounds": [],
        }
        if show_plans:
            for name, (of, owner) in reads.items():
                for offset in (0, DEEP_OFFSET):
                    print(f"# plan {backend} {calls} {name}@{offset}", flush=True)
                    for line in await explain(
                        bench.url,
                        lambda s, of=of, owner=owner, offset=offset: history_page(
                            s, of, owner, limit=PAGE, offset=offset
                        ),
                    ):
                        print(line, flush=True)
        for round_no in range(rounds):
            figures = {
                "round": round_no + 1,
                "load_average": load_average(),
                "reads": await time_reads(bench.url, reads, reads_per_case),
            }
            header = {k: v for k, v in result.items() if k != "rounds"}
            print(json.dumps(header | figures), flush=True)
            result["rounds"].append(figures)
        return result
    finally:
        await bench.drop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--calls", type=int, default=10_000_000)
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    if args.calls < REFERENCE_CALLS:
        parser.error(f"--calls must be at least {REFERENCE_CALLS}")
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    summary: dict[str, Any] = {"bench": "history", "calls": args.calls, "goal_ms": 20.0}
    with tempfile.TemporaryDirectory(prefix="callbridge-history-") as tmp:
        for backend in backends:
            runs = [
                await run_one(backend, calls, args.reads, args.rounds, Path(tmp), args.explain)
                for calls in (REFERENCE_CALLS, args.calls)
            ]
            reference, big = runs
            figures: dict[str, Any] = {
                "load_s": big["load_s"],
                "db_mib": round(big["db_bytes"] / 2**20),
            }
            for key in big["rounds"][0]["reads"]:
                ours = [r["reads"][key] for r in big["rounds"]]
                theirs = [r["reads"][key] for r in reference["rounds"]]
                figures[key] = {
                    "total": ours[0]["total"],
                    "p50_ms": [r["p50_ms"] for r in ours],
                    "p99_ms": [r["p99_ms"] for r in ours],
                    "reference_p50_ms": [r["p50_ms"] for r in theirs],
                    "ratio_p50": round(
                        min(r["p50_ms"] for r in ours) / min(r["p50_ms"] for r in theirs), 2
                    ),
                }
            summary[backend] = figures
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
