#!/usr/bin/env python
"""PII detector benchmark on REAL Korean text: recall on planted PII, valid 주민등록번호 left
after scrubbing, false positives on planted look-alikes, speed.

The planted values are generated (seeded); the carrier text is real. Each planted PII value or
look-alike, alone or after a cue phrase ("주민등록번호 {v}", "서버 주소 {v}", "의안번호 {v}"), is
inserted into a real sentence at a word boundary (start, between two words, or appended at the
end), never next to a number of the sentence itself; the sentence is not written around it.
One item per sentence: PII values (the kinds in turn) and look-alikes alternately.
Carriers (--corpus, repeatable; default: the repo's examples/data ChatbotData.csv Q and A
columns and the ko-gov-sample bill and constitution lines):
  .txt    every line, split into sentences
  .csv    the --text-column columns (repeatable; default text), split into sentences
  .jsonl  the --text-column keys of every object, split into sentences
Sentences with an e-mail or a phone-like number of their own are not used as carriers (the
bills name their officials); detections elsewhere in the carrier text are counted apart.

Planted PII: 주민/외국인등록번호 hyphenated, hyphen with spaces, 13 bare digits, 6+7 digits with
a space and masked (900101-1******), each with or without a cue word (외국인등록번호 with a
check digit by either rule: the ARN one and the 주민등록번호 one); phones, e-mail, accounts,
cards, passports, driver's licences; public IPv4/IPv6 and private, loopback and reserved
IPv4/IPv6 after cues (접속 IP, 서버 주소, 내부망, 게이트웨이, DNS, 호스트, 원격지, 접속지 ...).
A number with no separator, no cue and no valid check digit (issued since 2020, or a typo)
is any 13-digit number: it is planted as the look-alike bad_check_13, not as PII.
Look-alikes: dates, 제3조 제2항, 2010가합12345, 의안번호 1809890, amounts, years, statistics,
ISBNs, order numbers (also landline-shaped), Luhn-invalid 16-digit, invalid-date and
bad-check-digit 13-digit numbers, postal codes, times, business numbers, 법인/사업자등록번호,
page and section numbers, versions (1.2.3.4), netmasks, numbers next to bank words ...
Check digits and dates here are computed independently of data_prep's own.

  recall      planted values found with the right type and a span covering them, per type
              (and per form for 주민/외국인등록번호 and IPs)
  leaked      planted values still present verbatim after pseudonymisation
  valid RRNs  planted 주민/외국인등록번호 with a real date and check digit whose 13 digits are
              still in the scrubbed text (separators ignored): must be 0
  FP rate     look-alikes touched by any detection, per category and overall (target <= 1%)
  speed       docs/s and MB/s of the full scrub (detect + fakes) on one core

--generated keeps the older generator-only mode: sentences made of the cue phrases alone (a
PII value half the time and one or two look-alikes side by side, so a cue can spill onto a
neighbouring number; 30% prefixed with a real bill line), no real carrier.

Usage: python scripts/bench_pii.py [--corpus PATH [--text-column COL]]... [--generated]
                                   [--sentences 60000] [--seed 0]
"""

from __future__ import annotations

import argparse
import calendar
import csv
import ipaddress
import json
import random
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from datatrove.data import Document  # noqa: E402

from data_prep.corpus.pii import KINDS, Detector, PIISettings, PIIStep, Scrubber  # noqa: E402

GOV = REPO / "examples/data/ko-gov-sample"
CHAT = REPO / "examples/data/ko-chatbot/ChatbotData.csv"
NAMES = ["홍길동", "김철수", "이영희", "박민수", "최지우", "정다은", "강호동", "윤서연", "장민호", "임수정"]
ROMAN = ["hong", "kim", "lee", "park", "choi", "jung", "kang", "yoon", "jang", "lim", "gildong", "minsu", "jiwoo"]


class Plant(NamedTuple):
    label: str  # PII kind, or look-alike category
    form: str  # how a PII value is written (rrn/arn/ip), "" otherwise
    value: str
    piece: str  # the value alone or in its cue phrase: what goes into the carrier


# ---- independent check digits and dates ---------------------------------------------------------
_CENTURY = {"1": 1900, "2": 1900, "5": 1900, "6": 1900, "3": 2000, "4": 2000, "7": 2000, "8": 2000}


def rrn_check(d12: str, foreign: bool) -> str:
    s = sum(int(c) * w for c, w in zip(d12, [2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5]))
    return str(((13 if foreign else 11) - s % 11) % 10)


def valid_id(d13: str) -> bool:
    """A real birth date and a check digit a real 주민/외국인등록번호 can carry (ARN: either rule)."""
    year = _CENTURY.get(d13[6])
    if year is None:
        return False
    year, month, day = year + int(d13[:2]), int(d13[2:4]), int(d13[4:6])
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        return False
    return d13[12] == rrn_check(d13[:12], False) or d13[6] in "5678" and d13[12] == rrn_check(d13[:12], True)


