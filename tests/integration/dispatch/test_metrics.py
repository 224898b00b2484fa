"""``GET /metrics`` of a running dispatch app after a small call-out: the series exist and their values moved.

The app runs in-process on the real PostgreSQL and Kafka (relay, replies consumer, ticker). The scrape is
parsed with prometheus_client's own text parser, so a malformed exposition fails the test too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from services.dispatch.units import units
from shared.events import ReplyIntent, ReplyReceived
from shared.outbox import event_headers
from shared.topics import REPLY
from shared.vocabulary import Channel
from tests.conftest import StackAddresses

from .conftest import (
    DispatchDb,
    a_town_with_villages,
    add_volunteers,
    dispatch_schema,
    now,
    running_app,
    token,
    wait_for,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
async def dispatch_db(stack: StackAddresses) -> AsyncIterator[DispatchDb]:
    """A schema of this module's own: the call-outs-by-state gauge counts the whole schema's open incidents."""
    async with dispatch_schema(stack) as db:
        yield db


async def scrape(client: httpx.AsyncClient) -> Samples:
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text[:200]
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


async def test_metrics_move_with_a_callout(dispatch_db: DispatchDb) -> None:
    db = dispatch_db
    _, villages = a_town_with_villages(1, index=11)
    vols = await add_volunteers(db, villages[0], 3)
    lat, lon = units().centres[villages[0][:9]]
    async with running_app(db, consumers=("replies",), tick=0.2) as client:
        headers = await token(db)
        before = await scrape(client)
        body = {"kind": "fall", "title": "测试", "lat": lat, "lon": lon, "unit_code": villages[0],
                "mode": "emergency", "requirements": [{"skill": "first_aid", "count": 1}]}
        r = await client.post("/incidents", headers=headers, json=body)
        assert r.status_code in (200, 201), r.text
        incident_id = r.json()["incident"]["incident_id"]
        assert (await client.get(f"/incidents/{incident_id}", headers=headers)).status_code == 200
        async with db.pool.acquire() as conn:
            callouts = await conn.fetch("SELECT callout_id, volunteer_id FROM callouts WHERE incident_id = $1",
                                        UUID(incident_id))
        assert 1 <= len(callouts) <= len(vols)

        # a volunteer accepts: the reply goes through Kafka to the replies consumer
        first = callouts[0]
        reply = ReplyReceived(reply_id=uuid4(), volunteer_id=first["volunteer_id"], callout_id=first["callout_id"],
                              intent=ReplyIntent.ACCEPT, text="1", channel=Channel.SMS, received_at=now(),
                              producer="test")
        producer = AIOKafkaProducer(bootstrap_servers=db.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(REPLY.name, reply.to_bytes(), key=str(first["volunteer_id"]).encode(),
                                         headers=[(k, v.encode()) for k, v in event_headers(reply).items()])
        finally:
            await producer.stop()

        group = next(c.name for c in client._transport.app.state.runtime.extras["consumers"])  # type: ignore[attr-defined]

        async def settled() -> Samples | None:
            async with db.pool.acquire() as conn:  # the consumer counts "applied" just before its commit
                if await conn.fetchval("SELECT state FROM callouts WHERE callout_id = $1",
                                       first["callout_id"]) != "assigned":
                    return None
            s = await scrape(client)  # after the commit: the gauges read on this scrape see it
            applied = value(s, "muster_consumer_events_total", group=group, outcome="applied")
            drained = value(s, "muster_outbox_pending_events", service="dispatch") == 0
            return s if applied >= 1 and drained else None

        after: Samples = await wait_for(settled, timeout=60, every=0.3)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # HTTP: the route template, never the incident id
    assert moved("muster_http_requests_total", service="dispatch", method="POST", route="/incidents",
                 status_class="2xx") == 1
    assert moved("muster_http_requests_total", service="dispatch", method="GET",
                 route="/incidents/{incident_id}", status_class="2xx") == 1
    assert moved("muster_http_request_duration_seconds_count", service="dispatch", route="/incidents") == 1
    assert not any(incident_id in v or str(first["volunteer_id"]) in v for _, ls in after for _, v in ls)
    # dispatch's own series
    assert moved("muster_dispatch_callouts_requested_total") == len(callouts)
    assert moved("muster_dispatch_fanout_seconds_count") >= 1
    assert value(after, "muster_dispatch_callouts", state="assigned") == 1
    assert value(after, "muster_dispatch_callouts", state="requested") + value(
        after, "muster_dispatch_callouts", state="cancelled") == len(callouts) - 1
    assert moved("muster_dispatch_replies_total") == 1
    assert moved("muster_dispatch_reply_to_board_seconds_count") == 1
    assert value(after, "muster_dispatch_last_tick_timestamp_seconds") > 0
    # plumbing: the outbox relay published the call-outs (and more), the consumer applied the reply
    assert moved("muster_outbox_published_total", service="dispatch") >= len(callouts) + 1
    assert value(after, "muster_outbox_oldest_pending_age_seconds", service="dispatch") == 0
    assert moved("muster_consumer_events_total", group=group, topic=REPLY.name, outcome="applied") == 1
    lag_partitions = {dict(ls)["partition"] for n, ls in after if n == "muster_consumer_lag_messages"
                      and ("group", group) in ls}
    assert lag_partitions and lag_partitions <= {str(p) for p in range(REPLY.partitions)}
    assert value(after, "muster_consumer_lag_messages", group=group) == 0
