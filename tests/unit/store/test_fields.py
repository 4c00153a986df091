"""ferrogate.store.fields.stamp: the fixed-width UTC text of SQLite timestamps and the audit hash."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from ferrogate.store.fields import stamp


def test_stamp_is_isoformat_in_utc_with_a_z() -> None:
    rng = random.Random(6)
    start = datetime(1, 1, 2, tzinfo=UTC)
    zones = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    for _ in range(2000):
        at = (start + timedelta(microseconds=rng.randrange(10**17))).astimezone(rng.choice(zones))
        expected = at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        assert stamp(at) == expected
        assert len(stamp(at)) == 27  # fixed width: text order is time order
    assert stamp(datetime(2025, 1, 31, 12, tzinfo=UTC)) == "2025-01-31T12:00:00.000000Z"
    assert stamp(datetime(9, 2, 3, 4, 5, 6, 7, tzinfo=UTC)) == "0009-02-03T04:05:06.000007Z"
