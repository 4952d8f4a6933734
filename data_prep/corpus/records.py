"""What travels between the corpus steps: datatrove Documents plus a few metadata keys.

No step drops a document. A step that rejects one writes `reason` into its metadata
and passes it on; only the final writer routes it to clean/ or rejected/. That makes
"documents in == kept + rejected" hold by construction, and checkable at the end.
"""

from __future__ import annotations

import hashlib

from datatrove.data import Document

# Why a record was rejected; the keys of the `rejected_by_reason` metric.
BAD_JSON = "bad_json"  # the line does not parse as JSON
NOT_AN_OBJECT = "not_an_object"  # valid JSON, but not an object ({...})
BLANK_LINE = "blank_line"  # an empty or whitespace-only line in a jsonl file
INVALID_UTF8 = "invalid_utf8"  # bytes that are not UTF-8; text holds a replacement-decoded copy
# bytes that do not decode in the source's declared non-UTF-8 encoding (e.g. cp949); detail names it
INVALID_ENCODING = "invalid_encoding"
MISSING_TEXT_KEY = "missing_text_key"
NON_STRING_TEXT = "non_string_text"  # the text value is a number, list, null, ...
UNREADABLE_FILE = "unreadable_file"  # corrupt or truncated .gz / parquet: the unread rest is one record
BAD_CSV = "bad_csv"  # a csv/tsv row that does not parse (bad quoting) or has the wrong number of fields
ENCRYPTED_DOCUMENT = "encrypted_document"  # HWP/HWPX saved with a password, certificate encryption or DRM
UNSUPPORTED_DOCUMENT = "unsupported_document"  # HWP 3.x or not 5.x, distribution-only (배포용), non-HWPX zip
CORRUPT_DOCUMENT = "corrupt_document"  # bad zip / OLE / zlib / XML / records in an HWP or HWPX file
EMPTY_TEXT = "empty_text"  # empty or whitespace-only after normalisation
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
DUPLICATE_EXACT = "duplicate_exact"  # same normalised text as an earlier kept document
DUPLICATE_NEAR = "duplicate_near"  # same text up to spacing/punctuation/emoticons/a few edits as an earlier kept one
CONTAMINATED = "contaminated"  # shares a long character n-gram with an evaluation set (data.decontam)

# Internal metadata keys: order in the corpus (file_index, line) and the reject record.
FILE_INDEX = "file_index"
FILE = "file"  # the input's path below its source's root (readers.relative_path), never an absolute path
LINE = "line"  # 1-based: jsonl line, parquet row, 1 for a whole .txt file
SOURCE = "source"  # the recipe's source name
SHA256 = "sha256"
REASON = "reason"
DETAIL = "detail"
RAW_BASE64 = "raw_base64"  # the undecodable bytes, lossless
DUPLICATE_OF = "duplicate_of"
DUPLICATE_OF_LOCATION = "duplicate_of_location"
EXTRA = "extra"  # the input record's other fields, kept for provenance

# Moved from metadata to the top level of a reject record.
REJECT_FIELDS = (REASON, DETAIL, DUPLICATE_OF, DUPLICATE_OF_LOCATION, RAW_BASE64)


def reject(doc: Document, reason: str, detail: str | None = None) -> Document:
    doc.metadata[REASON] = reason
    if detail:
        doc.metadata[DETAIL] = detail
    return doc


def is_rejected(doc: Document) -> bool:
    return REASON in doc.metadata


def order_key(doc: Document) -> tuple[int, int]:
    """Position in the corpus: input file order, then line. Duplicates keep the first by this key."""
    return doc.metadata[FILE_INDEX], doc.metadata[LINE]


def location(metadata: dict) -> str:
    """<source>/<file>:<line>, the same wherever the corpus is mounted (<file>:<line> without a source);
    the data stage's manifest maps source + file back to the absolute path and its sha256."""
    where = f"{metadata[SOURCE]}/{metadata[FILE]}" if SOURCE in metadata else metadata[FILE]
    return f"{where}:{metadata[LINE]}"


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
