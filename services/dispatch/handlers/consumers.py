"""Dispatch's Kafka consumers, each an :class:`~shared.consumer.IdempotentConsumer`.

Delivery semantics (all five): FastStream batch subscriber, group id = the consumer's name
(``<prefix>.roster-profiles`` …), ``auto_offset_reset=earliest``, ``AckPolicy.NACK_ON_ERROR``;
idempotency key = the event id, recorded in ``processed_events`` in the same transaction as the
writes; poison → ``<topic>.dlq``.

============================  ===========================  ======================================
consumer                      topic                        effect
============================  ===========================  ======================================
``<p>.roster-profiles``       roster.volunteer-profile.v1  projection upsert / retire (tombstone)
``<p>.roster-teams``          roster.team.v1               team upsert / retire (tombstone)
``<p>.roster-aeds``           roster.aed.v1                AED upsert / retire (tombstone)
``<p>.replies``               notify.reply.v1              record + apply replies (batch handler:
                                                           one savepoint per batch, per-event fallback)
``<p>.deliveries``            notify.delivery.v1           message status for board and report
============================  ===========================  ======================================
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from shared.consumer import IdempotentConsumer
from shared.service import Runtime
from shared.topics import DELIVERY, REPLY, ROSTER_AED, ROSTER_PROFILE, ROSTER_TEAM

from .. import usecases
from ..adapters.projection import apply_aed, apply_profile, apply_team

__all__ = ["consumer_factories"]


async def _no_dead_letters(topic: str, value: bytes | None, key: bytes | None, headers: dict[str, str]) -> None:
    raise RuntimeError("dead-letter sink not wired")  # replaced by build_app


def consumer_factories(
    prefix: str, *, only: Collection[str] | None = None
) -> list[Callable[[Runtime], IdempotentConsumer]]:
    """Factories of dispatch's consumers, named ``<prefix>.<what>`` (the group ids); ``only`` picks some by ``<what>``."""
    table = (
        ("roster-profiles", ROSTER_PROFILE, apply_profile, None),
        ("roster-teams", ROSTER_TEAM, apply_team, None),
        ("roster-aeds", ROSTER_AED, apply_aed, None),
        ("replies", REPLY, usecases.apply_reply_event, usecases.apply_reply_batch),
        ("deliveries", DELIVERY, usecases.record_delivery, usecases.record_deliveries),
    )

    def factory(name: str, topic: object, handler: object, batch: object) -> Callable[[Runtime], IdempotentConsumer]:
        def build(runtime: Runtime) -> IdempotentConsumer:
            return IdempotentConsumer(
                name=f"{prefix}.{name}", topic=topic, handler=handler,  # type: ignore[arg-type]
                batch_handler=batch,  # type: ignore[arg-type]
                pool=runtime.require_pool, dead_letters=_no_dead_letters,
            )

        return build

    return [factory(n, t, h, b) for n, t, h, b in table if only is None or n in only]
