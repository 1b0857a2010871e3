"""Medians, percentiles and the ratio formatting every table uses."""

import statistics


def median(values):
    return statistics.median(values)


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil without floats
    return ordered[int(rank) - 1]


def ratio(numerator, denominator):
    return numerator / denominator if denominator > 0 else float("inf")


def fmt_ratio(value, target=None):
    """'0.93x' plus a mark saying whether a target (an upper bound) holds."""
    text = f"{value:.2f}x"
    if target is not None:
        text += " (ok)" if value <= target else f" (target <= {target:.2f}x missed)"
    return text


def fmt_seconds(seconds):
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.3f} s"