def luhn_complete(prefix: str) -> str:
    """prefix + the digit that makes the whole number Luhn-valid."""
    for c in "0123456789":
        d = prefix + c
        total = 0
        for i, ch in enumerate(reversed(d)):
            n = int(ch) * (2 if i % 2 else 1)
            total += n - 9 if n > 9 else n
        if total % 10 == 0:
            return d
    raise AssertionError


def digits(r: random.Random, n: int) -> str:
    return "".join(r.choice("0123456789") for _ in range(n))


def group(d: str, sizes: list[int], sep: str) -> str:
    out, i = [], 0
    for s in sizes:
        out.append(d[i:i + s])
        i += s
    return sep.join(out)


# ---- planted PII -------------------------------------------------------------------------------------
def birth(r: random.Random, foreign: bool) -> tuple[str, str]:
    year = r.choice([r.randint(1940, 2019)] * 19 + [r.randint(2020, 2024)])  # 5% born since 2020
    month, day = r.randint(1, 12), r.randint(1, 28)
    g = (("5", "6") if year < 2000 else ("7", "8")) if foreign else (("1", "2") if year < 2000 else ("3", "4"))
    return f"{year % 100:02d}{month:02d}{day:02d}", r.choice(g)


ID_CUES = {"rrn": ["주민등록번호: {v}", "주민번호 {v}", "생년월일 및 주민등록번호 {v}", "주민등록번호({v})를 기재",
                   "주민등록번호 {v}"],
           "arn": ["외국인등록번호: {v}", "외국인등록번호 {v} 소지자", "등록번호({v})", "외국인 근로자 {v}의 체류"]}
NO_CUE = ["{v}", "{name}({v}) 신청인", "성명 {name} {v}", "{name}, {v}, 서울시 거주", "신청인 {v} 본인 확인 완료."]


def gen_id(r: random.Random, foreign: bool) -> Plant:
    """A 주민등록번호 or 외국인등록번호 in one of its spellings, with or without a cue."""
    kind = "arn" if foreign else "rrn"
    date, g = birth(r, foreign)
    body = date + g + digits(r, 5)
    form = r.choices(["hyphen", "hyphen-spaced", "bare", "space", "masked"], [40, 5, 30, 15, 10])[0]
    cue = r.random() < 0.5
    check = rrn_check(body, foreign and r.random() < 0.5)  # ARNs are met with either rule's digit
    # no check digit since October 2020, and typos: only a separator or a cue can tell those
    if (g in "3478" and int(date[:2]) >= 20 or r.random() < 0.05) and (cue or form not in ("bare", "space")):
        check = r.choice("0123456789")
    d = body + check
    value = {"hyphen": f"{d[:6]}-{d[6:]}", "hyphen-spaced": f"{d[:6]} - {d[6:]}", "bare": d,
             "space": f"{d[:6]} {d[6:]}", "masked": f"{d[:6]}-{d[6]}******"}[form]
    template = r.choice(ID_CUES[kind] if cue else NO_CUE)
    return Plant(kind, f"{form}, {'cue' if cue else 'no cue'}", value, template.format(v=value, name=r.choice(NAMES)))


def gen_phone(r: random.Random) -> Plant:
    mid4, last = str(r.randint(2, 9)) + digits(r, 3), digits(r, 4)
    mid3 = str(r.randint(2, 9)) + digits(r, 2)
    area = r.choice(["02", "031", "032", "033", "041", "042", "043", "044", "051", "052", "053", "054", "055",
                     "061", "062", "063", "064"])
    forms = [
        f"010-{mid4}-{last}", f"010 {mid4} {last}", f"010{mid4}{last}", f"010.{mid4}.{last}",
        f"+82-10-{mid4}-{last}", f"+82 10 {mid4} {last}", f"+82 (0)10-{mid4}-{last}", f"+8210{mid4}{last}",
        f"011-{mid3}-{last}", f"{area}-{mid3}-{last}", f"{area}-{mid4}-{last}", f"({area}) {mid3}-{last}",
        f"{area}){mid4}-{last}", f"{area}) {mid3} - {last}", f"070-{mid4}-{last}", f"0505-{mid3}-{last}",
        f"+82-{area[1:]}-{mid4}-{last}", f"{area}{mid4}{last}",
    ]
    value = r.choice(forms)
    t = r.choice(["연락처: {}", "문의 {}", "담당자 {name}({})", "전화번호는 {}입니다.", "{}로 연락 바랍니다.",
                  "휴대폰 {}",
                  "HP: {}", "Tel. {}", "{name} 주무관 {} 내선 없음", "긴급 연락처 {} ({name})"])
    return Plant("phone", "", value, t.format(value, name=r.choice(NAMES)))


def gen_email(r: random.Random) -> Plant:
    local = r.choice(ROMAN) + r.choice(["", ".", "_", "-"]) + r.choice(ROMAN + [digits(r, 2), digits(r, 4)])
    domain = r.choice(["naver.com", "gmail.com", "daum.net", "hanmail.net", "korea.kr", "assembly.go.kr",
                       "moel.go.kr", "snu.ac.kr", "samsung.co.kr", "example-corp.com", "mail.kisa.or.kr"])
    value = f"{local}@{domain}"
    t = r.choice(["이메일: {}", "({})", "문의는 {}로 보내 주십시오.", "E-mail {}", "담당 {name} <{}>"])
    return Plant("email", "", value, t.format(value, name=r.choice(NAMES)))


