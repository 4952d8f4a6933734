"""Text normalisation before any filter or hash sees the text: Unicode NFC plus a few
configurable rewrites for Korean web and government text.

Korean text from PDFs and macOS often arrives as decomposed jamo (ᄒ+ᅡ+ᆫ), which
looks like the composed syllable (한) but compares, counts and hashes differently, so
NFC always runs. The other rewrites (settings.enabled) remove what only costs tokens:
CRLF line ends, invisible characters, whitespace runs and emoticon runs (ㅋㅋㅋㅋㅋ).
They are chosen to leave legal and statistical text alone: digits, Latin and Hangul
syllables are never squeezed (1000000, 하하하, "aaa"), nor are the marks with a
meaning in statutes and forms: - = _ (amendment tables: "② ----"), * and ○ (masked
names: 김○○, ***-****), · ㆍ ․ (middle-dot lists), ①②③, Hanja, a single "…".
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from datatrove.data import DocumentsPipeline

from data_prep.corpus import records as R
from data_prep.corpus.step import CorpusStep


@dataclass
class NormalizeSettings:
    enabled: bool = True  # false: NFC only (it always runs: hashes and dedup need it)
    newlines: bool = True  # \r\n, lone \r, form feed, U+2028/2029, NEL -> \n
    control_chars: bool = True  # drop C0/C1 controls but \n \t, zero-width chars, BOM, soft hyphen, bidi marks
    whitespace: bool = True  # Unicode spaces -> ' ', 2+ spaces/tabs -> ' ', no trailing spaces, 3+ newlines -> 2, strip
    max_repeat: int = 3  # squeeze runs of one jamo/emoticon punctuation/emoji (or a 2-char unit) to this many; 0: off


# Line breaks other than \n; \r\n first so it becomes one \n, not two.
_NEWLINES = re.compile(r"\r\n?|[\x0b\x0c\x85\u2028\u2029]")
# C0 and C1 controls except the line breaks (\t \n, and \r \x0b \x0c \x85, which `newlines`
# turns into \n or, when off, leaves to break lines), and invisible format characters that only
# split words for the tokenizer: soft hyphen, zero-width space/non-joiner/joiner, LRM/RLM, bidi
# embeddings and isolates, word joiner, BOM, and the Hangul filler U+3164 (blank "letters" used
# as padding in Korean web text). Variation selectors stay: Hanja and emoji variants need them.
_CONTROLS = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\xad\u200b-\u200f\u202a-\u202e\u2060-\u2064"
                       "\u2066-\u2069\ufeff\u3164]")
# Unicode space separators (NBSP, ideographic space U+3000, en/em/thin spaces, ...) are
# spaces to a reader but distinct bytes to the tokenizer and dedup.
_SPACES = re.compile("[\xa0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_HSPACE_RUN = re.compile(r"[ \t]{2,}")  # a single tab stays: it separates table columns
_TRAILING = re.compile(r"[ \t]+$", re.MULTILINE)
_BLANK_LINES = re.compile(r"\n{3,}")

# What a run may be squeezed of: modern Hangul compatibility jamo (ㄱ-ㅎ ㅏ-ㅣ, not ㆍ U+318D),
# emoticon punctuation (!?.,;~^ with fullwidth forms, …), and emoji/pictographs.
_SQUEEZABLE = ("\u3131-\u3163!?.,;~^\uff01\uff1f\uff0e\uff0c\uff1b\uff5e\u2026"
               "\u2600-\u27bf\u2b50\u2b55\U0001f000-\U0001faff")
_SQ = f"[{_SQUEEZABLE}]"


def _squeezers(max_repeat: int) -> list[tuple[re.Pattern, str]]:
    # one character repeated more than max_repeat times; then a two-character unit of
    # different characters (ㅋㅎㅋㅎㅋㅎ, ?!?!?!) - single runs first, so ㅋㅋㅋㅋㅎ is not a unit run
    return [(re.compile(rf"({_SQ})\1{{{max_repeat},}}"), r"\1" * max_repeat),
            (re.compile(rf"((?!(?P<a>{_SQ})(?P=a)){_SQ}{_SQ})\1{{{max_repeat},}}"), r"\1" * max_repeat)]


class TextNormalizer(CorpusStep):
    """NFC-normalises (and, if enabled, rewrites) every document not yet rejected, then
    records the sha256 of the final text.

    Rejected records keep their text as read (it is evidence), but get a sha256 too,
    so every output record has the same metadata.

    Stats (documents changed by each rewrite): nfc_changed, newlines_fixed,
    control_removed, squeezed, whitespace_fixed; plus normalized (documents seen).
    """

    type = "✂️ - FORMAT"
    name = "normalise (NFC, whitespace, controls, repeats)"

    def __init__(self, settings: NormalizeSettings | None = None):
        super().__init__()
        self.settings = s = settings or NormalizeSettings()
        if not isinstance(s.max_repeat, int) or isinstance(s.max_repeat, bool) or s.max_repeat < 0:
            raise ValueError(f"data.normalize.max_repeat must be an integer >= 0, got {s.max_repeat!r}")
        self._squeeze = _squeezers(s.max_repeat) if s.enabled and s.max_repeat else []

    def normalize(self, text: str) -> tuple[str, list[str]]:
        """The normalised text and the names of the stats it changed."""
        changed = []
        if not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
            changed.append("nfc_changed")
        s = self.settings
        if not s.enabled:
            return text, changed
        before = text
        if s.newlines:
            text, n = _NEWLINES.subn("\n", text)
            if n:
                changed.append("newlines_fixed")
        if s.control_chars:
            text, n = _CONTROLS.subn("", text)
            if n:
                changed.append("control_removed")
        if self._squeeze:
            n = 0
            for pattern, repl in self._squeeze:
                text, k = pattern.subn(repl, text)
                n += k
            if n:
                changed.append("squeezed")
        if s.whitespace:
            new = _SPACES.sub(" ", text)
            new = _HSPACE_RUN.sub(" ", new)
            new = _TRAILING.sub("", new)
            new = _BLANK_LINES.sub("\n\n", new).strip()
            if new != text:
                changed.append("whitespace_fixed")
            text = new
        # removing an invisible character can join conjoining jamo (ᄒ\u200bᅡ) into a new NFC composition
        if text is not before and not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
        return text, changed

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            with self.track_time():
                if not R.is_rejected(doc):
                    doc.text, changed = self.normalize(doc.text)
                    self.stat_update("normalized")
                    for stat in changed:
                        self.stat_update(stat)
                doc.metadata[R.SHA256] = R.text_sha256(doc.text)
            yield doc


NFCNormalizer = TextNormalizer  # the earlier name; pipeline.py constructs it without settings
