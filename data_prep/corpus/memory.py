"""The memory a corpus task uses: peak resident set, and peak anonymous memory.

A task that reads memory-mapped work files (the near pass's signatures and keys) has their
pages in its resident set; they are page cache, shared and dropped first under pressure, so
the peak RSS overstates what the task needs. Anonymous memory (its own arrays and objects) is
what it does need. The kernel keeps the peak of the first (VmHWM), not of the second: `sample`
records it where the steps call it. `reset` starts both peaks anew, so passes that run one after
another in one process (one worker) are measured each on its own.
"""

from __future__ import annotations

_peak_anon_kib = 0


def _status_kib(field: str) -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:  # not Linux: no /proc
        pass
    return 0


def sample() -> int:
    """Anonymous memory now (KiB), remembered if it is the highest seen in this process."""
    global _peak_anon_kib
    now = _status_kib("RssAnon:")
    _peak_anon_kib = max(_peak_anon_kib, now)
    return now


def peak_anon_kib() -> int:
    sample()
    return _peak_anon_kib


def peak_rss_kib() -> int:
    return _status_kib("VmHWM:")


def reset() -> None:
    """Peaks from now on: the kernel's high-water mark back to the current RSS (Linux: clear_refs 5)."""
    global _peak_anon_kib
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        pass
    _peak_anon_kib = 0
    sample()
