"""``GET /metrics`` of a running notify (and the simulator) after a call-out that was refused once, then sent.

Notify runs on the real Kafka and PostgreSQL with the provider simulator over HTTP; the scrape is parsed with
prometheus_client's text parser.
"""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.notify.testing import NotifyStack

from .test_pipeline import add_volunteer, message_row, request

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(http: httpx.AsyncClient, url: str) -> Samples:
    r = await http.get(f"{url}/metrics")
    assert r.status_code == 200, r.text[:200]
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


async def test_notify_metrics_count_the_refusal_the_send_and_the_receipt(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    vid, m, _ = await add_volunteer(ns)
    assert m is not None
    before, sim_before = await scrape(ns.http, ns.url), await scrape(ns.http, ns.sim.url)
    (await ns.http.post(f"{ns.sim.url}/sim/faults", json={"rate_limit": {"aliyun": 1}})).raise_for_status()
    e = request(vid)
    try:
        await ns.publish(ns.callout_topic, str(vid), e)
        assert await message_row(ns, e.callout_id, timeout=30) is not None
    finally:
        await ns.http.delete(f"{ns.sim.url}/sim/faults")
    after, sim_after = await scrape(ns.http, ns.url), await scrape(ns.http, ns.sim.url)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    sms = {"channel": "sms", "provider": "aliyun"}
    assert moved("muster_notify_messages_total", **sms, outcome="retry") >= 1
    assert moved("muster_notify_messages_total", **sms, outcome="sent") >= 1
    assert moved("muster_notify_messages_total", **sms, outcome="delivered") >= 1
    assert moved("muster_notify_provider_errors_total", provider="aliyun", code="isv.BUSINESS_LIMIT_CONTROL") >= 1
    assert moved("muster_notify_delivery_receipt_seconds_count", **sms) >= 1
    assert moved("muster_http_requests_total", service="notify", status_class="2xx") >= 1  # the receipt callback
    assert value(after, "muster_consumer_events_total", service="notify", outcome="applied") >= 1
    assert (value(sim_after, "muster_simulator_messages_total", provider="aliyun")
            - value(sim_before, "muster_simulator_messages_total", provider="aliyun")) >= 1
    labels = {v for _, ls in after for _, v in ls} | {v for _, ls in sim_after for _, v in ls}
    assert not any(m in v or m[3:] in v or str(vid) in v for v in labels)  # no phone number, no volunteer id
