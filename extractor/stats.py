"""Small figures shared by the lanes, `status` and `report`."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """Quantile q on the 0..1 scale (0.95 for p95), linearly interpolated between the closest ranks.

    None for no values. One scale for every caller: a report's "p95" passes 95 / 100.
    """
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)
