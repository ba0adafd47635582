"""Who is calling, with a million contacts: `crm.identify` timed through the
real async session against a CRM of `--contacts` contacts (default
1,000,000) and, in the same command, against one of 1,000 (the reference),
so the result is a ratio that shows whether lookup cost grows with the CRM.

    .venv/bin/python bench/identify_load.py [--backend sqlite|postgresql|both]
        [--contacts 1000000] [--lookups 5000] [--rounds 2]

Goal: p99 < 2 ms on PostgreSQL and on SQLite.

The CRM, stored with the default region RU: contacts with one or two phones
each (70% Russian, 30% US numbers) written as people type them — E.164
("+79161234567"), national or international with separators
("8 (916) 123-45-67", "+1 (212) 734-0147"), digits only ("79161234567") and
10% in a form that does not read as E.164 at all (a Moscow number without
its area code, "123-45-67"; a US number without its country code); an
account per 100 contacts with a switchboard number some of its contacts
share; a lead per 10 contacts, one in ten sharing a contact's number.

Every card is a function of its index alone, so the reference CRM is the
first 1,000 contacts (10 accounts, 100 leads) of the big one, and the
lookups — hits on phones stored in each format, received as a provider
sends them (E.164, national, digits, in RU or US); numbers shared by
several cards; valid numbers nobody has; numbers that do not read as E.164
("1234567") — have the same answers in both, which the script checks.
Card ids are shuffled so those first cards are spread over the big tables.

Prints one JSON line per database and round, then one summary line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from math import gcd
from pathlib import Path
from typing import Any

from callbridge.crm.identify import identify
from callbridge.numbers import phone_key, to_e164
from callbridge.store import Database
from crm_store import BenchDatabase, create, load, load_average, summary_ms

STORE_REGION = "RU"  # the CRM's default region, which stored numbers were read in
REFERENCE_CONTACTS = 1000
CONTACTS_PER_ACCOUNT = 100
CONTACTS_PER_LEAD = 10
SUBSCRIBERS = 10_000_000  # seven-digit subscriber numbers: the phone index's tail
SPREAD = 7_654_321  # coprime to SUBSCRIBERS: serial -> subscriber is one to one
# Serials (hence numbers) depend on the card's index alone, whatever the CRM's
# size: contacts' 2i and 2i+1, then accounts', then leads'; misses count down
# from the top.
MAX_CONTACTS = 2_000_000
ACCOUNT_SERIAL0 = 2 * MAX_CONTACTS
LEAD_SERIAL0 = ACCOUNT_SERIAL0 + MAX_CONTACTS // CONTACTS_PER_ACCOUNT
RU_AREAS = ("916", "926", "903", "985", "495")
US_AREAS = ("212", "312", "617")  # none of them a Russian area code too
MOSCOW = "495"
CREATED = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
STAMPS = ("created_at", "updated_at")
ACCOUNT_COLUMNS = ("id", "name", "email", "website", "owner_id", "comment", *STAMPS)
CONTACT_COLUMNS = ("id", "name", "email", "company", "position", "account_id", "owner_id")
CONTACT_COLUMNS += ("comment", *STAMPS)
LEAD_COLUMNS = ("id", "name", "email", "company", "status", "contact_id", "owner_id", "comment")
LEAD_COLUMNS += STAMPS
PHONE_COLUMNS = ("id", "contact_id", "account_id", "lead_id", "type", "number", "e164", "tail")
CATEGORIES = {  # share of the lookups
    "hit_e164": 0.15,  # a phone stored as E.164
    "hit_national": 0.15,  # stored with separators
    "hit_digits": 0.15,  # stored as digits only
    "hit_no_e164": 0.10,  # stored in a form that is not E.164: found by its tail
    "several": 0.10,  # a number several cards share
    "miss": 0.20,  # a valid number nobody has
    "not_e164": 0.15,  # received as a local number: looked up by its tail
}


def permutation(size: int) -> tuple[int, int]:
    """A multiplier that shuffles 0..size-1 one to one (i * m % size)."""
    multiplier = 7919 if size > 1 else 1
    while gcd(multiplier, size) != 1:
        multiplier += 2
    return multiplier, size


def shuffled_id(index: int, perm: tuple[int, int]) -> int:
    return index * perm[0] % perm[1] + 1


@dataclass(frozen=True, slots=True)
class Number:
    """One phone as stored: its text, E.164 (None when it reads as none) and tail."""

    country: str  # "RU" or "US"
    area: str
    subscriber: str  # seven digits
    form: str  # e164, national, digits, no_e164

    @property
    def e164(self) -> str | None:
        if self.form == "no_e164":
            return None
        return ("+7" if self.country == "RU" else "+1") + self.area + self.subscriber

    @property
    def text(self) -> str:
        s, area = self.subscriber, self.area
        if self.country == "RU":
            return {
                "e164": f"+7{area}{s}",
                "national": f"8 ({area}) {s[:3]}-{s[3:5]}-{s[5:]}",
                "digits": f"7{area}{s}",
                "no_e164": f"{s[:3]}-{s[3:5]}-{s[5:]}",
            }[self.form]
        return {
            "e164": f"+1{area}{s}",
            "national": f"+1 ({area}) {s[:3]}-{s[3:]}",
            "digits": f"1{area}{s}",
            "no_e164": f"({area}) {s[:3]}-{s[3:]}",
        }[self.form]

    def received(self, rng: random.Random) -> tuple[str, str]:
        """The number as a provider may send it, and the trunk's region."""
        s, area = self.subscriber, self.area
        if self.country == "RU":
            return rng.choice(
                [(f"+7{area}{s}", "RU"), (f"8{area}{s}", "RU"), (f"7{area}{s}", "RU")]
            )
        return rng.choice([(f"+1{area}{s}", "RU"), (f"1{area}{s}", "US"), (f"{area}{s}", "US")])


