"""The roster projection fed through the idempotent consumer from real Kafka (a test's own compacted topic).

Snapshots in order, a late older revision, a redelivered event, a tombstone, a poison record, a
team — then selection works from the projection alone (roster is not involved at all).
"""

from __future__ import annotations

import asyncio
from datetime import date
from uuid import uuid4

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka import KafkaBroker

from services.dispatch.adapters.projection import apply_profile, apply_team
from shared.consumer import IdempotentConsumer
from shared.events import CertificateInfo, Event, TeamUpdated, VolunteerProfileUpdated
from shared.outbox import event_headers
from shared.topics import TopicSpec, dead_letter, ensure_topics
from shared.vocabulary import TeamType

from .conftest import DispatchDb, wait_for


async def test_projection_from_real_topic(dispatch_db: DispatchDb, unique: str) -> None:
    db = dispatch_db
    profiles = TopicSpec(f"test.dispatch.profile.{unique}", 2, True, "volunteer_id")
    teams = TopicSpec(f"test.dispatch.team.{unique}", 1, True, "team_id")
    await ensure_topics(db.bootstrap, (profiles, teams))
    dead: list[str] = []

    async def sink(topic: str, value: bytes | None, key: bytes | None, headers: dict[str, str]) -> None:
        dead.append(topic)

    broker = KafkaBroker(db.bootstrap)
    c_prof = IdempotentConsumer(name=f"dispatch-test.profiles.{unique}", topic=profiles, handler=apply_profile,
                                pool=lambda: db.pool, dead_letters=sink)
    c_team = IdempotentConsumer(name=f"dispatch-test.teams.{unique}", topic=teams, handler=apply_team,
                                pool=lambda: db.pool, dead_letters=sink)
    c_prof.attach(broker)
    c_team.attach(broker)

    vid, gone, tid = uuid4(), uuid4(), uuid4()

    def profile(v: object, rev: int, unit: str) -> VolunteerProfileUpdated:
        return VolunteerProfileUpdated(
            volunteer_id=v, revision=rev, display_name="张三", unit_code=unit, lat=30.0, lon=120.5,  # type: ignore[arg-type]
            skills=("first_aid",), certificates=(CertificateInfo(skill="first_aid", expires_on=date(2099, 1, 1)),),
            consent=True,
        )

    producer = AIOKafkaProducer(bootstrap_servers=db.bootstrap)
    await producer.start()

    async def send(topic: TopicSpec, key: object, event: Event | None, *, raw: bytes | None = None,
                   tombstone_id: object = None) -> None:
        if event is not None:
            headers = [(k, v.encode()) for k, v in event_headers(event).items()]
            value: bytes | None = event.to_bytes()
        elif tombstone_id is not None:
            headers = [("event_id", str(tombstone_id).encode()), ("event_type", b"VolunteerRetired")]
            value = None
        else:
            headers, value = [], raw
        await producer.send_and_wait(topic.name, value, key=str(key).encode(), headers=headers)

    v2 = profile(vid, 2, "330603101201")
    try:
        await send(profiles, vid, profile(vid, 1, "330603101200"))
        await send(profiles, vid, v2)
        await send(profiles, vid, v2)  # redelivery of the same event
        await send(profiles, vid, profile(vid, 1, "330603999999"))  # late, older snapshot
        await send(profiles, gone, profile(gone, 1, "330603101201"))
        await send(profiles, gone, None, tombstone_id=uuid4())
        await send(profiles, gone, profile(gone, 1, "330603101201"))  # an older snapshot after the retirement
        await send(profiles, vid, None, raw=b"{not json")  # poison
        await send(teams, tid, TeamUpdated(team_id=tid, revision=3, name="水上救援队", team_type=TeamType.WATER,
                                           unit_code="330603", leader_id=vid))
    finally:
        await producer.stop()

    await broker.start()
    try:
        async def settled() -> bool:
            return c_prof.stats.applied + c_prof.stats.duplicates + c_prof.stats.dead_lettered >= 8 and (
                c_team.stats.applied >= 1)

        await wait_for(settled, timeout=30)
        await asyncio.sleep(0.2)
    finally:
        await broker.stop()

    admin = AIOKafkaAdminClient(bootstrap_servers=db.bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([t for spec in (profiles, teams) for t in (spec.name, dead_letter(spec))])
    finally:
        await admin.close()

    assert c_prof.stats.duplicates == 1 and c_prof.stats.dead_lettered == 1
    assert dead == [f"{profiles.name}.dlq"]
    async with db.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT revision, unit_code, active, retired FROM volunteers WHERE volunteer_id=$1", vid)
        assert dict(row) == {"revision": 2, "unit_code": "330603101201", "active": True, "retired": False}
        row = await conn.fetchrow("SELECT active, retired FROM volunteers WHERE volunteer_id = $1", gone)
        assert dict(row) == {"active": False, "retired": True}
        team = await conn.fetchrow("SELECT team_type, leader_id, revision FROM teams WHERE team_id = $1", tid)
        assert dict(team) == {"team_type": "water", "leader_id": vid, "revision": 3}
