"""Format-preserving fakes, keyed by a secret salt.

fake = f(HMAC-SHA512(salt, kind + norm)): the same number gets the same fake throughout
a corpus however it was written (010-1234-5678, 01012345678, +82 10 1234 5678), a
different salt gives different fakes, and without the salt a fake cannot be traced back.
Separators, lengths and the non-identifying head (area code, card issuer, licence region,
passport type letter) are kept, so the text still reads naturally.

Where the format allows it, a fake can never be a real number:
- 주민/외국인등록번호: day 32-39 (no month has one) AND a failing check digit. The failing
  check digit alone would not do: numbers issued since 2020 have none.
- phones: the local number starts with 0, which the Korean numbering plan never assigns
  (0 is the trunk prefix), e.g. 010-0xxx-xxxx, 02-0xx-xxxx.
- cards: Luhn check fails.
- IPv4: a public or other special address becomes one in 240.0.0.0/4 (reserved, never assigned,
  RFC 1112). A private or loopback address (10/8, 172.16/12, 192.168/16, 127/8) stays in its
  block with keyed host bits: the text still reads "an internal address", and no block holds
  an address that is not assignable; the block itself is shared by millions of networks and
  names none, while the host bits, which map the real network, are gone.
  IPv6: 2001:db8::/32 (documentation), whatever the range.
Accounts, passports and licences have no public check digit: their fakes are keyed random
digits, different from the input, unlinkable to it without the salt.
E-mail: the local part is faked; a public mail provider or an institution's domain
(naver.com, *.go.kr) is kept because it names no one, any other domain is faked too.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import string
from typing import Iterator

from data_prep.corpus.pii.checksums import luhn_ok, rrn_check_digit
from data_prep.corpus.pii.patterns import Found

_KEEP_DOMAINS = frozenset({
    "naver.com", "gmail.com", "daum.net", "hanmail.net", "kakao.com", "nate.com", "hotmail.com", "outlook.com",
    "yahoo.com", "yahoo.co.kr", "icloud.com", "korea.com", "empal.com", "paran.com", "dreamwiz.com", "chol.com",
    "hanmir.com", "lycos.co.kr", "freechal.com", "korea.kr"})
_INSTITUTIONAL = (".go.kr", ".ac.kr", ".re.kr", ".or.kr", ".mil.kr", ".korea.kr", ".gov", ".edu")
_SECOND_LEVEL = frozenset({"co", "or", "go", "ac", "re", "ne", "pe", "mil", "hs", "ms", "es", "sc", "kg"})
_CACHE_MAX = 1 << 16
# IPv4 blocks whose fakes stay in them (see the module docstring)
_IP4_KEEP_BLOCK = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                            "127.0.0.0/8"))


class Faker:
    def __init__(self, salt: str):
        self._key = salt.encode("utf-8")
        self._cache: dict[tuple[str, str], str] = {}

    def fake(self, f: Found) -> str:
        key = (f.kind, f.value)
        out = self._cache.get(key)
        if out is None:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            out = self._cache[key] = getattr(self, f"_{f.kind}")(f, _Stream(self._key, f.kind, f.norm))
        return out

    # ---- one method per kind ------------------------------------------------------------------------
    def _rrn(self, f: Found, h: "_Stream") -> str:
        g = f.norm[6]
        new = h.digits(2) + f"{h.int(12) + 1:02d}" + str(32 + h.int(8)) + g  # day 32-39: no such date
        if f.norm[7].isdigit():
            new += h.digits(5)
            bad = {rrn_check_digit(new), rrn_check_digit(new, foreign=True)}
            new += next(c for c in h.digits(12) + "0123456789" if int(c) not in bad)
        return _fill(f.value, iter(new))

    _arn = _rrn

    def _phone(self, f: Found, h: "_Stream") -> str:
        return f.value[:f.head] + _fill(f.value[f.head:], iter("0" + h.digits(12)))  # local numbers never start with 0

    def _card(self, f: Found, h: "_Stream") -> str:
        out = f.value[:f.head] + _fill(f.value[f.head:], h.digit_iter())
        if luhn_ok("".join(c for c in out if c.isdigit())):  # one step off the check digit breaks Luhn
            i = max(i for i, c in enumerate(out) if c.isdigit())
            out = out[:i] + str((int(out[i]) + 1) % 10) + out[i + 1:]
        return out

    def _account(self, f: Found, h: "_Stream") -> str:
        return _differ(f.value, _fill(f.value, h.digit_iter()))

    def _passport(self, f: Found, h: "_Stream") -> str:
        return _differ(f.value, f.value[:f.head] + _fill(f.value[f.head:], h.digit_iter(), h.letter_iter()))

    def _driver_license(self, f: Found, h: "_Stream") -> str:
        return _differ(f.value, f.value[:f.head] + _fill(f.value[f.head:], h.digit_iter()))

    def _email(self, f: Found, h: "_Stream") -> str:
        local, domain = f.value.rsplit("@", 1)
        local = _fill(local, h.digit_iter(), h.letter_iter())
        d = domain.lower()
        if d not in _KEEP_DOMAINS and not d.endswith(_INSTITUTIONAL):
            labels = domain.split(".")
            keep = 2 if len(labels) > 2 and labels[-2].lower() in _SECOND_LEVEL else 1  # co.kr, or.kr, ...
            fake = [_fill(x, h.digit_iter(), h.letter_iter()) for x in labels[:-keep]]
            domain = ".".join(fake + labels[-keep:])
        return _differ(f.value, local + "@" + domain)

    def _ip(self, f: Found, h: "_Stream") -> str:
        if ":" in f.value:
            return "2001:db8:" + ":".join(f"{h.int(65536):x}" for _ in range(6))
        addr = ipaddress.IPv4Address(f.norm)
        block = next((b for b in _IP4_KEEP_BLOCK if addr in b), None)
        if block is None:
            return f"{240 + h.int(15)}.{h.int(256)}.{h.int(256)}.{h.int(256)}"
        return _differ(f.value, str(block[h.int(block.num_addresses)]))


class _Stream:
    """Keyed pseudo-random digits and letters for one (kind, norm), as many as asked for."""

    def __init__(self, key: bytes, kind: str, norm: str):
        self._mac = hmac.new(key, f"{kind}\x00{norm}".encode("utf-8"), hashlib.sha512).digest()
        self._n = int.from_bytes(self._mac, "big")

    def int(self, below: int) -> int:
        if self._n < below << 64:  # running low: extend deterministically by hashing on
            self._mac = hashlib.sha512(self._mac).digest()
            self._n = (self._n << 512) | int.from_bytes(self._mac, "big")
        self._n, r = divmod(self._n, below)
        return r

    def digits(self, n: int) -> str:
        return "".join(str(self.int(10)) for _ in range(n))

    def digit_iter(self) -> Iterator[str]:
        while True:
            yield str(self.int(10))

    def letter_iter(self) -> Iterator[str]:
        while True:
            yield string.ascii_uppercase[self.int(26)]


def _fill(template: str, digits: Iterator[str], letters: Iterator[str] | None = None) -> str:
    """Template's digits (and, if letters are given, its ASCII letters) replaced in order, case kept;
    a digit is kept once `digits` runs out."""
    out = []
    for c in template:
        if "0" <= c <= "9":
            out.append(next(digits, c))
        elif letters is not None and c.isascii() and c.isalpha():
            L = next(letters)
            out.append(L if c.isupper() else L.lower())
        else:
            out.append(c)
    return "".join(out)


def _differ(original: str, fake: str) -> str:
    """A fake equal to its input would leak it; one digit moved makes sure it cannot."""
    if fake != original:
        return fake
    i = max((i for i, c in enumerate(fake) if c.isdigit()), default=-1)
    if i < 0:
        return fake + "x"
    return fake[:i] + str((int(fake[i]) + 1) % 10) + fake[i + 1:]
