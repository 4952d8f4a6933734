"""The one error the HWP/HWPX extractors raise: why a document yields no text, as a reject reason."""

from __future__ import annotations


class DocumentError(Exception):
    """`reason` is a records.py reject reason (encrypted_document, unsupported_document, corrupt_document);
    `detail` names the part of the file that failed (a stream, a zip member) and what was wrong."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail
