"""Check digits and date rules for Korean ID numbers and payment cards.

Used two ways: by the detectors, as a confidence signal, and by the fakes, which are
built to fail them, so a fake can never be read as a real number.
"""

from __future__ import annotations

import calendar

_RRN_WEIGHTS = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
# 7th digit of a 주민등록번호 / 외국인등록번호 -> century of birth (9/0: born in the 1800s)
_CENTURY = {"1": 1900, "2": 1900, "5": 1900, "6": 1900, "3": 2000, "4": 2000, "7": 2000, "8": 2000,
            "9": 1800, "0": 1800}
FOREIGN_DIGITS = frozenset("5678")  # 7th digit of an 외국인등록번호 (ARN)


def rrn_check_digit(first12: str, foreign: bool = False) -> int:
    """The 13th digit under the pre-2020 rule; ARNs use the same weights with an offset of 2."""
    s = sum(int(c) * w for c, w in zip(first12, _RRN_WEIGHTS))
    return ((13 if foreign else 11) - s % 11) % 10


def rrn_checksum_ok(digits13: str) -> bool:
    """True if the last digit matches. Numbers issued since October 2020 have a random last digit,
    so a failure does not prove a number fake; a pass is strong evidence that it is real.

    A 외국인등록번호 (7th digit 5-8) passes under either rule, its own (offset 2) or the
    주민등록번호 one: both are met in documents (830313-6342340, from issue 13, passes only the
    주민등록번호 rule; systems and forms that apply one rule to every 13-digit ID write such
    digits), and which rule a number follows cannot be told from the number. Missing one leaks a
    person; accepting both raises only from 1 in 10 to 2 in 10 the chance that a random number
    with a real birth date passes, which labels and units keep out of the look-alikes."""
    d12, last = digits13[:12], int(digits13[12])
    return last == rrn_check_digit(d12) or digits13[6] in FOREIGN_DIGITS and last == rrn_check_digit(d12, True)


def birth_date_ok(yymmdd: str, gender_digit: str) -> bool:
    """A real calendar date in the century the 7th digit names (29 Feb only in leap years)."""
    year = _CENTURY[gender_digit] + int(yymmdd[:2])
    month, day = int(yymmdd[2:4]), int(yymmdd[4:6])
    return 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]


def valid_rrn(number: str) -> bool:
    """Could this be a real 주민등록번호/외국인등록번호 issued before 2020: real birth date and
    passing check digit. Separators are ignored."""
    d = "".join(c for c in number if c.isdigit())
    return len(d) == 13 and birth_date_ok(d[:6], d[6]) and rrn_checksum_ok(d)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        n = int(c)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0