BANKS = [("KB국민은행", [6, 2, 6]), ("국민", [6, 2, 6]), ("신한은행", [3, 3, 6]), ("우리은행", [4, 3, 6]),
         ("우리", [4, 3, 6]), ("하나은행", [3, 6, 5]), ("NH농협", [3, 4, 4, 2]), ("농협", [3, 2, 6]),
         ("IBK기업은행", [3, 6, 2, 3]), ("기업", [3, 6, 2, 3]), ("카카오뱅크", [4, 2, 7]), ("토스뱅크", [4, 4, 4]),
         ("우체국", [6, 2, 6]), ("SC제일은행", [3, 2, 6]), ("새마을금고", [4, 2, 6, 1]), ("케이뱅크", [3, 3, 6])]


def gen_account(r: random.Random) -> Plant:
    bank, sizes = r.choice(BANKS)
    d = str(r.randint(1, 9)) + digits(r, sum(sizes) - 1)
    value = d if r.random() < 0.25 else group(d, sizes, "-")
    name = r.choice(NAMES)
    t = r.choice(["입금계좌: {bank} {v} (예금주 {name})", "{bank} {v} 예금주 {name}", "{bank} 계좌 {v}로 송금",
                  "환불 계좌번호 {v} ({bank})", "{bank} {v}", "통장 사본({bank} {v}) 제출", "계좌번호: {v}"])
    return Plant("account", "", value, t.format(bank=bank, v=value, name=name))


def gen_card(r: random.Random) -> Plant:
    kind = r.random()
    if kind < 0.35:
        d, sizes = luhn_complete("4" + digits(r, 14)), [4, 4, 4, 4]
    elif kind < 0.6:
        d, sizes = luhn_complete(str(r.randint(51, 55)) + digits(r, 13)), [4, 4, 4, 4]
    elif kind < 0.7:
        d, sizes = luhn_complete(r.choice(["34", "37"]) + digits(r, 12)), [4, 6, 5]
    elif kind < 0.85:
        d, sizes = luhn_complete("9" + digits(r, 14)), [4, 4, 4, 4]  # Korean domestic (BC etc.)
    else:
        d, sizes = luhn_complete("35" + digits(r, 13)), [4, 4, 4, 4]
    value = group(d, sizes, r.choice(["-", " ", ""]))
    t = r.choice(["카드번호 {}", "신용카드 {}로 결제", "{} (유효기간 12/27)", "결제 수단: {}", "번호 {} 확인", "{}"])
    return Plant("card", "", value, t.format(value))


def gen_passport(r: random.Random) -> Plant:
    letter = r.choice("MMMMSRGD")
    if r.random() < 0.5:
        value = letter + digits(r, 8)
        t = r.choice(["여권번호 {}", "여권({}) 사본", "Passport No. {}", "여권 번호: {}"])
    else:
        value = letter + digits(r, 3) + r.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") + digits(r, 4)
        t = r.choice(["여권번호 {}", "{} 소지자", "신청인 여권 {}", "번호 {} 확인"])
    return Plant("passport", "", value, t.format(value))


def gen_driver_license(r: random.Random) -> Plant:
    code = r.choice([str(c) for c in range(11, 27)] + ["28"])
    names = {"11": "서울", "12": "부산", "13": "경기", "14": "강원", "22": "대구", "23": "인천", "24": "광주"}
    rest = [digits(r, 2), digits(r, 6), digits(r, 2)]
    fmt = r.random()
    if fmt < 0.5 or code not in names:
        value = f"{code}-{'-'.join(rest)}"
    elif fmt < 0.8:
        value = f"{names[code]} {'-'.join(rest)}"
    else:
        value = f"{names[code]}{'-'.join(rest)}"
    if r.random() < 0.15:
        value = code + "".join(rest)
        t = r.choice(["운전면허번호 {}", "면허번호: {}"])
    else:
        t = r.choice(["운전면허번호: {}", "면허번호 {}", "{} (1종 보통)", "운전면허증({}) 사본"])
    return Plant("driver_license", "", value, t.format(value))


IP_CUES = ["접속 IP {v}", "IP 주소: {v}", "서버 주소 {v}", "서버 {v} 차단", "원격지 {v}", "접속지: {v}", "게이트웨이 {v}",
           "DNS {v}", "호스트 {v}", "내부망 {v} 대역", "사설 IP {v}", "VPN 서버({v})"]
IP_NO_CUE = ["{v}에서 로그인 시도", "{v}", "({v})"]
INTERNAL4 = [ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8",
                                                "240.0.0.0/4")]


def _netmask(n: int) -> bool:
    bits = f"{n:032b}"
    return bits.startswith("11111111") and "01" not in bits


