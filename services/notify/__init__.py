"""Notify: the only service that holds phone numbers and WeChat ids; it turns call-outs into messages and replies into events.

Shape (the same in every service):

* ``domain/`` — pure: reply parser (:mod:`.domain.replies`), message templates (:mod:`.domain.templates`),
  channel choice, retry delays, reply-to-call-out matching (:mod:`.domain.routing`).
* ``handlers/`` — thin: Kafka consumers (:mod:`.handlers.consumers`), provider callbacks
  (:mod:`.handlers.callbacks`), the WeChat reply page (:mod:`.handlers.reply_page`).
* ``adapters/`` — encryption at rest (:mod:`.adapters.crypto`), reply-page links (:mod:`.adapters.reply_links`);
  ``channels/`` — the provider plugins. Consumers use :class:`shared.consumer.IdempotentConsumer` with batch handlers.
* :mod:`.sender` (background task) and :mod:`.inbound` (receipts, replies): the pipeline's I/O.
* :mod:`.app` — the composition root; :mod:`.cli` — ``muster notify``; :mod:`.testing` — the harness for tests
  and the benchmark.

Contract: consumes ``roster.volunteer-contact.v1`` and ``dispatch.callout.v1``; produces ``MessageSent`` /
``MessageDelivered`` / ``MessageFailed`` on ``notify.delivery.v1`` and ``ReplyReceived`` on ``notify.reply.v1``
(keyed by volunteer id), all through the outbox.
"""
