#!/usr/bin/env python
"""PII detector benchmark: recall on planted PII, false positives on look-alike numbers, speed.

Generates (seeded) Korean sentences, each with one planted PII value in one of its
common spellings, or one look-alike that must survive (dates, 제3조 제2항, 2010가합12345,
의안번호, amounts, years, statistics, ISBNs, order numbers, Luhn-invalid 16-digit and
invalid-date 13-digit numbers, postal codes, times, business numbers, 법인/사업자등록번호,
numbers next to bank words ...). Real bill text from the sample corpus is mixed in as
filler. The check digits here are computed independently of data_prep's own.

  recall      planted values found with the right type and a span covering them
  leaked      planted values still present verbatim after pseudonymisation
  FP rate     look-alikes touched by any detection (target <= 1%)
  speed       docs/s and MB/s of the full scrub (detect + fakes) on one core

Usage: python scripts/bench_pii.py [--sentences 60000] [--seed 0]
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from datatrove.data import Document  # noqa: E402

from data_prep.corpus.pii import KINDS, Detector, PIISettings, PIIStep, Scrubber  # noqa: E402

NAMES = ["홍길동", "김철수", "이영희", "박민수", "최지우", "정다은", "강호동", "윤서연", "장민호", "임수정"]
ROMAN = ["hong", "kim", "lee", "park", "choi", "jung", "kang", "yoon", "jang", "lim", "gildong", "minsu", "jiwoo"]


# ---- independent check digits ------------------------------------------------------------------
def rrn_check(d12: str, foreign: bool) -> str:
    s = sum(int(c) * w for c, w in zip(d12, [2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5]))
    return str(((13 if foreign else 11) - s % 11) % 10)


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


# ---- planted PII: (kind, value, sentence) ---------------------------------------------------------
def birth(r: random.Random, foreign: bool) -> tuple[str, str]:
    year = r.choice([r.randint(1940, 2019)] * 19 + [r.randint(2020, 2024)])  # 5% born since 2020
    month, day = r.randint(1, 12), r.randint(1, 28)
    g = (("5", "6") if year < 2000 else ("7", "8")) if foreign else (("1", "2") if year < 2000 else ("3", "4"))
    return f"{year % 100:02d}{month:02d}{day:02d}", r.choice(g)


def gen_rrn(r: random.Random, foreign: bool) -> tuple[str, str]:
    date, g = birth(r, foreign)
    body = date + g + digits(r, 5)
    check = rrn_check(body, foreign)
    born_2020 = g in "3478" and int(date[:2]) >= 20
    if born_2020 or r.random() < 0.05:  # no check digit since 2020; typos
        check = r.choice("0123456789")
    d = body + check
    fmt = r.random()
    if fmt < 0.70:
        value = f"{d[:6]}-{d[6:]}"
    elif fmt < 0.75:
        value = f"{d[:6]} - {d[6:]}"
    elif fmt < 0.90:
        value = d
    else:
        value = f"{d[:6]}-{d[6]}******"
    kind = "arn" if foreign else "rrn"
    if foreign:
        ctx = ["외국인등록번호: {v}", "외국인등록번호 {v} 소지자", "등록번호({v})", "외국인 근로자 {v}의 체류"]
    else:
        ctx = ["주민등록번호: {v}", "주민번호 {v}", "생년월일 및 주민등록번호 {v}", "주민등록번호({v})를 기재"]
    bare = ["{name}({v}) 신청인", "성명 {name} {v}", "{name}, {v}, 서울시 거주"]
    t = r.choice(ctx) if r.random() < 0.8 else r.choice(bare)  # 20% with no context word at all
    return kind, value, t.format(v=value, name=r.choice(NAMES))


def gen_phone(r: random.Random) -> tuple[str, str, str]:
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
    return "phone", value, t.format(value, name=r.choice(NAMES))


def gen_email(r: random.Random) -> tuple[str, str, str]:
    local = r.choice(ROMAN) + r.choice(["", ".", "_", "-"]) + r.choice(ROMAN + [digits(r, 2), digits(r, 4)])
    domain = r.choice(["naver.com", "gmail.com", "daum.net", "hanmail.net", "korea.kr", "assembly.go.kr",
                       "moel.go.kr", "snu.ac.kr", "samsung.co.kr", "example-corp.com", "mail.kisa.or.kr"])
    value = f"{local}@{domain}"
    t = r.choice(["이메일: {}", "({})", "문의는 {}로 보내 주십시오.", "E-mail {}", "담당 {name} <{}>"])
    return "email", value, t.format(value, name=r.choice(NAMES))


BANKS = [("KB국민은행", [6, 2, 6]), ("국민", [6, 2, 6]), ("신한은행", [3, 3, 6]), ("우리은행", [4, 3, 6]),
         ("우리", [4, 3, 6]), ("하나은행", [3, 6, 5]), ("NH농협", [3, 4, 4, 2]), ("농협", [3, 2, 6]),
         ("IBK기업은행", [3, 6, 2, 3]), ("기업", [3, 6, 2, 3]), ("카카오뱅크", [4, 2, 7]), ("토스뱅크", [4, 4, 4]),
         ("우체국", [6, 2, 6]), ("SC제일은행", [3, 2, 6]), ("새마을금고", [4, 2, 6, 1]), ("케이뱅크", [3, 3, 6])]


def gen_account(r: random.Random) -> tuple[str, str, str]:
    bank, sizes = r.choice(BANKS)
    d = str(r.randint(1, 9)) + digits(r, sum(sizes) - 1)
    value = d if r.random() < 0.25 else group(d, sizes, "-")
    name = r.choice(NAMES)
    t = r.choice(["입금계좌: {bank} {v} (예금주 {name})", "{bank} {v} 예금주 {name}", "{bank} 계좌 {v}로 송금",
                  "환불 계좌번호 {v} ({bank})", "{bank} {v}", "통장 사본({bank} {v}) 제출", "계좌번호: {v}"])
    return "account", value, t.format(bank=bank, v=value, name=name)


def gen_card(r: random.Random) -> tuple[str, str, str]:
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
    return "card", value, t.format(value)


def gen_passport(r: random.Random) -> tuple[str, str, str]:
    letter = r.choice("MMMMSRGD")
    if r.random() < 0.5:
        value = letter + digits(r, 8)
        t = r.choice(["여권번호 {}", "여권({}) 사본", "Passport No. {}", "여권 번호: {}"])
    else:
        value = letter + digits(r, 3) + r.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") + digits(r, 4)
        t = r.choice(["여권번호 {}", "{} 소지자", "신청인 여권 {}", "번호 {} 확인"])
    return "passport", value, t.format(value)


def gen_driver_license(r: random.Random) -> tuple[str, str, str]:
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
    return "driver_license", value, t.format(value)


def gen_ip(r: random.Random) -> tuple[str, str, str]:
    while True:
        if r.random() < 0.9:
            addr = ipaddress.IPv4Address(r.getrandbits(32))
        else:
            addr = ipaddress.IPv6Address((0x24 << 120) | r.getrandbits(120))
        if addr.is_global and (addr.version == 6 or len(re.sub(r"\D", "", str(addr))) >= 7 or r.random() < 0.3):
            break
    value = str(addr)
    if addr.version == 4 and len(re.sub(r"\D", "", value)) < 7:
        t = "접속 IP {}"  # short addresses appear with context
    else:
        t = r.choice(["접속 IP {}", "IP 주소: {}", "{}에서 로그인 시도", "서버 {} 차단", "원격지 {}"])
    return "ip", value, t.format(value)


GENERATORS = {
    "rrn": lambda r: gen_rrn(r, False), "arn": lambda r: gen_rrn(r, True), "phone": gen_phone,
    "email": gen_email, "account": gen_account, "card": gen_card, "passport": gen_passport,
    "driver_license": gen_driver_license, "ip": gen_ip,
}


# ---- look-alikes: (category, value, sentence) -------------------------------------------------------
def luhn_invalid_16(r: random.Random) -> str:
    d = luhn_complete(r.choice("45") + digits(r, 14))
    return d[:-1] + str((int(d[-1]) + r.randint(1, 9)) % 10)


def invalid_date_13(r: random.Random) -> str:
    yy = f"{r.randint(0, 99):02d}"
    mmdd = r.choice([f"{r.randint(13, 99):02d}{r.randint(1, 28):02d}", f"00{r.randint(1, 28):02d}",
                     f"{r.randint(1, 12):02d}{r.randint(32, 99):02d}", f"{r.randint(1, 12):02d}00"])
    return yy + mmdd + str(r.randint(1, 4)) + digits(r, 6)


def lookalike(r: random.Random) -> tuple[str, str, str]:
    ri = r.randint
    y, m, d = ri(1948, 2024), ri(1, 12), ri(1, 28)
    cat = r.choice(["date", "law", "case", "bill", "amount", "year", "stat", "isbn", "order", "luhn_invalid_16",
                    "invalid_date_13", "postal", "time", "business_phone", "corp_number", "page", "version",
                    "bank_words_no_account", "private_ip", "no_context_digits", "doc_number"])
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
    elif cat == "private_ip":  # ip_public_only: internal addresses identify no one
        v = r.choice([f"192.168.{ri(0, 255)}.{ri(1, 254)}", f"10.{ri(0, 255)}.{ri(0, 255)}.{ri(1, 254)}",
                      "127.0.0.1", f"172.{ri(16, 31)}.{ri(0, 255)}.{ri(1, 254)}"])
        t = r.choice(["내부망 {}", "게이트웨이 {}", "사설 IP {}"])
    elif cat == "no_context_digits":  # account- or RRN-shaped, but nothing says so
        v = r.choice([f"{ri(100, 999)}-{ri(100, 999)}-{digits(r, 6)}", f"{digits(r, 12)}",
                      f"{ri(1000, 9999)}-{ri(100, 999)}-{digits(r, 6)}", f"{digits(r, 11)}"])
        t = r.choice(["문서번호 {}", "고유번호 {}", "({})"])
    else:  # doc_number
        v = r.choice([f"제{y}-{ri(1, 9999)}호", f"공고 제{y}-{ri(1, 999)}호", f"고시 제{y}-{ri(1, 99)}호"])
        t = r.choice(["행정안전부 {}", "{}에 따라", "({})"])
    return cat, v, t.format(v)


# ---- corpus ------------------------------------------------------------------------------------------
_PII_LIKE = re.compile(r"@|0\d{1,2}\)?[ -]*\d{3,4}[ -]*\d{4}")


def filler_lines() -> list[str]:
    lines = []
    for f in sorted((REPO / "examples/data/ko-gov-sample").glob("*.txt")):
        for line in f.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if len(line) >= 15 and not _PII_LIKE.search(line):
                lines.append(line)
    return lines


def build(n: int, seed: int):
    """Sentences with the spans of what was planted: [(text, [(kind_or_cat, start, end, is_pii)])]."""
    r = random.Random(seed)
    fill = filler_lines()
    kinds = list(GENERATORS)
    out = []
    for i in range(n):
        parts, spans = [], []
        if r.random() < 0.3:
            parts.append(r.choice(fill) + " ")
        items = []
        if r.random() < 0.5:
            items.append((True, *GENERATORS[kinds[i % len(kinds)]](r)))
        items.append((False, *lookalike(r)))
        if r.random() < 0.3:
            items.append((False, *lookalike(r)))
        r.shuffle(items)
        for is_pii, label, value, sentence in items:
            base = sum(map(len, parts))
            at = sentence.index(value)
            spans.append((label, base + at, base + at + len(value), is_pii, value))
            parts.append(sentence + r.choice([" ", ". ", ", ", "\n"]))
        out.append(("".join(parts), spans))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sentences", type=int, default=60_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t0 = time.time()
    corpus = build(args.sentences, args.seed)
    print(f"generated {len(corpus)} sentences in {time.time() - t0:.1f}s")
    det = Detector()
    planted, hit, leaked = Counter(), Counter(), Counter()
    la_total, la_hit = Counter(), Counter()
    spurious, misses, fps = 0, defaultdict(list), defaultdict(list)
    scrubber = Scrubber(PIISettings(salt="bench-salt"))
    for text, spans in corpus:
        found = det.find(text)
        out, _ = scrubber.scrub(text)
        for label, s, e, is_pii, value in spans:
            if is_pii:
                planted[label] += 1
                if any(f.kind == label and f.start <= s and e <= f.end for f in found):
                    hit[label] += 1
                elif len(misses[label]) < 5:
                    misses[label].append(text[max(0, s - 20):e + 5])
                leaked[label] += value in out
            else:
                la_total[label] += 1
                touched = [f for f in found if f.start < e and s < f.end]
                if touched:
                    la_hit[label] += 1
                    if len(fps[label]) < 5:
                        fps[label].append((value, touched[0].kind))
        for f in found:  # detections outside any planted PII (e.g. in the real filler text)
            spurious += not any(is_pii and f.start < e and s < f.end for _, s, e, is_pii, _ in spans)

    print("\nrecall per type (found with the right type and span)")
    for k in KINDS:
        if planted[k]:
            print(f"  {k:15s} {hit[k] / planted[k]:.4f}  ({hit[k]}/{planted[k]}; leaked verbatim {leaked[k]})")
    total, found_total = sum(planted.values()), sum(hit.values())
    print(f"  {'overall':15s} {found_total / total:.4f}  ({found_total}/{total}; "
          f"leaked verbatim {sum(leaked.values())})")
    for k, ex in misses.items():
        print(f"  missed {k}: {ex}")

    print("\nfalse positives on look-alikes (touched by a detection)")
    for c in sorted(la_total):
        print(f"  {c:22s} {la_hit[c] / la_total[c]:.4f}  ({la_hit[c]}/{la_total[c]})")
    fp = sum(la_hit.values()) / sum(la_total.values())
    print(f"  {'overall':22s} {fp:.4f}  ({sum(la_hit.values())}/{sum(la_total.values())})")
    for c, ex in fps.items():
        print(f"  FP {c}: {ex}")
    print(f"  detections outside planted PII, anywhere (incl. real bill filler): {spurious}")

    # speed: documents of 10 sentences, and the real bills (long documents)
    docs = ["\n".join(t for t, _ in corpus[i:i + 10]) for i in range(0, len(corpus), 10)]
    bills = [p.read_text(encoding="utf-8") for p in sorted((REPO / "examples/data/ko-gov-sample").glob("*.txt"))] * 30
    for name, batch in (("10-sentence docs", docs), ("bills (ko-gov-sample x30)", bills)):
        mb = sum(len(d.encode("utf-8")) for d in batch) / 1e6
        t = time.perf_counter()
        for d in batch:
            scrubber.scrub(d)
        dt = time.perf_counter() - t
        print(f"\nspeed, {name}: {len(batch) / dt:,.0f} docs/s, {mb / dt:.1f} MB/s "
              f"({len(batch)} docs, {mb:.1f} MB, one core)")

    step = PIIStep(PIISettings(salt="bench-salt"))  # the datatrove step: + sha256 and stats per document
    batch = [Document(text=d, id=str(i), metadata={"sha256": ""}) for i, d in enumerate(docs)]
    t = time.perf_counter()
    for _ in step.run(iter(batch)):
        pass
    dt = time.perf_counter() - t
    print(f"\nspeed, PIIStep on the 10-sentence docs: {len(batch) / dt:,.0f} docs/s")

    ok = found_total / total >= 0.99 and fp <= 0.01
    print(f"\ntarget recall >= 0.99 and FP <= 1%: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
