"""The relay's murmur2 gives the partition any Kafka client would: the same hash as aiokafka's (the Java client's)."""

from __future__ import annotations

from uuid import uuid4

from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.outbox import murmur2


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_same_hash_as_aiokafka(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)


def test_same_partition_for_volunteer_keys() -> None:
    keys = [str(uuid4()).encode() for _ in range(2000)]
    assert [(murmur2(k) & 0x7FFFFFFF) % 12 for k in keys] == [(aiokafka_murmur2(k) & 0x7FFFFFFF) % 12 for k in keys]
    assert murmur2(b"") == aiokafka_murmur2(b"") and murmur2(b"abc") == aiokafka_murmur2(b"abc")
