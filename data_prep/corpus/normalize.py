"""Unicode NFC, before any filter or hash sees the text.

Korean text from PDFs and macOS often arrives as decomposed jamo (ᄒ+ᅡ+ᆫ), which
looks like the composed syllable (한) but compares, counts and hashes differently.
"""

from __future__ import annotations

import unicodedata

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from data_prep.corpus import records as R


class NFCNormalizer(PipelineStep):
    """NFC-normalises every document not yet rejected, then records the sha256 of the text.

    Rejected records keep their text as read (it is evidence), but get a sha256 too,
    so every output record has the same metadata.
    """

    type = "✂️ - FORMAT"
    name = "Unicode NFC"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            with self.track_time():
                if not R.is_rejected(doc) and not unicodedata.is_normalized("NFC", doc.text):
                    doc.text = unicodedata.normalize("NFC", doc.text)
                    self.stat_update("nfc_changed")
                doc.metadata[R.SHA256] = R.text_sha256(doc.text)
            yield doc