def gen_ip(r: random.Random) -> Plant:
    """Public IPv4/IPv6, and private/loopback/reserved ones (detected by default since issue 13)."""
    x = r.random()
    if x < 0.35:
        scope = "public"
        while not (addr := ipaddress.IPv4Address(r.getrandbits(32))).is_global:
            pass
    elif x < 0.45:
        scope, addr = "public", ipaddress.IPv6Address((0x24 << 120) | r.getrandbits(120))
    elif x < 0.9:
        scope = "internal"
        if r.random() < 0.1:
            addr = ipaddress.IPv4Address("127.0.0.1")
        else:
            net = r.choice(INTERNAL4)
            while _netmask(int(addr := net[r.randrange(net.num_addresses)])):
                pass
    else:
        scope = "internal"
        g = [f"{r.getrandbits(16):x}" for _ in range(3)]  # link-local, unique local (fd00::/8), loopback
        addr = ipaddress.IPv6Address(r.choice([f"fe80::{g[0]}:{g[1]}", f"fd{r.getrandbits(8):02x}:{g[1]}::{g[2]}", "::1"]))
        assert not addr.is_global
    value = str(addr)
    # short ones need a cue: 1.2.3.4 could be a section number, ab::cd hex
    short = len(re.sub(r"\D", "", value)) < 7 if addr.version == 4 else sum(1 for g in value.split(":") if g) < 3
    cue = short or r.random() < 0.7
    template = r.choice(IP_CUES if cue else IP_NO_CUE)
    return Plant("ip", f"{scope} IPv{addr.version}, {'cue' if cue else 'no cue'}", value, template.format(v=value))


GENERATORS = {
    "rrn": lambda r: gen_id(r, False), "arn": lambda r: gen_id(r, True), "phone": gen_phone,
    "email": gen_email, "account": gen_account, "card": gen_card, "passport": gen_passport,
    "driver_license": gen_driver_license, "ip": gen_ip,
}


# ---- look-alikes: (category, value, piece) -----------------------------------------------------------
def luhn_invalid_16(r: random.Random) -> str:
    d = luhn_complete(r.choice("45") + digits(r, 14))
    return d[:-1] + str((int(d[-1]) + r.randint(1, 9)) % 10)


def invalid_date_13(r: random.Random) -> str:
    yy = f"{r.randint(0, 99):02d}"
    mmdd = r.choice([f"{r.randint(13, 99):02d}{r.randint(1, 28):02d}", f"00{r.randint(1, 28):02d}",
                     f"{r.randint(1, 12):02d}{r.randint(32, 99):02d}", f"{r.randint(1, 12):02d}00"])
    return yy + mmdd + str(r.randint(1, 4)) + digits(r, 6)


def bad_check_13(r: random.Random) -> str:
    while True:
        date, g = birth(r, r.random() < 0.5)
        if int(date[:2]) < 20 or g in "1256":  # pre-2020 numbers, which carry a check digit
            break
    body = date + g + digits(r, 5)
    good = {rrn_check(body, False)} | ({rrn_check(body, True)} if g in "5678" else set())
    return body + r.choice([c for c in "0123456789" if c not in good])


