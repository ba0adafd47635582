"""Bindings written through to the store and read back after a restart,
on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace

from callbridge.pbx.location import StoredLocation
from callbridge.pbx.registrar import Binding
from callbridge.sip import parse_name_addr
from callbridge.store import Database

WALL = 1_800_000_000.0  # a fixed wall clock, in seconds


def location(database: Database, *, now: float, wall: float) -> StoredLocation:
    return StoredLocation(
        database,
        flow_of=lambda source: source if isinstance(source, tuple) else None,  # type: ignore[return-value]
        source_of=lambda transport, host, port: (transport, host, port),
        clock=lambda: now,
        wall_clock=lambda: wall,
    )


def binding(contact: str, *, expires_at: float, aor: str = "101") -> Binding:
    return Binding(
        aor=aor,
        contact=parse_name_addr(contact),
        expires_at=expires_at,
        call_id="reg-1@127.0.0.2",
        cseq=7,
        source=("udp", "127.0.0.2", 5062),
        user_agent="desk-phone/1.0",
    )


async def test_bindings_survive_a_restart_with_the_seconds_they_had_left(
    database: Database,
) -> None:
    before = location(database, now=100.0, wall=WALL)
    before.replace("101", [binding("<sip:101@127.0.0.2:5062;transport=udp>", expires_at=700.0)])
    await before.flush()

    # "Restarted" 60 s later, with a monotonic clock that began again at 5.
    after = location(database, now=5.0, wall=WALL + 60)
    assert await after.load() == 1
    [restored] = after.bindings("101", now=5.0)
    assert restored.expires_at == 5.0 + 540.0
    assert str(restored.uri) == "sip:101@127.0.0.2:5062;transport=udp"
    assert restored.source == ("udp", "127.0.0.2", 5062)
    assert (restored.call_id, restored.cseq, restored.user_agent) == (
        "reg-1@127.0.0.2",
        7,
        "desk-phone/1.0",
    )


async def test_a_device_identity_survives_a_restart_in_its_contact(database: Database) -> None:
    instance = "<urn:uuid:00000000-0000-1000-8000-000000000001>"
    contact = f'<sip:a@127.0.0.2:40001;transport=tcp>;+sip.instance="{instance}";reg-id=1'
    before = location(database, now=0.0, wall=WALL)
    before.replace("101", [binding(contact, expires_at=600.0)])
    await before.flush()
    after = location(database, now=0.0, wall=WALL)
    assert await after.load() == 1
    [restored] = after.bindings("101", now=0.0)
    assert restored.instance == instance
    assert restored.reg_id == "1"


async def test_expired_bindings_are_not_restored(database: Database) -> None:
    before = location(database, now=0.0, wall=WALL)
    before.replace("101", [binding("<sip:a@127.0.0.2>", expires_at=60.0)])
    before.replace("102", [binding("<sip:b@127.0.0.3>", expires_at=600.0, aor="102")])
    await before.flush()
    after = location(database, now=0.0, wall=WALL + 61)
    assert await after.load() == 1
    assert after.bindings("101", now=0.0) == []
    assert len(after.bindings("102", now=0.0)) == 1


async def test_removed_bindings_stay_removed(database: Database) -> None:
    before = location(database, now=0.0, wall=WALL)
    before.replace("101", [binding("<sip:a@127.0.0.2>", expires_at=600.0)])
    await before.flush()
    before.replace("101", [])
    await before.flush()
    after = location(database, now=0.0, wall=WALL)
    assert await after.load() == 0


async def test_the_background_writer_saves_changes_and_stop_saves_the_rest(
    database: Database,
) -> None:
    store = location(database, now=0.0, wall=WALL)
    store.start()
    store.replace("101", [binding("<sip:a@127.0.0.2>", expires_at=600.0)])
    await store.stop()
    assert await location(database, now=0.0, wall=WALL).load() == 1


async def test_an_aor_the_database_refuses_does_not_hold_back_the_others(
    database: Database,
) -> None:
    store = location(database, now=0.0, wall=WALL)
    # What the registrar cleans, had it slipped past: neither database stores it.
    hostile = replace(binding("<sip:a@127.0.0.2>", expires_at=600.0), user_agent="phone \udcff")
    store.replace("101", [hostile])
    store.replace("102", [binding("<sip:b@127.0.0.3>", expires_at=600.0, aor="102")])
    await store.flush()
    store.replace("103", [binding("<sip:c@127.0.0.4>", expires_at=600.0, aor="103")])
    await store.flush()
    assert store.dropped == 1
    restored = location(database, now=0.0, wall=WALL)
    assert await restored.load() == 2
    assert [b.aor for aor in ("101", "102", "103") for b in restored.bindings(aor, 0.0)] == [
        "102",
        "103",
    ]


async def test_bindings_wait_for_a_database_that_cannot_be_reached(database: Database) -> None:
    if database.engine.dialect.name == "postgresql":
        down = Database("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    else:
        down = Database("sqlite+aiosqlite:////nonexistent-folder/callbridge.db")
    store = location(down, now=0.0, wall=WALL)
    store.replace("101", [binding("<sip:a@127.0.0.2>", expires_at=600.0)])
    await store.flush()
    await down.close()
    assert store.dropped == 0
    store.database = database  # the database is back: the next change saves both
    store.replace("102", [binding("<sip:b@127.0.0.3>", expires_at=600.0, aor="102")])
    await store.flush()
    assert await location(database, now=0.0, wall=WALL).load() == 2
