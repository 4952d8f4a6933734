"""Text in, text out: every PII found replaced by its fake or its typed placeholder."""

from __future__ import annotations

from data_prep.corpus.pii.fakes import Faker
from data_prep.corpus.pii.patterns import Detector, Found
from data_prep.corpus.pii.settings import PIISettings


def placeholder(kind: str) -> str:
    return f"<|{kind}|>"


class Scrubber:
    def __init__(self, settings: PIISettings):
        self.detector = Detector(settings.types, settings.context_window, settings.ip_public_only)
        self._faker = Faker(settings.salt) if settings.mode == "pseudonymize" else None

    def replacement(self, f: Found) -> str:
        return self._faker.fake(f) if self._faker else placeholder(f.kind)

    def scrub(self, text: str) -> tuple[str, dict[str, int]]:
        """The new text and how many of each kind were replaced (only kinds found)."""
        found = self.detector.find(text)
        if not found:
            return text, {}
        parts, counts, last = [], {}, 0
        for f in found:
            parts += (text[last:f.start], self.replacement(f))
            counts[f.kind] = counts.get(f.kind, 0) + 1
            last = f.end
        parts.append(text[last:])
        return "".join(parts), counts