def lookalike(r: random.Random) -> tuple[str, str, str]:
    ri = r.randint
    y, m, d = ri(1948, 2024), ri(1, 12), ri(1, 28)
    cat = r.choice(["date", "law", "case", "bill", "amount", "year", "stat", "isbn", "order", "order_phone_like",
                    "luhn_invalid_16", "invalid_date_13", "bad_check_13", "postal", "time", "business_phone",
                    "corp_number", "page", "version", "section", "netmask", "bank_words_no_account",
                    "no_context_digits", "doc_number"])
    if cat == "date":
        v = r.choice([f"{y}. {m}. {d}.", f"{y}.{m:02d}.{d:02d}", f"{y}-{m:02d}-{d:02d}", f"{y}년 {m}월 {d}일",
                      f"{y}{m:02d}{d:02d}", f"'{y % 100:02d}. {m}. {d}.", f"{y}/{m:02d}/{d:02d}",
                      f"{y}.{m:02d}.{d:02d}.~{y}.{m:02d}.{d:02d}."])
        t = r.choice(["발의연월일 : {}", "{} 시행", "{}부터 적용한다.", "(작성일 {})"])
    elif cat == "law":
        v = r.choice([f"제{ri(1, 99)}조 제{ri(1, 9)}항", f"제{ri(1, 99)}조제{ri(1, 9)}항제{ri(1, 9)}호",
                      f"법률 제{ri(1000, 19999)}호", f"대통령령 제{ri(10000, 34999)}호", f"부칙 제{ri(1, 9)}조"])
        t = r.choice(["{}에 따른다.", "({})", "{} 중 다음과 같이 개정한다."])
    elif cat == "case":
        v = r.choice([f"{y}가합{ri(100, 99999)}", f"{y}도{ri(100, 9999)}", f"{y}헌마{ri(1, 999)}",
                      f"{y}구합{ri(1000, 99999)}", f"대법원 {y}. {m}. {d}. 선고 {y}다{ri(1000, 99999)} 판결"])
        t = r.choice(["서울중앙지방법원 {}", "{} 사건", "(사건번호 {})"])
    elif cat == "bill":
        v = r.choice([f"의안번호 {ri(1800000, 2199999)}", f"의안번호 {ri(1000, 9999)}",
                      f"의 안 번 호 {ri(1000, 9999)}"])
        t = r.choice(["{}", "({})", "{} 지방공무원법 일부개정법률안"])
    elif cat == "amount":
        v = r.choice([f"{ri(1000, 99999999):,}원", f"{ri(10 ** 9, 10 ** 13):,}원", "3억 5천만 원",
                      f"{ri(10 ** 9, 10 ** 13)}원", f"금 {ri(10 ** 5, 10 ** 8):,}원정",
                      f"{ri(1000, 999999):,}천원", f"{ri(10 ** 9, 10 ** 13)} 원"])
        t = r.choice(["총 {}의 예산", "{}을 지급한다.", "추가재정소요는 {}으로 추계된다."])
    elif cat == "year":
        v = r.choice([f"{y}년", f"{y}", f"{y}~{y + 4}년", f"{y}-{y + 5}"])
        t = r.choice(["{} 기준", "{}에 발표된 자료", "({} 평균)"])
    elif cat == "stat":
        v = r.choice([f"{ri(1000, 999999):,}명", f"{ri(1, 99)}.{ri(0, 9)}%",
                      f"{ri(1, 30)}.{ri(0, 9)}배", f"{ri(10 ** 6, 10 ** 9):,}",
                      f"0.{ri(1, 999):03d}", f"{ri(1, 9)}.{ri(0, 9)}  {ri(1, 9)}.{ri(0, 9)}  {ri(1, 9)}.{ri(0, 9)}",
                      f"{ri(100, 999)} {ri(1000, 9999)} {ri(1000, 9999)}",
                      f"{ri(10 ** 10, 10 ** 13)}"])
        t = r.choice(["자료: 통계청, {}", "{}로 집계되었다.", "합계 {}"])
    elif cat == "isbn":
        v = r.choice([f"ISBN 978-89-{ri(1000, 9999)}-{ri(100, 999)}-{ri(0, 9)}",
                      f"ISBN 97889{digits(r, 8)}", f"ISBN 89-{ri(1000, 9999)}-{ri(100, 999)}-{ri(0, 9)}",
                      f"979-11-{ri(1000, 9999)}-{ri(100, 999)}-{ri(0, 9)}"])
        t = r.choice(["{}", "(발행 {})", "도서 {} 참고"])
    elif cat == "order":
        v = r.choice([f"주문번호 {y}{m:02d}{d:02d}{digits(r, 8)}", f"주문번호 {y}{m:02d}{d:02d}-{digits(r, 6)}",
                      f"송장번호 {digits(r, 12)}", f"접수번호 {y}-{digits(r, 7)}", f"관리번호 {y}{digits(r, 6)}"])
        t = r.choice(["{}", "{} 확인 바랍니다.", "({})"])
    elif cat == "luhn_invalid_16":
        dd = luhn_invalid_16(r)
        v = r.choice([group(dd, [4, 4, 4, 4], "-"), group(dd, [4, 4, 4, 4], " "), dd])
        t = r.choice(["일련번호 {}", "관리번호: {}", "카드 번호가 맞지 않습니다({})", "등록번호 {}"])
    elif cat == "invalid_date_13":
        dd = invalid_date_13(r)
        v = r.choice([f"{dd[:6]}-{dd[6:]}", dd])
        t = r.choice(["번호 {}", "{} 확인", "등록번호 {} 오류"])
    elif cat == "postal":
        v = r.choice([f"우편번호 {digits(r, 5)}", f"(우) {ri(100, 999)}-{ri(100, 999)}", f"({digits(r, 5)})"])
        t = r.choice(["{} 서울특별시 영등포구 의사당대로 1", "주소: {}"])
    elif cat == "time":
        v = r.choice([f"{ri(0, 23):02d}:{ri(0, 59):02d}", f"오전 {ri(1, 11)}:00",
                      f"{ri(9, 12)}:30~{ri(13, 18)}:00", f"{ri(0, 23):02d}:{ri(0, 59):02d}:{ri(0, 59):02d}"])
        t = r.choice(["회의는 {}에 시작한다.", "접수 시간 {}", "({})"])
    elif cat == "business_phone":
        v = r.choice([f"1588-{digits(r, 4)}", f"1577-{digits(r, 4)}", f"1644-{digits(r, 4)}",
                      f"080-{ri(200, 999)}-{digits(r, 4)}",
                      f"1899-{digits(r, 4)}", "110", "120", "114"])
        t = r.choice(["고객센터 {}", "대표번호 {}", "콜센터({})로 문의"])
    elif cat == "corp_number":
        v = r.choice([f"법인등록번호 110111-{digits(r, 7)}",
                      f"사업자등록번호 {ri(100, 999)}-{ri(10, 99)}-{digits(r, 5)}",
                      f"사업자등록번호: {ri(100, 999)}{ri(10, 99)}{digits(r, 5)}"])
        t = r.choice(["{}", "(주)한국 {}", "{} 대표이사"])
    elif cat == "page":
        v = f"- {ri(1, 40)} -"
        t = "{}"
    elif cat == "version":
        v = r.choice([f"버전 {ri(1, 9)}.{ri(0, 9)}.{ri(0, 9)}.{ri(0, 9)}", f"v{ri(1, 9)}.{ri(0, 20)}.{ri(0, 9)}",
                      f"{ri(1, 9)}.{ri(1, 9)}.{ri(1, 9)} 항목"])
        t = r.choice(["{}", "소프트웨어 {} 배포", "({})"])
    elif cat == "bank_words_no_account":
        v = r.choice([f"국민 1인당 평균 예금액은 {ri(10 ** 6, 10 ** 8):,}원",
                      f"은행 수 {ri(10, 20)}개, 점포 {ri(1000, 9999):,}개",
                      f"우리나라 {y}년 GDP {ri(1000, 2500):,}조 원", f"하나의 계좌에 {y}. {m}. {d}. 입금",
                      f"은행법 제{ri(1, 99)}조 제{ri(1, 9)}항", f"계좌 개설 건수 {ri(10 ** 6, 10 ** 9):,}건",
                      f"통장 {ri(10 ** 10, 10 ** 12)}원 잔액", f"은행 대출금리 {ri(1, 9)}.{ri(0, 99):02d}%"])
        t = "{}"
    elif cat == "netmask":  # a mask addresses no host
        v = r.choice(["255.255.255.0", "255.255.0.0", "255.255.255.128", "255.255.255.192", "255.255.240.0",
                      "255.0.0.0", "255.255.255.252"])
        t = r.choice(["서브넷 마스크 {}", "넷마스크: {}", "마스크 {} 적용"])
    elif cat == "section":  # section and item numbers of four levels (fewer than 7 digits)
        v = f"{ri(1, 9)}.{ri(1, 9)}.{ri(1, 9)}.{ri(1, 9)}"
        t = r.choice(["{} 항목 참조", "{}절에 따른다", "({})"])
    elif cat == "bad_check_13":  # a real birth date, but a check digit no 주민/외국인등록번호 rule gives
        dd = bad_check_13(r)
        v = r.choice([dd, f"{dd[:6]} {dd[6:]}"])
        t = r.choice(["번호 {}", "{} 확인", "합계 {}", "({})"])
    elif cat == "order_phone_like":  # order and tracking numbers shaped like a landline number
        v = r.choice([f"주문번호 0{r.choice(['2', '31', '51', '62'])}{ri(2, 9)}{digits(r, 6)}",
                      f"송장번호 0{r.choice(['31', '42', '53'])}{ri(200, 999)}{digits(r, 4)}",
                      f"접수번호 0{ri(2, 6)}{digits(r, 9)}"])
        t = r.choice(["{}", "{} 확인 바랍니다.", "({})"])
    elif cat == "no_context_digits":  # account- or RRN-shaped, but nothing says so
        v = r.choice([f"{ri(100, 999)}-{ri(100, 999)}-{digits(r, 6)}", f"{digits(r, 12)}",
                      f"{ri(1000, 9999)}-{ri(100, 999)}-{digits(r, 6)}", f"{digits(r, 11)}"])
        t = r.choice(["문서번호 {}", "고유번호 {}", "({})"])
    else:  # doc_number
        v = r.choice([f"제{y}-{ri(1, 9999)}호", f"공고 제{y}-{ri(1, 999)}호", f"고시 제{y}-{ri(1, 99)}호"])
        t = r.choice(["행정안전부 {}", "{}에 따라", "({})"])
    return cat, v, t.format(v)



