"""Kafka cluster ids for a fresh stack (no I/O)."""

from __future__ import annotations

import base64

from deploy.stack import new_cluster_id


def test_a_cluster_id_never_starts_with_a_dash() -> None:
    """Regression (CI on a fresh machine): an id starting with '-' was read by ``kafka-storage format -t`` as an
    option and the stack did not start. One id in 64 starts with '-': 3,000 draws meet one almost surely."""
    ids = [new_cluster_id() for _ in range(3000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)  # still a 16-byte UUID
