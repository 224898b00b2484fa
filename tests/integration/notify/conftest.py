"""Notify on the real Kafka and PostgreSQL with the provider simulator (see :mod:`services.notify.testing`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.notify.testing import NotifyStack, running_notify

__all__ = ["NotifyStack"]


@pytest.fixture(scope="session")
async def notify_stack(stack: Any) -> AsyncIterator[NotifyStack]:
    async with running_notify(stack.bootstrap, stack.notify_dsn) as ns:
        yield ns
