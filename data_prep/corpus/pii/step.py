"""The datatrove step: personal data out of every record, kept or rejected.

Placed in the split pass right after NFC normalisation, before the filters: the filters
then see the final text, and exact dedup hashes it. Rejected records are scrubbed too,
since rejected/ is written to disk and read by people.
"""

from __future__ import annotations

import logging

from datatrove.data import DocumentsPipeline

from data_prep.corpus import records as R
from data_prep.corpus.pii.scrub import Scrubber
from data_prep.corpus.pii.settings import DEFAULT_SALT, PIISettings
from data_prep.corpus.step import CorpusStep

log = logging.getLogger("data_prep.corpus.pii")

PII_META = "pii"  # doc.metadata["pii"] = {kind: count}, only kinds found


class PIIStep(CorpusStep):
    """Replaces PII in text, in the input record's other string fields (metadata `extra`) and in
    a reject's `detail`.

    Stats: pii_<kind> (replacements), pii_docs (records changed), pii_raw_dropped (records
    whose undecodable raw bytes were dropped: they could hold PII that no regex can see).
    """

    type = "✂️ - FORMAT"
    name = "PII (Korean): pseudonymise / mask"

    def __init__(self, settings: PIISettings | None = None):
        super().__init__()
        self.settings = settings = settings or PIISettings()
        settings.validate()
        self.scrubber = Scrubber(settings) if settings.enabled else None
        if settings.enabled and settings.mode == "pseudonymize" and settings.salt == DEFAULT_SALT:
            log.warning("data.pii.salt is the default %r: anyone can recompute the pseudonyms; "
                        "set a secret salt (e.g. from an environment variable)", DEFAULT_SALT)

    def _scrub_value(self, value, counts: dict[str, int]):
        if isinstance(value, str):
            new, found = self.scrubber.scrub(value)
            for k, n in found.items():
                counts[k] = counts.get(k, 0) + n
            return new
        if isinstance(value, dict):
            return {k: self._scrub_value(v, counts) for k, v in value.items()}
        if isinstance(value, list):
            return [self._scrub_value(v, counts) for v in value]
        return value

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if self.scrubber is None:
            yield from data
            return
        for doc in data:
            with self.track_time():
                meta = doc.metadata
                if meta.pop(R.RAW_BASE64, None) is not None:
                    self.stat_update("pii_raw_dropped")
                counts: dict[str, int] = {}
                text = self._scrub_value(doc.text, counts)
                for key in (R.EXTRA, R.DETAIL):  # the input record's other fields; a reject's detail
                    if key in meta:
                        meta[key] = self._scrub_value(meta[key], counts)
                if counts:
                    if text != doc.text:
                        doc.text = text
                        if R.SHA256 in meta:  # the hash must describe the text that is written
                            meta[R.SHA256] = R.text_sha256(text)
                    meta[PII_META] = counts
                    self.stat_update("pii_docs")
                    for kind, n in counts.items():
                        self.stat_update(f"pii_{kind}", value=n)
            yield doc
