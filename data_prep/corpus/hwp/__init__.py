"""Text of Korean word-processor documents: HWP 5 (.hwp, OLE compound file) and HWPX (.hwpx, zip + XML).

`extract_text(path)` returns one document's text or raises DocumentError with a records.py reject
reason; OSError means the file itself could not be read.
"""

from __future__ import annotations

from data_prep.corpus import records as R
from data_prep.corpus.hwp import hwp5, hwpx
from data_prep.corpus.hwp.errors import DocumentError

__all__ = ["DocumentError", "extract_text"]

_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def extract_text(path: str) -> str:
    """Chosen by content, not by name, so an .hwpx saved as .hwp (or the reverse) still reads."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        if data.startswith(_ZIP_MAGIC):
            return hwpx.extract_text(data)
        if data.startswith(_OLE_MAGIC):
            return hwp5.extract_text(data)
        if data.startswith(hwp5.SIGNATURE):  # HWP 3.x: its own binary format, "HWP Document File V3.00"
            raise DocumentError(R.UNSUPPORTED_DOCUMENT, "HWP 3.x document: only HWP 5 and HWPX are read")
        raise DocumentError(R.CORRUPT_DOCUMENT, "neither an OLE compound file (HWP 5) nor a zip (HWPX)")
    except (DocumentError, MemoryError):
        raise
    except Exception as e:  # a damaged file can trip the parsers in unplanned ways: it must not stop the run
        raise DocumentError(R.CORRUPT_DOCUMENT, f"{type(e).__name__}: {e}") from e
