"""Time stamps as the API stores them (RFC 3339, seconds, UTC)."""

from __future__ import annotations

from datetime import UTC, datetime


def now_rfc3339(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
