"""Which samples a report shows for each source: its best, median and worst by DAE."""

from __future__ import annotations

from creg.core.records import SampleRecord


def select_examples(recs: list[SampleRecord]) -> list[tuple[str, SampleRecord]]:
    """Best, median and worst sample of one source by DAE (Fig. 3 and 5: success and failure)."""
    ok = sorted((r for r in recs if r.dae is not None), key=lambda r: (r.dae, r.sample_id))
    if not ok:
        return []
    picks = [("best", ok[0]), ("median", ok[len(ok) // 2]), ("worst", ok[-1])]
    seen, out = set(), []
    for label, r in picks:
        if r.sample_id not in seen:
            seen.add(r.sample_id)
            out.append((label, r))
    return out