# ---- carriers -----------------------------------------------------------------------------------------
_PII_LIKE = re.compile(r"@|0\d{1,2}\)?[ -]*\d{3,4}[ -]*\d{4}")  # a carrier's own e-mail or phone number
_SENTENCE = re.compile(r"(?<=[.?!])\s+|\n+")
_HANGUL = re.compile(r"[가-힣]")


def _texts(path: Path, columns: list[str]):
    if path.suffix == ".txt":
        yield path.read_text(encoding="utf-8")
    elif path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            cols = [c for c in columns if c in (reader.fieldnames or [])]
            if not cols:
                sys.exit(f"{path}: no column {columns} (it has {reader.fieldnames}); name one with --text-column")
            for row in reader:
                yield from (row[c] for c in cols if row[c])
    elif path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            for line in f:
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(obj, dict):
                    yield from (obj[c] for c in columns if isinstance(obj.get(c), str))
    else:
        sys.exit(f"{path}: a carrier corpus is .txt, .csv or .jsonl")


def read_carriers(paths: list[Path], columns: list[str]) -> list[str]:
    """Real Korean sentences of 5-300 characters with no e-mail or phone-like number of their own,
    and a place to plant into."""
    out = []
    for path in paths:
        n = len(out)
        for text in _texts(path, columns):
            out += [s for s in (x.strip() for x in _SENTENCE.split(text))
                    if 5 <= len(s) <= 300 and _HANGUL.search(s) and not _PII_LIKE.search(s) and slots(s.split(" "))]
        if len(out) == n:
            print(f"warning: no carrier sentence in {path}", file=sys.stderr)
    if not out:
        sys.exit("no carrier sentences")
    return out


