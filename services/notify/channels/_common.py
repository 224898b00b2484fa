"""Helpers shared by the provider plugins: time zones, chunking, the client-side rate limit."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import TypeVar
from zoneinfo import ZoneInfo

from aiolimiter import AsyncLimiter

__all__ = ["SHANGHAI", "chunks", "limiter", "parse_local_time"]

SHANGHAI = ZoneInfo("Asia/Shanghai")
"""Providers in China report wall-clock times in Asia/Shanghai (UTC+8, no DST)."""

T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of ``items`` of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def parse_local_time(value: str) -> datetime:
    """``2017-01-01 00:00:00`` (Asia/Shanghai, as Aliyun and Tencent send it) → an aware UTC datetime.

    Raises:
        ValueError: not in that format.

    """
    return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI).astimezone(UTC)


def limiter(rate_per_second: float) -> AsyncLimiter:
    """A leaky-bucket limit of ``rate_per_second`` requests per second (burst of one second's worth)."""
    return AsyncLimiter(max(rate_per_second, 1.0), 1.0)