def subscriber(serial: int) -> str:
    return f"{serial * SPREAD % SUBSCRIBERS:07d}"


def number(serial: int, rng: random.Random, *, form: str | None = None) -> Number:
    sub = subscriber(serial)
    # A US exchange never starts with 0 or 1.
    country = "US" if rng.random() < 0.3 and sub[0] not in "01" else "RU"
    area = rng.choice(US_AREAS if country == "US" else RU_AREAS)
    if form is None:
        form = rng.choices(("e164", "national", "digits", "no_e164"), (35, 30, 25, 10))[0]
    phone = Number(country, area, sub, form)
    if form == "no_e164" and to_e164(phone.text, STORE_REGION) is not None:
        # Some seven-digit local numbers read as another country's without
        # its "+" ("470-32-10" as +47 03210): not what this form stands for.
        phone = Number(country, area, sub, "e164")
    return phone


class Crm:
    """The CRM of `contacts` contacts, card by card from each card's index."""

    def __init__(self, contacts: int) -> None:
        self.contacts = contacts
        self.accounts = max(1, contacts // CONTACTS_PER_ACCOUNT)
        self.leads = max(1, contacts // CONTACTS_PER_LEAD)
        # Phone serials: two per contact, then one per account, one per lead;
        # the misses' serials count down from the top.
        if contacts > MAX_CONTACTS:
            raise SystemExit(f"at most {MAX_CONTACTS:,} contacts")
        # Phone rows: two per contact, then one per account, one per lead.
        self.account_row0 = 2 * contacts
        self.lead_row0 = self.account_row0 + self.accounts
        self.rows = self.lead_row0 + self.leads
        self.contact_perm = permutation(contacts)
        self.account_perm = permutation(self.accounts)
        self.lead_perm = permutation(self.leads)
        self.phone_perm = permutation(self.rows)

    # Cards, each a function of its index.

    def switchboard(self, a: int) -> Number:
        rng = random.Random(f"account {a}")
        sub = subscriber(ACCOUNT_SERIAL0 + a)
        return Number("RU", MOSCOW, sub, rng.choice(("e164", "national")))

    def contact(self, i: int) -> tuple[int | None, list[tuple[int, Number]]]:
        """The contact's account index (or None) and its (serial, number) phones;
        a switchboard shared with the account has the account's serial."""
        rng = random.Random(f"contact {i}")
        a = i // CONTACTS_PER_ACCOUNT
        account = a if rng.random() < 0.3 and a < self.accounts else None
        phones = [(2 * i, number(2 * i, rng))]
        if account is not None and rng.random() < 0.05:
            phones.append((ACCOUNT_SERIAL0 + account, self.switchboard(account)))
        elif rng.random() < 0.5:
            phones.append((2 * i + 1, number(2 * i + 1, rng)))
        return account, phones

    def lead(self, j: int) -> tuple[str, int | None, Number, bool]:
        """The lead's status, the contact index it was qualified into, its phone,
        and whether that is a contact's number (one in ten)."""
        rng = random.Random(f"lead {j}")
        status = rng.choices(("new", "working", "qualified", "lost"), (40, 35, 10, 15))[0]
        i = CONTACTS_PER_LEAD * j
        qualified_into = i if status == "qualified" and i < self.contacts else None
        if rng.random() < 0.1 and i < self.contacts:
            return status, qualified_into, self.contact(i)[1][0][1], True
        return status, qualified_into, number(LEAD_SERIAL0 + j, rng), False

    # Rows.

    def tables(self, backend: str) -> list[tuple[str, tuple[str, ...], Iterator[tuple[Any, ...]]]]:
        created: Any = CREATED if backend == "postgresql" else _sqlite_time(CREATED)
        return [
            (
                "accounts",
                ACCOUNT_COLUMNS,
                (
                    (self.account_id(a), f"Account {a}", None, None, None, "", created, created)
                    for a in range(self.accounts)
                ),
            ),
            (
                "contacts",
                CONTACT_COLUMNS,
                self._contact_rows(created),
            ),
            (
                "leads",
                LEAD_COLUMNS,
                self._lead_rows(created),
            ),
            (
                "phones",
                PHONE_COLUMNS,
                self._phone_rows(),
            ),
        ]

    def account_id(self, a: int) -> int:
        return shuffled_id(a, self.account_perm)

    def contact_id(self, i: int) -> int:
        return shuffled_id(i, self.contact_perm)

    def _contact_rows(self, created: Any) -> Iterator[tuple[Any, ...]]:
        for i in range(self.contacts):
            account, _ = self.contact(i)
            account_id = None if account is None else self.account_id(account)
            email = f"contact{i}@example.com"
            yield (
                self.contact_id(i),
                f"Contact {i}",
                email,
                None,
                None,
                account_id,
                None,
                "",
                created,
                created,
            )

    def _lead_rows(self, created: Any) -> Iterator[tuple[Any, ...]]:
        for j in range(self.leads):
            status, into, _, _ = self.lead(j)
            contact_id = None if into is None else self.contact_id(into)
            yield (
                shuffled_id(j, self.lead_perm),
                f"Lead {j}",
                None,
                f"Company {j % 997}",
                status,
                contact_id,
                None,
                "",
                created,
                created,
            )

    def _phone_rows(self) -> Iterator[tuple[Any, ...]]:
        def row(index: int, card: str, card_id: int, kind: str, phone: Number) -> tuple[Any, ...]:
            ids = {"contact": None, "account": None, "lead": None}
            ids[card] = card_id
            return (
                shuffled_id(index, self.phone_perm),
                ids["contact"],
                ids["account"],
                ids["lead"],
                kind,
                phone.text,
                phone.e164,
                phone.subscriber,
            )

        for a in range(self.accounts):
            yield row(
                self.account_row0 + a, "account", self.account_id(a), "work", self.switchboard(a)
            )
        for i in range(self.contacts):
            for n, (serial, phone) in enumerate(self.contact(i)[1]):
                # A shared switchboard is a second row with the same number.
                own = serial if serial < ACCOUNT_SERIAL0 else 2 * i + 1
                yield row(own, "contact", self.contact_id(i), "work" if n else "mobile", phone)
        for j in range(self.leads):
            phone = self.lead(j)[2]
            yield row(self.lead_row0 + j, "lead", shuffled_id(j, self.lead_perm), "mobile", phone)


def _sqlite_time(moment: datetime) -> str:
    """A timestamp as SQLAlchemy stores it in SQLite (UTC, no zone)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def check_numbers(crm: Crm, sample: int = 3000) -> None:
    """The E.164 forms the loader writes are those `numbers.phone_key` reads."""
    rng = random.Random(1)
    for _ in range(sample):
        _, phones = crm.contact(rng.randrange(crm.contacts))
        for _, phone in phones:
            key = phone_key(phone.text, STORE_REGION)
            assert (key.e164, key.tail) == (phone.e164, phone.subscriber), phone


# ---------------------------------------------------------------- lookups


def lookups(count: int, seed: int = 5) -> list[tuple[str, str, str]]:
    """(category, number as received, region), drawn from the reference CRM,
    which the big one contains card for card."""
    crm = Crm(REFERENCE_CONTACTS)
    rng = random.Random(seed)
    by_form: dict[str, list[Number]] = {}
    for i in range(crm.contacts):
        for serial, phone in crm.contact(i)[1]:
            if serial < ACCOUNT_SERIAL0:
                by_form.setdefault(phone.form, []).append(phone)
    # Switchboards some contacts share, and contacts' numbers an open lead shares.
    shared = [
        phone
        for i in range(crm.contacts)
        for serial, phone in crm.contact(i)[1]
        if serial >= ACCOUNT_SERIAL0
    ]
    for j in range(crm.leads):
        status, _, phone, is_contacts = crm.lead(j)
        if is_contacts and status != "qualified":
            shared.append(phone)
    out: list[tuple[str, str, str]] = []
    for category, share in CATEGORIES.items():
        for _ in range(round(count * share)):
            if category.startswith("hit_"):
                phone = rng.choice(by_form[category[4:]])
                received, region = phone.received(rng)
            elif category == "several":
                received, region = rng.choice(shared).received(rng)
            elif category == "miss":
                serial = SUBSCRIBERS - 1 - rng.randrange(SUBSCRIBERS // 4)
                received, region = number(serial, rng, form="e164").received(rng)
            else:  # received as a local number: a stored one's, or nobody's
                if rng.random() < 0.5:
                    phone = rng.choice(rng.choice(list(by_form.values())))
                    sub = phone.subscriber
                else:
                    sub = subscriber(SUBSCRIBERS - 1 - rng.randrange(SUBSCRIBERS // 4))
                received = rng.choice([sub, f"{sub[:3]}-{sub[3:5]}-{sub[5:]}"])
                region = "RU"
            out.append((category, received, region))
    rng.shuffle(out)
    return out


async def time_lookups(
    url: str, todo: list[tuple[str, str, str]], warmup: int
) -> tuple[list[float], list[tuple[str, ...]]]:
    """Seconds per `identify` (each in a session of its own, as a call's
    would be) and the names each lookup matched."""
    database = Database(url)
    seconds: list[float] = []
    answers: list[tuple[str, ...]] = []
    try:
        for n, (_, received, region) in enumerate(todo[:warmup] + todo):
            async with database.session() as session:
                started = time.perf_counter()
                identity = await identify(session, received, region)
                elapsed = time.perf_counter() - started
            if n >= warmup:
                seconds.append(elapsed)
                answers.append(tuple(sorted(f"{m.type}:{m.name}" for m in identity.matches)))
    finally:
        await database.close()
    return seconds, answers


async def run_one(
    backend: str, contacts: int, todo: list[tuple[str, str, str]], rounds: int, workdir: Path
) -> tuple[dict[str, Any], list[tuple[str, ...]]]:
    crm = Crm(contacts)
    check_numbers(crm)
    bench: BenchDatabase = await create(backend, workdir, f"identify{contacts}")
    try:
        await load(bench, crm.tables(backend))
        result: dict[str, Any] = {
            "backend": backend,
            "contacts": contacts,
            "accounts": crm.accounts,
            "leads": crm.leads,
            **bench.timings,
            "db_bytes": await bench.size_bytes(),
            "rounds": [],
        }
        answers: list[tuple[str, ...]] = []
        for round_no in range(rounds):
            load_before = load_average()
            seconds, answers = await time_lookups(bench.url, todo, warmup=200)
            by_category: dict[str, list[float]] = {}
            for (category, _, _), elapsed in zip(todo, seconds, strict=True):
                by_category.setdefault(category, []).append(elapsed)
            figures = {
                "round": round_no + 1,
                "load_average": load_before,
                **summary_ms(seconds),
                "by_category": {c: summary_ms(s) for c, s in by_category.items()},
                "matched": sum(1 for a in answers if a),
                "several": sum(1 for a in answers if len(a) > 1),
            }
            print(
                json.dumps({k: v for k, v in result.items() if k != "rounds"} | figures), flush=True
            )
            result["rounds"].append(figures)
        return result, answers
    finally:
        await bench.drop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.contacts < REFERENCE_CONTACTS:
        parser.error(f"--contacts must be at least {REFERENCE_CONTACTS}")
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    todo = lookups(args.lookups)
    summary: dict[str, Any] = {"bench": "identify", "lookups": len(todo), "goal_p99_ms": 2.0}
    with tempfile.TemporaryDirectory(prefix="callbridge-identify-") as tmp:
        for backend in backends:
            reference, expected = await run_one(
                backend, REFERENCE_CONTACTS, todo, args.rounds, Path(tmp)
            )
            big, answers = await run_one(backend, args.contacts, todo, args.rounds, Path(tmp))
            differing = sum(1 for a, b in zip(expected, answers, strict=True) if a != b)
            best_ref = min(reference["rounds"], key=lambda r: r["p99_ms"])
            best_big = min(big["rounds"], key=lambda r: r["p99_ms"])
            summary[backend] = {
                "p50_ms": [r["p50_ms"] for r in big["rounds"]],
                "p99_ms": [r["p99_ms"] for r in big["rounds"]],
                "reference_p50_ms": [r["p50_ms"] for r in reference["rounds"]],
                "reference_p99_ms": [r["p99_ms"] for r in reference["rounds"]],
                "ratio_p50": round(best_big["p50_ms"] / best_ref["p50_ms"], 2),
                "ratio_p99": round(best_big["p99_ms"] / best_ref["p99_ms"], 2),
                "load_s": big["load_s"],
                "db_mib": round(big["db_bytes"] / 2**20),
                "answers_differing_from_reference": differing,
            }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