def slots(words: list[str]) -> list[int]:
    """Word boundaries (0: before the first word) where neither neighbouring word is a number: a
    planted value must not run into a number of the carrier (12 8303136342340 reads as one)."""
    return [i for i in range(len(words) + 1)
            if (i == 0 or not words[i - 1][-1:].isdigit()) and (i == len(words) or not words[i][:1].isdigit())]


def plant(carrier: str, piece: str, r: random.Random) -> tuple[str, int]:
    """carrier with piece inserted at one of its slots (start, between two words, or the end);
    returns the text and where piece starts in it."""
    words = carrier.split(" ")
    at = r.choice(slots(words))
    head, tail = " ".join(words[:at]), " ".join(words[at:])
    start = len(head) + (1 if head else 0)
    return (head + " " if head else "") + piece + (" " + tail if tail else ""), start


def filler_lines() -> list[str]:
    lines = []
    for f in sorted(GOV.glob("*.txt")):
        for line in f.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if len(line) >= 15 and not _PII_LIKE.search(line):
                lines.append(line)
    return lines


class Span(NamedTuple):
    label: str
    form: str
    start: int
    end: int
    is_pii: bool
    value: str


def pii_item(r: random.Random, i: int) -> Plant:
    """The i-th planted PII value: the kinds in turn."""
    kinds = list(GENERATORS)
    return GENERATORS[kinds[i % len(kinds)]](r)


def lookalike_item(r: random.Random) -> Plant:
    cat, value, piece = lookalike(r)
    return Plant(cat, "", value, piece)


def build_real(n: int, seed: int, carriers: list[str]) -> list[tuple[str, list[Span]]]:
    """n real carrier sentences (drawn with replacement), each with one item planted in it: PII
    values and look-alikes alternately."""
    r = random.Random(seed)
    out = []
    for i in range(n):
        is_pii = i % 2 == 0
        p = pii_item(r, i // 2) if is_pii else lookalike_item(r)
        text, at = plant(r.choice(carriers), p.piece, r)
        s = at + p.piece.index(p.value)
        out.append((text, [Span(p.label, p.form, s, s + len(p.value), is_pii, p.value)]))
    return out


def build_generated(n: int, seed: int) -> list[tuple[str, list[Span]]]:
    """The generator-only mode: in each sentence a PII value half the time, one look-alike and 30% a
    second one, side by side (so a cue may spill onto a neighbouring number), 30% after a real bill
    line."""
    r = random.Random(seed)
    fill = filler_lines()
    out = []
    for i in range(n):
        parts, spans = [], []
        if r.random() < 0.3:
            parts.append(r.choice(fill) + " ")
        items = [(True, pii_item(r, i))] if r.random() < 0.5 else []
        items += [(False, lookalike_item(r)) for _ in range(2 if r.random() < 0.3 else 1)]
        r.shuffle(items)
        for is_pii, p in items:
            at = sum(map(len, parts)) + p.piece.index(p.value)
            spans.append(Span(p.label, p.form, at, at + len(p.value), is_pii, p.value))
            parts.append(p.piece + r.choice([" ", ". ", ", ", "\n"]))
        out.append(("".join(parts), spans))
    return out


# ---- measures -------------------------------------------------------------------------------------------
_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212]")


