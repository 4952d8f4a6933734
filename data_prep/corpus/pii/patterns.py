"""Detectors for Korean personal data: one combined regex for the number-shaped kinds, tried
where a digit run starts, plus passes for e-mail, IPv6 and 서울 12-... licences; a Python
check then decides on each candidate.

The regexes only propose. The checks add what a regex cannot express: birth dates and
check digits, Luhn, card issuer ranges, and the *nearest label* before a number (계좌,
여권, 면허, 주민, but also 주문, 접수, 사건, 법인, 버전 ...): a label names the number that
follows it, so "주문번호 2022112284996017" is no card and "사건 2010가합12345, 계좌번호
110-123-456789" is an account. A label separated from the number by another number labels
that one instead. Look-alikes that must survive (dates, 제3조 제2항, 2010가합12345, 의안번호
1809890, 1,234,567원, years, statistics) never match a shape or fail the check.

Choices:
- 주민등록번호/외국인등록번호: YYMMDD + 7th digit + 6 digits, with a real birth date in the
  century the 7th digit names. With a hyphen the shape is specific enough: it counts
  whatever the check digit says, since typos exist and numbers issued since October 2020
  have no check digit. Bare (13 digits, or a space: 8303136342340, 830313 6342340) it needs
  the check digit (for 외국인등록번호 either rule: see checksums.rrn_checksum_ok) or a 주민/
  외국인/등록번호/생년월일 label; a cue word is not required, since forms often print the
  number alone after a name. A label of another kind does not veto a passing check digit
  (a number after 접속 or 연락처 is still someone's 주민등록번호); an "other" label does:
  법인등록번호 has the same shape, and 사업자번호/주문번호/의안번호 name numbers that are not
  personal. 7th digit 9/0 (born in the 1800s) needs the check digit. Masked forms
  (900101-1******) still show birth date and sex: replaced too.
- Phones: mobile 010/011/016-019, areas 02, 031-064, 070 (VoIP), 0502-0508 (안심번호), with
  -, ., spaces, (02), 02) and +82. Business numbers (1588-xxxx, 080, 060) are published
  company contacts, not personal data: left alone.
- Accounts: 10-14 digits, grouped or bare, only under an account label (계좌, 은행, 통장,
  입금, 예금주, 농협, 신한, ...); 국민/우리/하나/기업/카카오/토스/케이 are ordinary words too
  and count only as a word of their own right before the number (not 좋아하나봐요); 금고 is
  also a prison sentence (금고 이상의 형): only 새마을금고 counts.
- Cards: 13-19 digits, Luhn-valid, in an issuer range or under a card label. Under an account
  label a Luhn-valid number of account length (<= 14 digits) is an account. Luhn-invalid
  numbers are never cards, labelled or not (typos included: Luhn is the definition here).
- Passports: M123A4567 (since 2021) by shape; M12345678 only under 여권/passport.
- Driver's licences: 11-12-345678-90 (region 11-28, hyphenated) or 서울 12-345678-90;
  other spellings need a 면허 label.
- IPs: IPv4 and IPv6 of every range by default: in security documents an internal address
  (10.x, 172.16-31.x, 192.168.x, 127.x, 240-255.x) maps a network, which is what an
  attacker wants; ip_public_only=True keeps only public ones. IPv4 with fewer than 7 digits
  (1.2.3.4 could be a section or version number) and IPv6 written with fewer than 3 groups
  (ab::cd) need an IP label (IP, 접속, 서버, 호스트, 게이트웨이, DNS, 내부망, 원격지 ...).
  A netmask (255.255.255.0) addresses no host: left alone.
- Numbers followed by a unit (원, 명, 건, 호, %, ...) are amounts, counts or ordinals, never PII;
  nor is anything right after 제 (제2010-123456호).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Callable, Iterable

from data_prep.corpus.pii.checksums import FOREIGN_DIGITS, birth_date_ok, luhn_ok, rrn_checksum_ok

KINDS = ("rrn", "arn", "phone", "email", "account", "card", "passport", "driver_license", "ip")
# Defaults of Detector and of the recipe keys data.pii.context_window / ip_public_only (settings.py)
CONTEXT_WINDOW = 30  # chars before a number searched for its label
IP_PUBLIC_ONLY = False  # internal addresses are sensitive too (see Choices above)


@dataclass(frozen=True, slots=True)
class Found:
    kind: str
    start: int
    end: int
    value: str  # the matched text (ASCII digits, even where the input had full-width ones)
    norm: str  # canonical form: the same number written differently has the same norm
    head: int = 0  # leading characters of value a fake keeps (area code, licence region, card BIN)


# ---- shapes -------------------------------------------------------------------------------------
_SP = r"[ \t\u00a0]"
_DASH = r"[-\u2010-\u2015\u2212]"  # hyphen, en/em dashes, minus sign

_RRN = (rf"(?P<rrn>(?P<rrn_date>[0-9]{{2}}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01]))"
        rf"(?P<rrn_sep>{_SP}?{_DASH}{_SP}?|{_SP})?"
        rf"(?P<rrn_tail>[0-9](?:[0-9]{{6}}|[*xX●]{{6}})))(?![0-9*xX●])")

_REGIONS = {"서울": "11", "부산": "12", "경기": "13", "강원": "14", "충북": "15", "충남": "16", "전북": "17",
            "전남": "18", "경북": "19", "경남": "20", "제주": "21", "대구": "22", "인천": "23", "광주": "24",
            "대전": "25", "울산": "26", "경기북부": "28"}
_REGION_NAMES = "|".join(sorted(_REGIONS, key=len, reverse=True))  # 경기북부 before 경기
_DL_TAIL = (rf"(?P<dl_sep>{_SP}?{_DASH}?{_SP}?)(?P<dl_rest>[0-9]{{2}}(?P<dl_s2>{_DASH}|{_SP}|)[0-9]{{6}}"
            rf"(?P=dl_s2)[0-9]{{2}}))(?![0-9]|{_DASH}[0-9])")
_DL = rf"(?P<driver_license>(?P<dl_region>1[1-9]|2[0-8]){_DL_TAIL}"
# 서울 12-345678-90: its own pass, since it starts with Hangul rather than at a number
_DL_NAMED = re.compile(rf"(?P<driver_license>(?P<dl_region>{_REGION_NAMES}){_DL_TAIL}")

_PREFIX = r"(?:1[016789]|2|3[1-3]|4[1-4]|5[1-5]|6[1-4]|70|50[2-8])"  # without the trunk 0
_PSEP = rf"(?:{_SP}*[-\u2010-\u2015\u2212.]{_SP}*|{_SP}{{1,2}})?"
_PHONE = (rf"(?P<phone>(?:\+{_SP}?82{_SP}*{_DASH}?{_SP}*(?:\(0\){_SP}*)?0?(?P<ph_cc>{_PREFIX})"
          rf"|\(?(?P<ph_ac>0{_PREFIX})\)?)"
          rf"{_PSEP}(?P<ph_mid>[1-9][0-9]{{2,3}}){_PSEP}(?P<ph_last>[0-9]{{4}}))(?![0-9]|[-.][0-9])")

# 4-4-4-4(-3), 4-6-5 (Amex), 4-6-4 (Diners), or 13-19 bare digits
_CARD = (rf"(?P<card>[0-9]{{4}}(?P<card_s>{_DASH}|{_SP})(?:[0-9]{{4}}(?P=card_s)[0-9]{{4}}(?P=card_s)[0-9]{{4}}"
         rf"(?:(?P=card_s)[0-9]{{3}}(?![0-9]))?|[0-9]{{6}}(?P=card_s)[0-9]{{4,5}})|[0-9]{{13,19}})"
         rf"(?![0-9]|[-.][0-9])")

_ACCOUNT = rf"(?P<account>[0-9]{{2,6}}(?:{_DASH}[0-9]{{1,7}}){{1,4}}|[0-9]{{10,14}})(?![0-9]|[-.,][0-9])"

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IP4 = rf"(?<![A-Za-z.])(?P<ip>{_OCTET}(?:\.{_OCTET}){{3}})(?![0-9]|\.[0-9])"

_PASSPORT = r"(?<![A-Za-z])(?P<passport>[MSRGDT](?:[0-9]{3}[A-Z][0-9]{4}|[0-9]{8}))(?![A-Za-z0-9])"

# Not in the middle of a number (nor right after "12-" or "3."), nor an ordinal (제2010-123456호).
_BOUNDARY = r"(?<![0-9])(?<![0-9][-.])(?<!제)"

# Order decides ties at one position; a candidate that fails its check is offered to the later ones.
_ALTERNATIVES = (("rrn", _RRN), ("driver_license", _DL), ("phone", _PHONE), ("card", _CARD),
                 ("account", _ACCOUNT), ("ip", _IP4), ("passport", _PASSPORT))

# matched from the first letter or digit before an '@' (".hong@..." after a full stop is hong@...)
_EMAIL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
                    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])")
_H4 = r"[0-9A-Fa-f]{1,4}"
_IP6 = re.compile(rf"(?<![0-9A-Za-z:.])(?:(?:{_H4}:){{7}}{_H4}|(?:{_H4}:){{1,6}}:(?:{_H4}(?::{_H4}){{0,5}})?"
                  rf"|::{_H4}(?::{_H4}){{0,6}})(?![0-9A-Za-z:])")  # the last one: ::1, ::ffff:a00:1
_IP6_FULL = re.compile(rf"(?:{_H4}:){{7}}{_H4}")
_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_LOCAL_RUN = re.compile(r"[A-Za-z0-9._%+-]{1,64}\Z")  # with endpos at the '@': the name before it

_RUN = re.compile(r"[0-9][0-9]*")  # written so that re can skip to digits fast (a leading class, no lookbehind)
_DASH_CHARS = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2015\u2212")
_SPACE_CHARS = frozenset(" \t\u00a0")
_LEAD = frozenset("+(MSRGDT")  # a number's PII may start one character earlier: +82, (02), M12345678
_FULLWIDTH = re.compile(r"[０-９－]")
_TO_ASCII = str.maketrans("０１２３４５６７８９－", "0123456789-")  # 1:1, so positions stay valid

# ---- labels: the word before a number that says what it is ---------------------------------------
_LABEL_WORDS = {
    # numbers that are not personal data, or of another kind than their shape suggests
    "other": "법인등록번호 법인번호 사업자등록번호 사업자번호 접수번호 관리번호 주문번호 문서번호 고유번호 일련번호 "
             "송장번호 사건번호 의안번호 승인번호 인증번호 모델번호 모델명 제품번호 시리얼 Serial serial S/N 품번 "
             "코드 ISBN 우편번호 공고번호 고시번호 버전 Version version Ver. ver. 대표번호 고객센터 학번 사번 차량번호 "
             "등기번호 허가번호",
    "rrn": "주민등록번호 주민번호 주민 외국인등록번호 외국인번호 외국인 등록번호 생년월일 RRN",
    "account": "계좌번호 계좌 은행 통장 입금 예금주 예금 송금 이체 환불 뱅크 새마을금고 신협 수협 농협 우체국 신한 IBK KB NH "
               "SC제일 씨티 account Account bank Bank",
    # ordinary words too (우리 반, 좋아하나봐, 하나도): only as a word of their own right before the number
    "account_near": "국민 우리 하나 기업 카카오 토스 케이",
    "card": "카드번호 카드 card Card CARD 신용 체크 결제",
    "passport": "여권번호 여권 passport Passport PASSPORT",
    "driver_license": "운전면허번호 면허번호 면허",
    "phone": "전화번호 전화 연락처 문의 휴대폰 핸드폰 휴대전화 Tel TEL tel HP 팩스 FAX Fax fax",
    # IP cues (서버 covers 서버 주소/서버 IP, 접속 covers 접속지/접속 기록). As labels they also speak
    # about the other kinds: a bare 13-digit number after them still counts by its check digit
    # (only "other" vetoes that), an account needs its own label nearer than them, and a phone
    # written as bare digits is not blocked by them (an address always has dots or colons).
    "ip": "IP 아이피 접속 원격지 서버 server Server 호스트 host Host 게이트웨이 gateway Gateway DNS 내부망 외부망 "
          "라우터 방화벽 VPN 프록시 서브넷",
}
_LABEL_KIND = {}
for _kind, _words in _LABEL_WORDS.items():
    for _w in _words.split():
        _LABEL_KIND[_w] = _kind
        if _w.endswith("번호"):
            _LABEL_KIND[_w[:-2] + " 번호"] = _kind  # 계좌 번호
# A flat alternation of literals, longest first: re then scans for their first characters fast.
_LABEL = re.compile("|".join(re.escape(w) for w in sorted(_LABEL_KIND, key=len, reverse=True)))
_NEAR = 8  # chars: how close "right before" is for the account_near words
_SYLLABLE = re.compile(r"[가-힣]")
_LIST_GAP = re.compile(r"[\s,/;·]{0,5}")  # between items of a list under one label: "계좌: A, B"
# after a number, an amount or a count: 1234567890원, 12345678901 원을, 2010-123456호 (but not 원고, 회의)
_QUANTITY = re.compile(r"[원명건개회호%배년억만천조]|kg|km|[ \t](?:%|원(?![가-힣])|원[을이은의으에과와정])")
_ANY_DIGIT = re.compile(r"[0-9]")
_DASHES = re.compile(_DASH)
_NON_DIGIT = re.compile(r"[^0-9]")


def _digits(s: str) -> str:
    return _NON_DIGIT.sub("", s)


def _syllable_at(text: str, i: int) -> bool:
    return 0 <= i < len(text) and _SYLLABLE.match(text, i) is not None


def _is_netmask(addr: ipaddress.IPv4Address) -> bool:
    """255.255.255.0, 255.255.240.0, ...: ones then zeros from a /8 on. A mask, not a host."""
    n = int(addr)
    return n >> 24 == 0xFF and (n | (n - 1)) == 0xFFFFFFFF


def _card_range_ok(d: str) -> bool:
    """Issuer ranges by length (Visa 4, Mastercard 51-55/2221-2720, Amex 34/37, Diners 30/36/38,
    JCB 35, UnionPay/Discover 6, Korean domestic 9). Order numbers starting 2024... fall outside."""
    n, p2, p4 = len(d), int(d[:2]), int(d[:4])
    if n == 16:
        return d[0] in "4569" or 51 <= p2 <= 55 or p2 == 35 or 2221 <= p4 <= 2720
    if n == 15:
        return p2 in (34, 37)
    if n == 14:
        return p2 in (30, 36, 38, 39)
    if 17 <= n <= 19:
        return d[0] in "4569"
    return False  # 13: old Visa numbers, indistinguishable from other 13-digit numbers without a label


class Detector:
    """Finds the enabled kinds in a text; `find` returns non-overlapping Found in text order."""

    def __init__(self, kinds: Iterable[str] = KINDS, context_window: int = CONTEXT_WINDOW,
                 ip_public_only: bool = IP_PUBLIC_ONLY):
        self.kinds = frozenset(kinds)
        unknown = self.kinds - set(KINDS)
        if unknown:
            raise ValueError(f"unknown PII types {sorted(unknown)}; known: {list(KINDS)}")
        self.window, self.ip_public_only = context_window, ip_public_only
        alts = [(k, p) for k, p in _ALTERNATIVES if k in self.kinds or (k == "rrn" and "arn" in self.kinds)]
        self._checks: dict[str, Callable[[str, re.Match, Found | None], Found | None]] = {
            k: getattr(self, f"_check_{k}") for k, _ in alts}
        self._order = [k for k, _ in alts]
        self._alone = {k: re.compile(_BOUNDARY + p) for k, p in alts}  # for the second chance after a failed check
        self._main = re.compile(_BOUNDARY + "(?:" + "|".join(p for _, p in alts) + ")") if alts else None

    # ---- labels ------------------------------------------------------------------------------------
    def _label(self, text: str, start: int, end: int, prev: Found | None) -> str | None:
        """The kind named by the nearest label before the number (or, failing that, right after it):
        "rrn", "account", "phone", ..., "other" (not personal / another kind), or None (no label)."""
        labels = list(_LABEL.finditer(text, max(0, start - self.window), start))
        for lab in reversed(labels):
            kind = _LABEL_KIND[lab[0]]
            if kind == "account_near":
                if start - lab.end() > _NEAR or _syllable_at(text, lab.start() - 1) \
                        or _syllable_at(text, lab.end()):
                    continue
                kind = "account"
            if _ANY_DIGIT.search(text, lab.end(), start) is None:
                return kind
            # another number in between took the label, unless this one continues a list of them
            if prev is not None and prev.start >= lab.end() and _LIST_GAP.fullmatch(text, prev.end, start):
                return kind
            return None
        # after the number, a label can only describe it if no other number follows (110-... 예금주 홍길동)
        lab = _LABEL.search(text, end, end + self.window // 2)
        if lab is not None:
            kind = _LABEL_KIND[lab[0]]
            if kind not in ("other", "account_near") and _ANY_DIGIT.search(text, end, lab.start()) is None \
                    and _ANY_DIGIT.search(text, lab.end(), lab.end() + _NEAR) is None:
                return kind
        return None

    @staticmethod
    def _quantity(text: str, m: re.Match) -> bool:
        return _QUANTITY.match(text, m.end()) is not None

    # ---- checks: the regex proposed m; return a Found or None --------------------------------------
    def _check_rrn(self, text: str, m: re.Match, prev: Found | None) -> Found | None:
        date, tail, sep = m["rrn_date"], m["rrn_tail"], m["rrn_sep"] or ""
        g = tail[0]
        kind = "arn" if g in FOREIGN_DIGITS else "rrn"
        if kind not in self.kinds or not birth_date_ok(date, g) or self._quantity(text, m):
            return None
        masked = not tail[1].isdigit()
        checksum = not masked and rrn_checksum_ok(date + tail)
        if g in "90" and not checksum:
            return None
        label = self._label(text, m.start(), m.end(), prev)
        if sep.strip() or masked:  # 900101-1234567: the shape itself says it
            ok = label != "other"
        else:  # 9001011234567, 900101 1234567: the check digit or a label must say it
            ok = label == "rrn" or (checksum and label != "other")
        return Found(kind, m.start(), m.end(), m[0], date + tail) if ok else None

    def _check_driver_license(self, text: str, m: re.Match, prev: Found | None) -> Found | None:
        region, sep, s2 = m["dl_region"], m["dl_sep"], m["dl_s2"]
        if region.isdigit():
            shaped = sep.strip() != "" and s2.strip() != ""  # 11-12-345678-90: all three hyphens
        else:
            shaped = s2 != ""  # 서울 12-345678-90
        label = self._label(text, m.start(), m.end(), prev)
        if not (label == "driver_license" or shaped and label != "other") or self._quantity(text, m):
            return None
        norm = _REGIONS.get(region, region) + _digits(m["dl_rest"])
        return Found("driver_license", m.start(), m.end(), m[0], norm, m.start("dl_rest") - m.start())

    def _check_phone(self, text: str, m: re.Match, prev: Found | None) -> Found | None:
        v = m[0]
        # "4098 0502 8769 3672": space-separated groups right after another number belong to it
        # (010 1234 5678 is distinctive enough to stand anyway)
        if " " in v and not v.startswith("01") and not any(c in v for c in "-.()+") and m.start() >= 2 \
                and text[m.start() - 2].isdigit() and text[m.start() - 1] == " ":
            return None
        if v.isdigit() and not v.startswith("01") \
                and self._label(text, m.start(), m.end(), prev) not in (None, "phone", "ip"):
            return None  # 송장번호 050412345678: bare digits under another label (01012345678 is distinctive)
        prefix = m["ph_ac"] or "0" + m["ph_cc"]
        return Found("phone", m.start(), m.end(), v, prefix + m["ph_mid"] + m["ph_last"],
                     m.start("ph_mid") - m.start())

    def _check_card(self, text: str, m: re.Match, prev: Found | None) -> Found | None:
        v, end = m[0], m.end()
        d = _digits(v)
        if len(d) == 19 and m["card_s"] and not luhn_ok(d):  # "4-4-4-4 3": maybe a card, then another number
            v, end, d = v[:19], m.start() + 19, d[:16]
        if not (13 <= len(d) <= 19 and luhn_ok(d)) or len(d) == 13 and d[:3] in ("978", "979"):  # ISBN-13
            return None
        if _QUANTITY.match(text, end):
            return None
        label = self._label(text, m.start(), end, prev)
        if label == "other" or label == "account" and len(d) <= 14:
            return None  # under an account label a Luhn-valid number of account length is an account (1 in 10 are)
        if not (label == "card" or _card_range_ok(d)):
            return None
        return Found("card", m.start(), end, v, d, 4)

    def _check_account(self, text: str, m: re.Match, prev: Found | None) -> Found | None:
        v = m[0]
        d = _digits(v)
        if not 10 <= len(d) <= 14 or self._quantity(text, m):
            return None
        groups = [len(g) for g in _DASHES.split(v)]
        if groups == [6, 7] or len(groups) == 5 or d[:3] in ("080", "060"):
            return None  # the RRN grouping (no bank uses it), ISBN-13 (979-11-...), business phones
        if self._label(text, m.start(), m.end(), prev) != "account":
            return None
        return Found("account", m.start(), m.end(), v, d)

    def _check_ip(self, text: str, m: re.Match, prev: Found | None) -> Found | None:
        label = self._label(text, m.start(), m.end(), prev)
        if not (label == "ip" or len(m[0]) >= 10 and label != "other"):  # >= 7 digits (+ 3 dots)
            return None
        addr = ipaddress.IPv4Address(m[0])  # the octet pattern admits no leading zeros, no values > 255
        if not self._ip_wanted(addr) or _is_netmask(addr):
            return None
        return Found("ip", m.start(), m.end(), m[0], str(addr))

    def _ip_wanted(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return not self.ip_public_only or addr.is_global

    def _check_passport(self, text: str, m: re.Match, prev: Found | None) -> Found | None:
        v = m[0]
        label = self._label(text, m.start(), m.end(), prev)
        new_format = not v[4].isdigit()  # M123A4567
        if not (label == "passport" or new_format and label != "other"):
            return None
        return Found("passport", m.start(), m.end(), v, v, 1)

    # ---- search -----------------------------------------------------------------------------------
    def _check_at(self, text: str, p: int, prev: Found | None) -> Found | None:
        """The first kind, in _ALTERNATIVES order, whose shape matches at p and whose check passes."""
        m = self._main.match(text, p)
        if m is None:
            return None
        kind = m.lastgroup
        f = self._checks[kind](text, m, prev)
        if f is None:  # e.g. an account-shaped date: give the later kinds their chance here
            for other in self._order[self._order.index(kind) + 1:]:
                m2 = self._alone[other].match(text, p)
                if m2 is not None and (f := self._checks[other](text, m2, prev)) is not None:
                    break
        return f

    @staticmethod
    def _may_start(text: str, p: int, e: int) -> bool:
        """Can PII start at the digit run text[p:e]? Cheap tests that spare most runs the regex."""
        if p >= 2 and text[p - 1] in "-." and "0" <= text[p - 2] <= "9":
            return False  # 12-34, 3.14: inside a number (_BOUNDARY says the same)
        if e - p >= 6:
            return True
        if e >= len(text):
            return False
        c, zero = text[e], text[p] == "0"
        if c in _DASH_CHARS:  # 02-, 11-12-..., 110-123-..., 4111-...
            return zero or e - p >= 2
        if c == ".":  # 010.1234.5678, 211.234.56.78
            return zero or e - p <= 3
        if c in _SPACE_CHARS:  # 010 1234 5678, 4111 1111 1111 1111
            return zero or e - p == 4
        return c == ")" and zero  # 02) 748-6350

    def _numbers(self, text: str) -> list[Found]:
        # re has no fast scan for a pattern that opens with a lookbehind or an alternation, so
        # scan digit runs (fast) and try the combined pattern only where PII could start.
        out: list[Found] = []
        pos, check_at, may_start, prev = 0, self._check_at, self._may_start, None
        for r in _RUN.finditer(text):
            p, e = r.span()
            if p < pos:
                continue
            lead = p > 0 and text[p - 1] in _LEAD  # +82, (02), M123A4567
            if not (lead or may_start(text, p, e)):
                continue
            f = (check_at(text, p - 1, prev) if lead else None) or check_at(text, p, prev)
            if f is not None:
                out.append(f)
                pos, prev = f.end, f
        return out

    @staticmethod
    def _emails(text: str) -> list[Found]:
        """Tried only at each '@', from the start of the name before it: scanning a whole text with
        the e-mail pattern is slow, and so is searching around every '@' of an '@@@@' run."""
        out, floor, at = [], 0, text.find("@")
        while at != -1:
            if at > floor and text[at - 1] in _LOCAL_CHARS and at + 1 < len(text) and text[at + 1].isascii() \
                    and text[at + 1].isalnum():
                run = _LOCAL_RUN.search(text, max(floor, at - 64), at)
                start = run.start() if run else at
                while start < at and not text[start].isalnum():  # a name starts with a letter or digit
                    start += 1
                m = _EMAIL.match(text, start)
                if m is not None:
                    out.append(Found("email", m.start(), m.end(), m[0], m[0].lower()))
                    floor = m.end()
                    at = text.find("@", floor)
                    continue
            at = text.find("@", at + 1)
        return out

    def _others(self, text: str) -> list[Found]:
        out = []
        if "email" in self.kinds:
            out += self._emails(text)
        if "ip" in self.kinds and ("::" in text or text.count(":") >= 7 and _IP6_FULL.search(text)):
            for m in _IP6.finditer(text):
                try:
                    addr = ipaddress.IPv6Address(m[0])
                except ValueError:
                    continue
                # ab::cd, dead::beef: with fewer than 3 groups as likely code or hex as an address
                groups = sum(1 for g in m[0].split(":") if g)
                if self._ip_wanted(addr) and (groups >= 3 or self._label(text, m.start(), m.end(), None) == "ip"):
                    out.append(Found("ip", m.start(), m.end(), m[0], str(addr)))
        if "driver_license" in self.kinds:
            out += [f for m in _DL_NAMED.finditer(text) if (f := self._check_driver_license(text, m, None))]
        return out

    def find(self, text: str) -> list[Found]:
        if _FULLWIDTH.search(text):
            text = text.translate(_TO_ASCII)
        numbers = self._numbers(text) if self._main is not None else []
        others = self._others(text)
        if not others:
            return numbers
        # e-mail, IPv6 and 서울 12-... win over numbers inside them (01012345678@naver.com)
        others.sort(key=lambda f: f.start)
        keep, i = [], 0
        for f in numbers:  # both sorted: one sweep
            while i < len(others) and others[i].end <= f.start:
                i += 1
            if i == len(others) or others[i].start >= f.end:
                keep.append(f)
        return sorted(keep + others, key=lambda f: f.start)
