"""Korean document-quality heuristics: Gopher's rules adapted to Korean, plus the checks
Polyglot-ko's cleaning motivated (fragments, repeated characters, text that is not Korean).

The rules of Gopher (Rae et al. 2021, tables A1 and A2) assume English: words are
space-separated and 3-10 characters long on average. Here a "word" is a Korean eojeol (어절, a
space-separated token, e.g. "국민에게"), and spacing (띄어쓰기) is inconsistent: text
without spaces is one huge "word". So a Hangul token longer than `long_eojeol_chars`
is counted as pseudo-words of CHUNK characters (about one eojeol), which keeps the
word-count, mean-word-length and n-gram rules meaningful for unspaced text. Long
non-Hangul tokens (URLs, base64, hashes) are left whole: they are what the
max_mean_word_length rule is for.

Each rule has a threshold in QualitySettings; 0 disables it. A rejected document's
reason is `quality_<rule>`, its detail the measured value against the threshold. Rules
run cheapest first and the first that fires is recorded: words, mean word length,
symbols, bullet/ellipsis/duplicate lines, jamo and Hangul shares, n-gram repetition.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict

from datatrove.data import Document, DocumentsPipeline

from data_prep.corpus.filters import MarkingFilter

# Reasons, one per rule; n-gram rules add n: quality_top_2gram, quality_duplicate_5gram, ...
PREFIX = "quality_"  # every reason of this step starts with it
MIN_WORDS = "quality_min_words"
MAX_WORDS = "quality_max_words"
MIN_MEAN_WORD_LENGTH = "quality_min_mean_word_length"
MAX_MEAN_WORD_LENGTH = "quality_max_mean_word_length"
SYMBOL_WORD_RATIO = "quality_symbol_word_ratio"  # '#' or ellipses per word
BULLET_LINES = "quality_bullet_lines"
ELLIPSIS_LINES = "quality_ellipsis_lines"
JAMO_RATIO = "quality_jamo_ratio"  # ㅋㅋ ㅠㅠ ... among the letters
HANGUL_RATIO = "quality_hangul_ratio"
DUPLICATE_LINES = "quality_duplicate_lines"
DUPLICATE_LINE_CHARS = "quality_duplicate_line_chars"


def top_ngram_reason(n: int) -> str:
    return f"{PREFIX}top_{n}gram"


def duplicate_ngram_reason(n: int) -> str:
    return f"{PREFIX}duplicate_{n}gram"


@dataclass
class QualitySettings:
    enabled: bool = True  # false: the step passes every document through unchecked
    min_words: int = 2  # fewer words (eojeol with a letter or digit) than this: a fragment (Gopher, for web: 50)
    max_words: int = 200_000  # more words than this: a dump, not a document (Gopher: 100,000)
    min_mean_word_length: float = 1.5  # mean chars per word (Korean prose: ~3); below: letter-spaced text (대 한 민 국)
    max_mean_word_length: float = 10.0  # above: URLs, base64, hashes (long Hangul tokens are cut up first)
    long_eojeol_chars: int = 12  # a mostly-Hangul token longer than this is unspaced text: counted in 4-char pieces
    max_symbol_word_ratio: float = 0.1  # '#' per word, and ellipses (... or …, a run counts once) per word
    max_bullet_lines_ratio: float = 0.9  # share of lines that start with a bullet mark (menus, tag lists)
    max_ellipsis_lines_ratio: float = 0.3  # share of lines that end with ... or … (truncated snippets)
    bullet_marks: str = "•‣◦▪▫●■►▶➢➤→-*"  # line starts counted as bullets; not □ ○ ㅇ, gov-report outline marks
    min_lines: int = 3  # line-ratio and duplicate-line rules need this many text lines (with a letter)
    max_jamo_ratio: float = 0.5  # lone jamo (ㅋ ㅎ ㅠ ...) / letters; above: emoticon spam
    min_hangul_ratio: float = 0.25  # Hangul syllables / letters (Hangul, jamo, Latin, Hanja, ...); below: not Korean
    max_duplicate_line_fraction: float = 0.3  # lines that repeat an earlier line / lines
    max_duplicate_line_char_fraction: float = 0.2  # characters in repeated lines / characters
    ratio_min_words: int = 20  # min-mean-length, symbol and n-gram rules need this many words to mean anything
    # characters covered by the most frequent n-gram (if it occurs twice or more) / all characters
    top_ngram_fractions: Dict[str, float] = field(default_factory=lambda: {"2": 0.20, "3": 0.18, "4": 0.16})
    # characters covered by n-grams that repeat an earlier one / all characters
    duplicate_ngram_fractions: Dict[str, float] = field(default_factory=lambda: {
        "5": 0.15, "6": 0.14, "7": 0.13, "8": 0.12, "9": 0.11, "10": 0.10})


CHUNK = 4  # pseudo-word size for unspaced Hangul: a typical eojeol is 3-4 syllables
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
# ㆍ (U+318D, a jamo by Unicode) is the middle dot of Korean legal text (징집ㆍ소집): punctuation here
_JAMO = re.compile(r"[\u3131-\u318c\u318e\u1100-\u11ff]")  # compatibility and conjoining jamo
_LETTER = re.compile(r"[^\W\d_\u318d]")  # any Unicode letter: Hangul, jamo, Latin, Hanja, kana, ...
_WORDLIKE = re.compile(r"[^\W_\u318d]")  # a letter or digit (①, 1,234원): a word, not a symbol
_ELLIPSIS = re.compile(r"\.{3,}|…+")
_ELLIPSIS_END = re.compile(r"(?:\.{3,}|…)\s*$")


def _ngram_thresholds(key: str, fractions: Dict[str, float]) -> list[tuple[int, float]]:
    out = []
    for n, frac in (fractions or {}).items():
        try:
            size = int(n)
        except (TypeError, ValueError):
            raise ValueError(f"data.quality.{key}: keys are n-gram sizes like '2', got {n!r}") from None
        if size < 1 or not 0 <= float(frac) <= 1:
            raise ValueError(f"data.quality.{key}['{n}']: need n >= 1 and a fraction in [0, 1], got {frac!r}")
        if frac:
            out.append((size, float(frac)))
    return sorted(out)


def words(text: str, long_eojeol_chars: int) -> list[str]:
    """Whitespace tokens that contain a letter or digit; long Hangul tokens cut into CHUNK-char pieces."""
    out = []
    for tok in text.split():
        if not _WORDLIKE.search(tok):
            continue  # a bare symbol ("-", "·", "※") is not a word
        if long_eojeol_chars and len(tok) > long_eojeol_chars and 2 * len(_HANGUL.findall(tok)) > len(tok):
            out.extend(tok[i:i + CHUNK] for i in range(0, len(tok), CHUNK))
        else:
            out.append(tok)
    return out


def _duplicates(items: list[str]) -> tuple[int, int]:
    """(count, characters) of items that repeat an earlier one."""
    seen: set[str] = set()
    count = chars = 0
    for it in items:
        if it in seen:
            count += 1
            chars += len(it)
        else:
            seen.add(it)
    return count, chars


def _ngrams(ids: list[int], n: int):
    return zip(*(ids[k:] for k in range(n)))  # the n-gram tuples, built in C


def _top_ngram_chars(ids: list[int], id_len: list[int], n: int) -> int:
    """Characters covered by the most frequent n-gram, 0 if no n-gram occurs twice."""
    counts = Counter(_ngrams(ids, n))
    k = max(counts.values(), default=0)
    if k < 2:
        return 0
    # of equally frequent n-grams, the longest; joined by n - 1 spaces, as in Gopher
    return k * (max(sum(id_len[w] for w in gram) for gram, c in counts.items() if c == k) + n - 1)


def _duplicate_ngram_chars(ids: list[int], prefix: list[int], n: int) -> int:
    """Characters of words inside n-grams that repeat an earlier n-gram; each word counted once (Gopher)."""
    grams = list(_ngrams(ids, n))
    first = dict(zip(reversed(grams), range(len(grams) - 1, -1, -1)))  # n-gram -> where it first occurs
    if len(first) == len(grams):
        return 0  # no repeats: the usual case, decided in C
    chars = covered_to = 0
    for i in [i for i, gram in enumerate(grams) if first[gram] != i]:
        start = max(i, covered_to)  # words i .. i+n-1 are covered; add the part not covered yet
        covered_to = i + n
        chars += prefix[covered_to] - prefix[start]
    return chars


class QualityFilter(MarkingFilter):
    """Marks documents that fail a quality rule with `quality_<rule>` and the measured value.

    Runs in the split pass after normalisation (the rules assume NFC, squeezed runs and
    collapsed whitespace), PII and the length filter. Stats: checked, rejected_<reason>.
    """

    name = "Korean quality heuristics"

    def __init__(self, settings: QualitySettings | None = None):
        super().__init__()
        self.settings = s = settings or QualitySettings()
        for key in ("min_words", "max_words", "long_eojeol_chars", "min_lines", "ratio_min_words",
                    "min_mean_word_length", "max_mean_word_length"):
            if getattr(s, key) < 0:
                raise ValueError(f"data.quality.{key} must be >= 0, got {getattr(s, key)!r}")
        for key in ("min_hangul_ratio", "max_jamo_ratio", "max_bullet_lines_ratio", "max_ellipsis_lines_ratio",
                    "max_duplicate_line_fraction", "max_duplicate_line_char_fraction", "max_symbol_word_ratio"):
            if not 0 <= getattr(s, key) <= 1:
                raise ValueError(f"data.quality.{key} must be in [0, 1] (0 disables), got {getattr(s, key)!r}")
        self.top_ngrams = _ngram_thresholds("top_ngram_fractions", s.top_ngram_fractions)
        self.dup_ngrams = _ngram_thresholds("duplicate_ngram_fractions", s.duplicate_ngram_fractions)
        # a mark then a space or a letter: "• 홈", "-홈"; not "------" (a rule) or "-5%"
        self._bullet = re.compile(f"[{re.escape(s.bullet_marks)}](?:\\s|[^\\W\\d_])") if s.bullet_marks else None

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if not self.settings.enabled:
            yield from data
            return
        yield from super().run(data, rank, world_size)

    def check(self, doc: Document) -> tuple[str, str] | None:
        s, text = self.settings, doc.text
        ws = words(text, s.long_eojeol_chars)
        n = len(ws)
        if s.min_words and n < s.min_words:
            return MIN_WORDS, f"{n} words < min_words={s.min_words}"
        if s.max_words and n > s.max_words:
            return MAX_WORDS, f"{n} words > max_words={s.max_words}"
        word_chars = sum(map(len, ws))
        # ratios over a few words are noise: "눈 또 와" has 1 char/word, "울적... 우울할땐..." 2 ellipses in 3 words
        long_enough = n >= max(s.ratio_min_words, 1)
        mean = word_chars / max(n, 1)
        if s.min_mean_word_length and long_enough and mean < s.min_mean_word_length:
            return MIN_MEAN_WORD_LENGTH, f"{mean:.2f} chars/word < min_mean_word_length={s.min_mean_word_length}"
        if s.max_mean_word_length and mean > s.max_mean_word_length:  # not gated: one base64 blob is one word
            return MAX_MEAN_WORD_LENGTH, f"{mean:.2f} chars/word > max_mean_word_length={s.max_mean_word_length}"
        if s.max_symbol_word_ratio and long_enough:
            for sym, count in (("'#'", text.count("#")), ("ellipses", len(_ELLIPSIS.findall(text)))):
                if count / n > s.max_symbol_word_ratio:
                    return SYMBOL_WORD_RATIO, (f"{sym} per word {count}/{n} = {count / n:.3f} "
                                               f"> max_symbol_word_ratio={s.max_symbol_word_ratio}")
        # text lines only: a line of digits or dashes is a table cell or a rule, and repeats legitimately
        lines = [ln for ln in map(str.strip, text.split("\n")) if _LETTER.search(ln)]
        if len(lines) >= max(s.min_lines, 1):
            verdict = self._line_rules(lines, len(text))
            if verdict:
                return verdict
        verdict = self._script_rules(text)
        if verdict:
            return verdict
        if long_enough:
            return self._ngram_rules(ws, word_chars)
        return None

    def _line_rules(self, lines: list[str], n_chars: int) -> tuple[str, str] | None:
        s, n = self.settings, len(lines)
        if s.max_bullet_lines_ratio and self._bullet:
            k = sum(bool(self._bullet.match(ln)) for ln in lines)
            if k / n > s.max_bullet_lines_ratio:
                return BULLET_LINES, (f"{k}/{n} lines start with a bullet "
                                      f"> max_bullet_lines_ratio={s.max_bullet_lines_ratio}")
        if s.max_ellipsis_lines_ratio:
            k = sum(bool(_ELLIPSIS_END.search(ln)) for ln in lines)
            if k / n > s.max_ellipsis_lines_ratio:
                return ELLIPSIS_LINES, (f"{k}/{n} lines end with an ellipsis "
                                        f"> max_ellipsis_lines_ratio={s.max_ellipsis_lines_ratio}")
        dup, dup_chars = _duplicates(lines)
        if s.max_duplicate_line_fraction and dup / n > s.max_duplicate_line_fraction:
            return DUPLICATE_LINES, (f"{dup}/{n} lines repeat an earlier line "
                                     f"> max_duplicate_line_fraction={s.max_duplicate_line_fraction}")
        if s.max_duplicate_line_char_fraction and dup_chars / n_chars > s.max_duplicate_line_char_fraction:
            return DUPLICATE_LINE_CHARS, (f"{dup_chars}/{n_chars} chars in repeated lines = {dup_chars / n_chars:.3f} "
                                          f"> max_duplicate_line_char_fraction={s.max_duplicate_line_char_fraction}")
        return None

    def _script_rules(self, text: str) -> tuple[str, str] | None:
        s = self.settings
        if not (s.max_jamo_ratio or s.min_hangul_ratio):
            return None
        letters = len(_LETTER.findall(text))
        if not letters:
            return None  # nothing to judge by script (digits, symbols): other rules decide
        if s.max_jamo_ratio:
            jamo = len(_JAMO.findall(text))
            if jamo / letters > s.max_jamo_ratio:
                return JAMO_RATIO, (f"{jamo}/{letters} letters are lone jamo = {jamo / letters:.3f} "
                                    f"> max_jamo_ratio={s.max_jamo_ratio}")
        if s.min_hangul_ratio:
            hangul = len(_HANGUL.findall(text))
            if hangul / letters < s.min_hangul_ratio:
                return HANGUL_RATIO, (f"{hangul}/{letters} letters are Hangul syllables = {hangul / letters:.3f} "
                                      f"< min_hangul_ratio={s.min_hangul_ratio}")
        return None

    def _ngram_rules(self, ws: list[str], word_chars: int) -> tuple[str, str] | None:
        # Gopher divides by len(text); here by the words joined with single spaces, so layout
        # whitespace and missing spaces (unspaced text is cut into pseudo-words) do not move the fractions
        n_chars = word_chars + len(ws) - 1
        vocab: dict[str, int] = {}
        ids = [vocab.setdefault(w, len(vocab)) for w in ws]  # ints hash and compare faster than strings
        id_len = [len(w) for w in vocab]
        prefix = [0]
        for w in ws:
            prefix.append(prefix[-1] + len(w))
        for n, frac in self.top_ngrams:
            chars = _top_ngram_chars(ids, id_len, n)
            if chars / n_chars > frac:
                return top_ngram_reason(n), (f"most frequent {n}-gram covers {chars}/{n_chars} chars = "
                                             f"{chars / n_chars:.3f} > {frac}")
        bound = n_chars  # words in a repeated n-gram are in a repeated (n-1)-gram: the counts never grow with n
        for n, frac in self.dup_ngrams:
            if bound / n_chars <= frac:
                continue  # cannot fire
            bound = chars = _duplicate_ngram_chars(ids, prefix, n)
            if chars / n_chars > frac:
                return duplicate_ngram_reason(n), (f"repeated {n}-grams cover {chars}/{n_chars} chars = "
                                                   f"{chars / n_chars:.3f} > {frac}")
        return None