def evaluate(corpus: list[tuple[str, list[Span]]], det: Detector, scrubber: Scrubber) -> bool:
    planted, hit, leaked = Counter(), Counter(), Counter()
    by_form, by_form_hit = Counter(), Counter()
    valid_ids = valid_left = 0
    la_total, la_hit = Counter(), Counter()
    spurious, misses, fps = 0, defaultdict(list), defaultdict(list)
    for text, spans in corpus:
        found = det.find(text)
        out, _ = scrubber.scrub(text)
        flat = None
        for sp in spans:
            if sp.is_pii:
                ok = any(f.kind == sp.label and f.start <= sp.start and sp.end <= f.end for f in found)
                planted[sp.label] += 1
                hit[sp.label] += ok
                by_form[sp.label, sp.form] += 1
                by_form_hit[sp.label, sp.form] += ok
                if not ok and len(misses[sp.label]) < 5:
                    misses[sp.label].append(text[max(0, sp.start - 20):sp.end + 5])
                leaked[sp.label] += sp.value in out
                d = re.sub(r"\D", "", sp.value)
                if sp.label in ("rrn", "arn") and len(d) == 13 and valid_id(d):
                    valid_ids += 1
                    flat = _SEPARATORS.sub("", out) if flat is None else flat
                    valid_left += d in flat
            else:
                la_total[sp.label] += 1
                touched = [f for f in found if f.start < sp.end and sp.start < f.end]
                if touched:
                    la_hit[sp.label] += 1
                    if len(fps[sp.label]) < 5:
                        fps[sp.label].append((sp.value, touched[0].kind))
        # detections that overlap nothing planted: in the real carrier text itself
        spurious += sum(1 for f in found if not any(f.start < s.end and s.start < f.end for s in spans))

    print("\nrecall per type (found with the right type and span)")
    for k in KINDS:
        if planted[k]:
            print(f"  {k:15s} {hit[k] / planted[k]:.4f}  ({hit[k]}/{planted[k]}; leaked verbatim {leaked[k]})")
    total, found_total = sum(planted.values()), sum(hit.values())
    print(f"  {'overall':15s} {found_total / total:.4f}  ({found_total}/{total}; "
          f"leaked verbatim {sum(leaked.values())})")
    print("  by form:")
    for (k, form), n in sorted(by_form.items()):
        if k in ("rrn", "arn", "ip"):
            print(f"    {k:4s} {form:28s} {by_form_hit[k, form] / n:.4f}  ({by_form_hit[k, form]}/{n})")
    for k, ex in misses.items():
        print(f"  missed {k}: {ex}")
    print(f"\nvalid RRNs left after scrubbing: {valid_left} "
          f"(of {valid_ids} planted 주민/외국인등록번호 with a real date and check digit)")

    print("\nfalse positives on look-alikes (touched by a detection)")
    for c in sorted(la_total):
        rate = la_hit[c] / la_total[c]
        print(f"  {c:22s} {rate:.4f}  ({la_hit[c]}/{la_total[c]}){'  > 0.5%' if rate > 0.005 else ''}")
    fp = sum(la_hit.values()) / sum(la_total.values())
    print(f"  {'overall':22s} {fp:.4f}  ({sum(la_hit.values())}/{sum(la_total.values())})")
    for c, ex in fps.items():
        print(f"  FP {c}: {ex}")
    print(f"  detections in the carrier text outside anything planted: {spurious} in {len(corpus)} sentences")

    worst = min(hit[k] / planted[k] for k in planted)
    ok = worst >= 0.99 and valid_left == 0 and fp <= 0.01
    print(f"\ntarget recall >= 0.99 for every type (lowest {worst:.4f}), 0 valid RRNs left ({valid_left}), "
          f"FP <= 1% ({fp:.4f}): {'met' if ok else 'NOT met'}")
    return ok


def speed(corpus: list[tuple[str, list[Span]]], scrubber: Scrubber) -> None:
    """Documents of 10 test sentences, and the real bills (long documents)."""
    docs = ["\n".join(t for t, _ in corpus[i:i + 10]) for i in range(0, len(corpus), 10)]
    bills = [p.read_text(encoding="utf-8") for p in sorted(GOV.glob("*.txt"))] * 30
    for name, batch in (("10-sentence docs", docs), ("bills (ko-gov-sample x30)", bills)):
        mb = sum(len(d.encode("utf-8")) for d in batch) / 1e6
        t = time.perf_counter()
        for d in batch:
            scrubber.scrub(d)
        dt = time.perf_counter() - t
        print(f"speed, {name}: {len(batch) / dt:,.0f} docs/s, {mb / dt:.1f} MB/s "
              f"({len(batch)} docs, {mb:.1f} MB, one core)")
    step = PIIStep(PIISettings(salt="bench-salt"))  # the datatrove step: + sha256 and stats per document
    batch = [Document(text=d, id=str(i), metadata={"sha256": ""}) for i, d in enumerate(docs)]
    t = time.perf_counter()
    for _ in step.run(iter(batch)):
        pass
    print(f"speed, PIIStep on the 10-sentence docs: {len(batch) / (time.perf_counter() - t):,.0f} docs/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, action="append", default=[],
                    help="real carrier text (.txt/.csv/.jsonl), repeatable; default: the repo's examples/data")
    ap.add_argument("--text-column", action="append", default=[],
                    help="csv column / jsonl key holding text, repeatable (default text; Q and A for the default)")
    ap.add_argument("--generated", action="store_true", help="generator-only mode: no real carrier sentences")
    ap.add_argument("--sentences", type=int, default=60_000, help="test sentences (one planted item each)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t0 = time.time()
    if args.generated:
        corpus = build_generated(args.sentences, args.seed)
        print(f"generated {len(corpus)} sentences in {time.time() - t0:.1f}s")
    else:
        paths = args.corpus or [CHAT, *sorted(GOV.glob("*.txt"))]
        columns = args.text_column or (["text"] if args.corpus else ["Q", "A"])
        carriers = read_carriers(paths, columns)
        corpus = build_real(args.sentences, args.seed, carriers)
        print(f"{len(carriers)} real carrier sentences from {', '.join(p.name for p in paths[:3])}"
              f"{' ...' if len(paths) > 3 else ''}; {len(corpus)} test sentences planted in {time.time() - t0:.1f}s")
    scrubber = Scrubber(PIISettings(salt="bench-salt"))
    ok = evaluate(corpus, Detector(), scrubber)
    print()
    speed(corpus, scrubber)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
