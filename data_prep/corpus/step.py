"""CorpusStep: the base of the corpus steps, datatrove's PipelineStep with cheap counters.

datatrove's `stat_update` and `track_time` keep mean/min/max/std per call; at the ten
or so counters a document passes through, that bookkeeping was half the time of the
parallel pass (7.5 s vs 3.7 s for 50k reviews on one core). Here both add to plain
numbers, and the totals go into the step's datatrove stats once, when its `run`
generator ends (or is closed), so the stats files, logs and `read_stats` see the same
totals as before. Only the per-call distribution (mean per document, min, max) is gone.
"""

from __future__ import annotations

import functools
import time

from datatrove.pipeline.base import PipelineStep


class _Clock:
    """A reusable `with` block adding its elapsed time to a total."""

    __slots__ = ("seconds", "_start")

    def __init__(self):
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self):
        self._start = time.perf_counter()

    def __exit__(self, *exc):
        self.seconds += time.perf_counter() - self._start


def _flushing(run):
    @functools.wraps(run)
    def wrapper(self, *args, **kwargs):
        try:
            yield from run(self, *args, **kwargs)
        finally:
            self.flush_stats()
    return wrapper


class CorpusStep(PipelineStep):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._counts: dict[str, int | float] = {}
        self._units: dict[str, str] = {}
        self._clock = _Clock()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "run" in cls.__dict__:  # every run, also one called directly as step.run(docs), hands its totals over
            cls.run = _flushing(cls.__dict__["run"])

    def stat_update(self, *labels, value: int = 1, unit: str | None = None):
        counts = self._counts
        for label in labels:
            counts[label] = counts.get(label, 0) + value
            if unit:
                self._units[label] = unit

    def track_time(self, unit: str | None = None):
        return self._clock

    def flush_stats(self) -> None:
        """Hand the totals to datatrove's stats (idempotent: a nested run flushes an empty tally)."""
        for label, total in self._counts.items():
            super().stat_update(label, value=total, unit=self._units.get(label))
        self._counts.clear()
        if self._clock.seconds:
            self.stats.time_stats.update(self._clock.seconds)
            self._clock.seconds = 0.0
