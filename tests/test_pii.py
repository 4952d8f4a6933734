"""PII detection and pseudonymisation on real Korean text: every kind in its common spellings,
look-alikes (dates, 제3조 제2항, case and bill numbers, amounts) untouched, consistent keyed
fakes that can never be valid numbers, masking, and the datatrove step on kept and rejected
records, directly and through a LocalPipelineExecutor. Unhyphenated 주민/외국인등록번호 and
internal IP addresses are planted into real sentences of the repo's example corpora
(ChatbotData.csv questions, National Assembly bills)."""

from __future__ import annotations

import csv
import ipaddress
import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from datatrove.data import Document
from datatrove.executor import LocalPipelineExecutor

from data_prep.corpus import records as R
from data_prep.corpus.normalize import NFCNormalizer
from data_prep.corpus.pii import KINDS, Detector, PIISettings, PIISettingsError, PIIStep, Scrubber
from data_prep.corpus.pii.checksums import birth_date_ok, luhn_ok, rrn_checksum_ok, valid_rrn
from data_prep.corpus.readers import CorpusReader, describe_inputs
from data_prep.corpus.writers import WorkWriter

REPO = Path(__file__).resolve().parent.parent
GOV = REPO / "examples/data/ko-gov-sample"
CHAT = REPO / "examples/data/ko-chatbot/ChatbotData.csv"
SALT = "test-salt-7f3a"

# (kind, value, sentence containing value): real RRN/ARN check digits, Luhn-valid cards
POSITIVE = [
    ("rrn", "900101-1234568", "신청인 홍길동(900101-1234568)은 서울시에 거주한다."),
    ("rrn", "9001011234568", "주민등록번호 9001011234568 를 기재"),
    ("rrn", "9001011234560", "주민번호: 9001011234560"),  # failing check digit, but labelled
    ("rrn", "200315-3123456", "아동 김하늘 200315-3123456 (2020년 이후 발급: 검증번호 없음)"),
    ("rrn", "900101 - 1234568", "주민등록번호 900101 - 1234568"),
    ("rrn", "900101-1******", "생년월일 900101-1****** 로 표시"),
    ("arn", "900101-5234561", "외국인등록번호 900101-5234561 소지자"),
    ("arn", "0501017234565", "외국인등록번호: 0501017234565"),
    ("phone", "010-1234-5678", "담당자 휴대폰 010-1234-5678로 연락 바랍니다."),
    ("phone", "010 1234 5678", "연락처 010 1234 5678"),
    ("phone", "01012345678", "문의 01012345678"),
    ("phone", "010.1234.5678", "HP. 010.1234.5678"),
    ("phone", "+82-10-1234-5678", "해외에서는 +82-10-1234-5678"),
    ("phone", "+82 10 1234 5678", "Tel +82 10 1234 5678"),
    ("phone", "02-123-4567", "민원실 02-123-4567"),
    ("phone", "031-1234-5678", "경기도청 031-1234-5678"),
    ("phone", "070-1234-5678", "인터넷전화 070-1234-5678"),
    ("phone", "(02) 123-4567", "전화 (02) 123-4567"),
    ("phone", "02) 748 - 6350", "연락처\n\n02) 748 - 6350\n"),  # as in kobill_1809897
    ("phone", "0505-123-4567", "안심번호 0505-123-4567"),
    ("email", "hong.gildong@naver.com", "이메일: hong.gildong@naver.com"),
    ("email", "tanzania@assembly.go.kr", "(02-788-4649, tanzania@assembly.go.kr)"),
    ("email", "hong@naver.com", "문의 바랍니다.hong@naver.com"),  # no space after the full stop
    ("account", "110-123-456789", "입금계좌: 신한은행 110-123-456789 (예금주 홍길동)"),
    ("account", "123456-01-123456", "국민 123456-01-123456 으로 송금"),
    ("account", "3333-01-1234567", "카카오뱅크 3333-01-1234567"),
    ("account", "1002123456789", "환불 계좌번호 1002123456789 (우리은행)"),
    ("account", "301-1234-5678-91", "NH농협 301-1234-5678-91 예금주 김철수"),
    ("account", "110-123-456789", "서울중앙지방법원 2010가합12345 사건, 계좌번호 110-123-456789"),
    ("card", "4111-1111-1111-1111", "카드번호 4111-1111-1111-1111"),
    ("card", "4111 1111 1111 1111", "결제 4111 1111 1111 1111 (유효기간 12/27)"),
    ("card", "5500000000000004", "번호 5500000000000004 확인"),
    ("card", "3782-822463-10005", "AMEX 3782-822463-10005"),
    ("card", "4111-1111-1111-1111", "계좌 대신 4111-1111-1111-1111 로 결제"),  # 16 digits: no account
    ("passport", "M12345678", "여권번호 M12345678"),
    ("passport", "M123A4567", "신청인 M123A4567 소지자"),
    ("driver_license", "11-12-345678-90", "운전면허번호: 11-12-345678-90"),
    ("driver_license", "서울 12-345678-90", "면허증(서울 12-345678-90) 사본"),
    ("driver_license", "111234567890", "운전면허번호 111234567890"),
    ("ip", "211.234.56.78", "접속 기록: 211.234.56.78에서 로그인"),
    ("ip", "8.8.8.8", "IP 8.8.8.8"),
    ("ip", "2404:6800:4004:80c::200e", "원격지 2404:6800:4004:80c::200e 차단"),
    ("arn", "8303136342340", "신청인 8303136342340 본인 확인 완료."),  # issue 13: no hyphen, no cue
    ("rrn", "851231 2345673", "성명 이영희 851231 2345673"),
    # a real bill line: 원사업자 (prime contractor) is no 사업자번호 label
    ("arn", "8503076860667", "책임을 진다. 다만, 해당 원사업자가 8503076860667 고의 또는 과실이 없음을 입증"),
    ("ip", "10.0.0.1", "접속 IP 10.0.0.1 에서 관리자 로그인"),  # internal addresses: by default too
    ("ip", "192.168.10.25", "웹 서버 주소는 192.168.10.25이며"),
    ("ip", "127.0.0.1", "호스트 127.0.0.1 으로 설정"),
    ("ip", "250.1.2.3", "게이트웨이: 250.1.2.3"),
    ("ip", "fd12:3456:789a::1", "내부망 fd12:3456:789a::1 대역"),
]

LOOKALIKES = [
    "제3조 제2항에 따라 제63조제2항제4호 중 다음과 같이 개정한다.",
    "발의연월일 : 2010. 11. 12. / 2010.11.12 / 2010-11-12 / 20101112 / 2010년 11월 12일",
    "추가재정소요는 1,234,567원이며 총 12,345,678,901원, 1234567890원을 지급한다.",
    "의안번호 9890, 의안번호 1809890",
    "서울중앙지방법원 2010가합12345 사건, 대법원 2019도1234, 2023헌마123",
    "법률 제10234호, 대통령령 제12345호, 행정안전부 공고 제2024-123호",
    "2010년 기준 34,712명, 21.4%, 10.7배, 3.8  5.7  5.5",
    "ISBN 978-89-7199-123-4, ISBN 9788971991234",
    "주문번호 2024011512345678, 송장번호 050412345678",
    "일련번호 4111-1111-1111-1112",  # Luhn-invalid
    "번호 901301-1234567, 9013011234567",  # month 13
    "우편번호 06236, (우) 123-456, 회의는 12:30에 시작",
    "고객센터 1588-1234, 080-123-4567",  # business numbers: not personal
    "법인등록번호 110111-1234567, 사업자등록번호 123-45-67890",
    "버전 1.2.3.4, 3.1.2.1 항목 참조, 서브넷 마스크 255.255.255.0, ab::cd",
    "주문번호 8303136342340, 법인등록번호 8512312345673, 사업자번호 7705055123453",  # valid shapes, "other" labels
    "국민 1인당 평균 예금액은 12,345,678원, 은행 수 17개, 은행법 제3조 제2항",
    "은행 공고 제2010-123456호, 계좌 개설 건수 1234567890건, 통장 12345678901원",
    "- 3 -",
]


@pytest.fixture(scope="module")
def det() -> Detector:
    return Detector()


@pytest.fixture(scope="module")
def scrub() -> Scrubber:
    return Scrubber(PIISettings(salt=SALT))


@pytest.mark.parametrize("kind,value,text", POSITIVE, ids=[f"{k}:{v}" for k, v, _ in POSITIVE])
def test_each_kind_in_its_formats_is_found_and_replaced(det, scrub, kind, value, text):
    s = text.index(value)
    found = det.find(text)
    assert any(f.kind == kind and f.start <= s and s + len(value) <= f.end for f in found), found
    out, counts = scrub.scrub(text)
    assert value not in out and counts.get(kind) == 1
    # format kept: same length here, and every non-digit character of the value in place
    fake = out[s:s + len(value)]
    if kind not in ("email", "ip", "passport"):
        assert len(out) == len(text) and re.sub(r"\d", "0", fake) == re.sub(r"\d", "0", value)


@pytest.mark.parametrize("text", LOOKALIKES)
def test_lookalikes_come_through_untouched(det, scrub, text):
    assert det.find(text) == []
    assert scrub.scrub(text) == (text, {})


def test_real_bills_and_chat_lose_only_their_contacts(det, scrub):
    """The fixture corpus: the bills carry an official's phone and e-mail; nothing else is PII."""
    for path in sorted(GOV.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        kinds = {f.kind for f in det.find(text)}
        assert kinds <= {"phone", "email"}, (path.name, kinds)
        out, _ = scrub.scrub(text)
        assert "02-788-4649" not in out and "tanzania@" not in out and "748 - 6350" not in out
        for keep in ("2010.  11.  12.", "제63조제2항제4호", "21,428,571"):
            assert out.count(keep) == text.count(keep)
    assert not det.find((REPO / "examples/data/ko-chatbot/ChatbotData.csv").read_text(encoding="utf-8"))
    constitution = (GOV / "kolaw_constitution.txt").read_text(encoding="utf-8")
    assert scrub.scrub(constitution) == (constitution, {})


# ---- planted into real sentences ------------------------------------------------------------------
def _real_sentences() -> list[str]:
    """Real carriers: questions of ChatbotData.csv and lines of the bills, with no digits or Latin
    letters of their own (a planted number must not run into one), spread over the files."""
    with CHAT.open(encoding="utf-8", newline="") as f:
        chat = [row["Q"] for row in csv.DictReader(f)]
    bills = [line.strip() for p in sorted(GOV.glob("kobill_*.txt"))
             for line in p.read_text(encoding="utf-8").splitlines()]
    plain = re.compile(r"[^0-9A-Za-z]{12,}")

    def pick(lines: list[str], n: int) -> list[str]:
        ok = [x for x in lines if plain.fullmatch(x) and x.count(" ") >= 2]
        return ok[::len(ok) // n][:n]
    return pick(chat, 8) + pick(bills, 4)


CARRIERS = _real_sentences()


def plant(carrier: str, piece: str, where: int) -> tuple[str, int]:
    """carrier with piece inserted before its where-th word (at the end when where is past the
    last word); returns the text and where piece starts in it."""
    words = carrier.split(" ")
    where = min(where, len(words))
    head, tail = " ".join(words[:where]), " ".join(words[where:])
    start = len(head) + (1 if head else 0)
    return (head + " " if head else "") + piece + (" " + tail if tail else ""), start


def _planted(piece: str, value: str):
    """piece (value, with or without a cue) planted at the start, in the middle and at the end of
    every carrier: (text, start of value, end of value)."""
    for carrier in CARRIERS:
        for where in (0, len(carrier.split(" ")) // 2, 99):
            text, at = plant(carrier, piece, where)
            s = at + piece.index(value)
            yield text, s, s + len(value)


def _check_digit(d12: str, offset: int) -> int:
    """The published rule, written out independently of checksums.py: offset 11 for 주민등록번호,
    13 for 외국인등록번호."""
    return (offset - sum(int(c) * w for c, w in zip(d12, (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5))) % 11) % 10


def test_carriers_are_real_and_clean(det):
    assert len(CARRIERS) == 12 and len(set(CARRIERS)) == 12
    chat, bills = CHAT.read_text(encoding="utf-8"), "".join(p.read_text(encoding="utf-8") for p in GOV.glob("*.txt"))
    assert all(c in chat or c in bills for c in CARRIERS)
    assert all(det.find(c) == [] for c in CARRIERS)


# bare 13-digit numbers with a real birth date and a check digit a real number can carry
BARE_IDS = [
    ("rrn", "8512312345673", 11),  # 1985-12-31, woman
    ("arn", "8303136342340", 11),  # issue 13: a foreigner's digit 6, check digit by the RRN rule only
    ("arn", "9909096123451", 11),
    ("arn", "7705055123453", 13),  # check digit by the ARN rule (offset 2)
    ("arn", "0303038234565", 13),  # born 2003
]


@pytest.mark.parametrize("kind,number,offset", BARE_IDS, ids=[n for _, n, _ in BARE_IDS])
@pytest.mark.parametrize("cue", ["", "주민등록번호 ", "외국인등록번호: ", "연락처 ", "접속 "],
                         ids=["no-cue", "rrn-cue", "arn-cue", "phone-cue", "ip-cue"])
@pytest.mark.parametrize("spacing", ["bare", "space"])
def test_unhyphenated_rrn_and_arn_in_real_sentences(det, scrub, kind, number, offset, cue, spacing):
    """With or without a cue word, and after a label of another kind (연락처, 접속), which used to
    veto a passing check digit."""
    assert int(number[12]) == _check_digit(number[:12], offset)
    if offset == 11 and kind == "arn":
        assert int(number[12]) != _check_digit(number[:12], 13)  # the ARN rule alone would miss it
    value = number if spacing == "bare" else f"{number[:6]} {number[6:]}"
    for text, s, e in _planted(cue + value, value):
        assert [(f.kind, f.start, f.end) for f in det.find(text)] == [(kind, s, e)], text
        out, counts = scrub.scrub(text)
        assert counts == {kind: 1} and number not in out.replace(" ", "")
        fake = re.search(r"\d{6} ?\d{7}", out)[0].replace(" ", "")
        assert not valid_rrn(fake) and fake[6] == number[6]  # no valid number left; sex/century digit kept


def test_issue_example_and_other_labels():
    det = Detector()
    assert [(f.kind, f.value) for f in det.find("신청인 8303136342340 본인 확인 완료.")] == [("arn", "8303136342340")]
    # an "other" label still vetoes it: 법인등록번호 has the same shape, order numbers are no one's
    for cue in ("법인등록번호", "법인번호", "사업자등록번호", "사업자 번호", "주문번호", "의안번호", "일련번호"):
        for text, _, _ in _planted(f"{cue} 8303136342340", "8303136342340"):
            assert det.find(text) == [], text


BAD_13 = [
    "8512312345674",  # 1985-12-31, check digit 3 expected
    "7705055123457",  # a foreigner's number failing both rules (1 or 3 expected)
    "9013011234565",  # month 13 (the digit would pass)
    "9002301234563",  # 30 February
    "0102293123451",  # 29 February 2001, not a leap year
]


@pytest.mark.parametrize("number", BAD_13)
@pytest.mark.parametrize("spacing", ["bare", "space"])
def test_13_digit_numbers_without_date_or_check_digit_are_left(det, number, spacing):
    d12, last = number[:12], int(number[12])
    valid_date = birth_date_ok(number[:6], number[6])
    assert not valid_date or last not in (_check_digit(d12, 11), _check_digit(d12, 13))
    value = number if spacing == "bare" else f"{number[:6]} {number[6:]}"
    for text, _, _ in _planted(value, value):
        assert det.find(text) == [], text
    if not valid_date:  # not even a 주민 cue makes a date that does not exist a birth date
        for text, _, _ in _planted("주민등록번호 " + value, value):
            assert det.find(text) == [], text


INTERNAL_IPS = ["10.0.0.1", "10.20.30.40", "127.0.0.1", "172.16.0.5", "172.31.255.254", "192.168.0.1",
                "240.1.2.3", "255.1.2.3", "fe80::1", "fd00:1234:5678::42", "::1"]
IP_CUES = ["접속 IP ", "서버 주소 ", "서버 ", "호스트 ", "게이트웨이 ", "DNS ", "내부망 ", "원격지 ", "접속지: "]


@pytest.mark.parametrize("addr", INTERNAL_IPS)
def test_private_loopback_and_reserved_ips_after_cues(scrub, addr):
    """Replaced by default; kept with ip_public_only=true (the old behaviour)."""
    det, public_only = Detector(), Detector(ip_public_only=True)
    assert not ipaddress.ip_address(addr).is_global
    keep = Scrubber(PIISettings(salt=SALT, ip_public_only=True))
    for cue in IP_CUES:
        for text, s, e in _planted(cue + addr, addr):
            assert [(f.kind, f.start, f.end) for f in det.find(text)] == [("ip", s, e)], text
            out, counts = scrub.scrub(text)
            assert counts == {"ip": 1} and addr not in out
            assert public_only.find(text) == [] and keep.scrub(text) == (text, {})


def test_long_internal_ipv4_needs_no_cue_short_ones_do(det):
    for text, s, e in _planted("192.168.10.25", "192.168.10.25"):
        assert [(f.kind, f.start, f.end) for f in det.find(text)] == [("ip", s, e)]
    for addr in ("10.0.0.1", "1.2.3.4", "fe80::1"):  # section numbers, versions, hex with colons
        for text, _, _ in _planted(addr, addr):
            assert det.find(text) == [], text


def test_ip_cues_do_not_hide_other_kinds(det):
    """서버, 접속 ... name an address: a phone written as bare digits after them is still a phone."""
    for text, s, e in _planted("서버 담당자 0212345678", "0212345678"):
        assert [(f.kind, f.start, f.end) for f in det.find(text)] == [("phone", s, e)], text
    for text, _, _ in _planted("송장번호 0212345678", "0212345678"):
        assert det.find(text) == [], text  # another kind's label still does


@pytest.mark.parametrize("sentence,word", [
    ("제106조 ① 법관은 탄핵 또는 금고 이상의 형의 선고에 의하지 아니하고는 파면되지 아니하며", "금고"),  # constitution
    ("안정적인 걸 좋아하나봐요.", "좋아하나봐요."),  # ChatbotData.csv
])
def test_ordinary_words_are_no_account_labels(det, sentence, word):
    """금고 (a prison sentence) and 하나 inside 좋아하나봐요 name no bank: an account-length number
    after them, with nothing else to say what it is, stays."""
    assert sentence in CHAT.read_text(encoding="utf-8") + (GOV / "kolaw_constitution.txt").read_text(encoding="utf-8")
    for number in ("30667801555", "110123456789"):
        text = sentence.replace(word, f"{word} {number}")
        assert det.find(text) == [], text
    assert [f.kind for f in det.find("새마을금고 9002-1234-5678-9")] == ["account"]
    assert [f.kind for f in det.find("우리 1002-123-456789 로 보내 주세요")] == ["account"]


LOOKALIKE_PIECES = ["서울중앙지방법원 2010가합12345", "의안번호 1809890", "1,234,567원", "12345678901원",
                    "2010. 11. 12.", "2010-11-12", "20101112", "제3조 제2항", "주문번호 0212345678",
                    "주문번호 20240115-1234567", "버전 1.2.3.4", "1.2.3.4 항목", "3.1.2.1.", "서브넷 마스크 255.255.255.0",
                    "행정안전부 공고 제2024-123호", "2023헌마123"]


@pytest.mark.parametrize("piece", LOOKALIKE_PIECES)
def test_lookalikes_planted_in_real_sentences_are_untouched(det, scrub, piece):
    for text, _, _ in _planted(piece, piece):
        assert det.find(text) == [], text
        assert scrub.scrub(text) == (text, {})


def test_same_value_in_different_spellings_gets_the_same_fake(scrub):
    out, _ = scrub.scrub("010-1234-5678 / 01012345678 / +82 10 1234 5678 / 010.1234.5678")
    a, b, c, d = out.split(" / ")
    assert a[:4] == "010-" and b[:3] == "010" and c.startswith("+82 10 ")
    assert re.sub(r"\D", "", a) == re.sub(r"\D", "", b) == "0" + re.sub(r"\D", "", c)[2:] == re.sub(r"\D", "", d)
    # the same for an RRN with and without hyphen, and a licence by region code or name
    out, _ = scrub.scrub("주민등록번호 900101-1234568, 주민등록번호 9001011234568")
    assert len(set(re.findall(r"\d{6}-?\d{7}", out)) - {"900101-1234568", "9001011234568"}) == 2
    x, y = re.findall(r"\d{6}-?\d{7}", out)
    assert x.replace("-", "") == y
    out, _ = scrub.scrub("면허 11-12-345678-90 면허 서울 12-345678-90")
    assert out.split("면허 ")[1].strip()[3:] == out.split("면허 ")[2].strip()[3:]
    # and across documents: the step's cache is not what makes it consistent
    assert Scrubber(PIISettings(salt=SALT)).scrub("휴대폰 01012345678")[0] == f"휴대폰 {b}"


def test_fakes_can_never_be_valid_numbers(scrub, det):
    rrns = ["900101-1234568", "851231-2345674", "050101-4234562", "900101-5234561"]
    for rrn in rrns:
        fake = scrub.scrub(f"주민등록번호 {rrn}")[0].split()[-1]
        d = fake.replace("-", "")
        assert fake != rrn and len(fake) == len(rrn) and fake[6] == "-" and d[6] == rrn[7]  # sex/century kept
        assert not birth_date_ok(d[:6], d[6]) and not rrn_checksum_ok(d) and not valid_rrn(fake)
    for card in ["4111111111111111", "5500-0000-0000-0004", "3782 822463 10005"]:
        fake = scrub.scrub(f"카드 {card}")[0].split(" ", 1)[1]
        assert fake[:4] == card[:4] and not luhn_ok(re.sub(r"\D", "", fake))
    for phone, prefix in [("010-1234-5678", "010-"), ("02-123-4567", "02-"), ("+82 10 1234 5678", "+82 10 ")]:
        fake = scrub.scrub(f"전화 {phone}")[0][3:]
        assert fake.startswith(prefix + "0")  # Korean local numbers never start with 0
    v4 = ipaddress.ip_address(scrub.scrub("접속 IP 211.234.56.78")[0].split()[-1])
    v6 = ipaddress.ip_address(scrub.scrub("원격지 2404:6800:4004:80c::200e")[0].split()[-1])
    assert v4 in ipaddress.ip_network("240.0.0.0/4") and v6 in ipaddress.ip_network("2001:db8::/32")
    # a private or loopback address keeps its block, not its host; other special ones go to 240/4
    for addr, block in [("10.1.2.3", "10.0.0.0/8"), ("172.20.5.6", "172.16.0.0/12"),
                        ("192.168.0.10", "192.168.0.0/16"), ("127.0.0.1", "127.0.0.0/8"),
                        ("100.64.1.2", "240.0.0.0/4"), ("169.254.3.4", "240.0.0.0/4")]:
        fake = scrub.scrub(f"서버 주소 {addr}")[0].split()[-1]
        assert fake != addr and ipaddress.ip_address(fake) in ipaddress.ip_network(block), (addr, fake)
    # so running twice leaves the fakes alone (RRN, card, phone); a fake IP is an address, which
    # only ip_public_only=true leaves alone
    once = scrub.scrub("주민등록번호 900101-1234568 카드 4111111111111111 HP 010-1234-5678 IP 211.234.56.78")[0]
    assert [f.kind for f in det.find(once)] == ["ip"]
    assert Detector(ip_public_only=True).find(once) == []


def test_salt_keys_the_fakes():
    text = "주민등록번호 900101-1234568, 010-1234-5678, hong@example-corp.com, 신한 110-123-456789"
    a = Scrubber(PIISettings(salt="alpha")).scrub(text)[0]
    b = Scrubber(PIISettings(salt="beta")).scrub(text)[0]
    assert a == Scrubber(PIISettings(salt="alpha")).scrub(text)[0]
    for old in ("900101-1234568", "1234-5678", "hong@example-corp.com", "110-123-456789"):
        assert old not in a and old not in b
    assert len(set(a.split(", ")) & set(b.split(", "))) == 0


def test_mask_mode_writes_typed_placeholders():
    text = " ".join(t for _, _, t in POSITIVE)
    out, counts = Scrubber(PIISettings(mode="mask")).scrub(text)
    for kind in KINDS:
        assert f"<|{kind}|>" in out
    expected = {k: sum(1 for kk, _, _ in POSITIVE if kk == k) for k in KINDS}
    expected["phone"] += 1  # the e-mail example comes with its owner's phone number
    assert counts == expected
    assert Scrubber(PIISettings(mode="mask")).scrub("연락처 010-1234-5678.")[0] == "연락처 <|phone|>."


def test_only_the_chosen_types_and_fullwidth_digits():
    out, counts = Scrubber(PIISettings(types=["email"], mode="mask")).scrub("010-1234-5678, a.b@naver.com")
    assert out == "010-1234-5678, <|email|>" and counts == {"email": 1}
    out, counts = Scrubber(PIISettings(mode="mask")).scrub("전화 ０１０－１２３４－５６７８ 끝")
    assert out == "전화 <|phone|> 끝" and counts == {"phone": 1}


def test_settings_are_validated_with_the_recipe_key(caplog):
    for bad, key in [(dict(mode="hash"), "data.pii.mode"), (dict(salt=""), "data.pii.salt"),
                     (dict(types=["rrn", "ssn"]), "data.pii.types"), (dict(types=[]), "data.pii.types"),
                     (dict(context_window=0), "data.pii.context_window"),
                     (dict(ip_public_only="false"), "data.pii.ip_public_only")]:
        with pytest.raises(PIISettingsError, match=re.escape(key)):
            PIIStep(PIISettings(**bad))
    with caplog.at_level(logging.WARNING, logger="data_prep.corpus.pii"):
        PIIStep(PIISettings())
    assert any("data.pii.salt" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="data_prep.corpus.pii"):
        PIIStep(PIISettings(salt=SALT)), PIIStep(PIISettings(mode="mask"))
    assert not caplog.records


def _doc(text: str, **meta) -> Document:
    return Document(text=text, id=meta.pop("id", "d"), metadata={R.SHA256: R.text_sha256(text), **meta})


def test_step_replaces_in_kept_and_rejected_records_and_counts():
    docs = [
        _doc("담당 홍길동 010-1234-5678, hong@naver.com, 주민등록번호 900101-1234568", id="kept"),
        R.reject(_doc("문의 02-123-4567", id="short"), R.TOO_SHORT, "15 chars < min_chars=20"),
        R.reject(_doc("\ufffd 010-9876-5432", id="bytes", raw_base64="/y0wMTAtOTg3Ni01NDMy"), R.INVALID_UTF8, "x"),
        R.reject(_doc("", id="nokey", extra={"body": "계좌: 신한 110-123-456789", "n": 3}), R.MISSING_TEXT_KEY, "x"),
        _doc("제3조 제2항, 2010. 11. 12., 1,234,567원", id="clean"),
    ]
    original = docs[0].text
    step = PIIStep(PIISettings(salt=SALT))
    out = {d.id: d for d in step.run(iter(docs))}
    assert list(out) == ["kept", "short", "bytes", "nokey", "clean"]  # nothing dropped, order kept
    k = out["kept"]
    assert "010-1234-5678" not in k.text and "hong@naver.com" not in k.text and "900101-1234568" not in k.text
    assert k.metadata["pii"] == {"phone": 1, "email": 1, "rrn": 1}
    assert k.metadata[R.SHA256] == R.text_sha256(k.text) != R.text_sha256(original)
    assert out["short"].text.startswith("문의 02-0") and out["short"].metadata[R.REASON] == R.TOO_SHORT
    assert R.RAW_BASE64 not in out["bytes"].metadata and "9876-5432" not in out["bytes"].text
    assert out["nokey"].metadata[R.EXTRA]["body"].startswith("계좌: 신한 ") and "456789" not in str(
        out["nokey"].metadata[R.EXTRA]) and out["nokey"].metadata[R.EXTRA]["n"] == 3
    assert out["nokey"].metadata["pii"] == {"account": 1}
    assert "pii" not in out["clean"].metadata and out["clean"].text == "제3조 제2항, 2010. 11. 12., 1,234,567원"
    stats = {k: int(v.total) for k, v in step.stats.stats.items()}
    assert stats["pii_phone"] == 3 and stats["pii_email"] == 1 and stats["pii_rrn"] == 1
    assert stats["pii_account"] == 1 and stats["pii_docs"] == 4 and stats["pii_raw_dropped"] == 1


def test_step_updates_sha256_and_disabled_step_passes_through():
    doc = _doc("연락처 010-1234-5678")
    before = doc.metadata[R.SHA256]
    (out,) = PIIStep(PIISettings(salt=SALT)).run(iter([doc]))
    assert out.metadata[R.SHA256] == R.text_sha256(out.text) != before
    doc = _doc("연락처 010-1234-5678", raw_base64="AAAA")
    (out,) = PIIStep(PIISettings(enabled=False)).run(iter([doc]))
    assert out.text == "연락처 010-1234-5678" and out.metadata[R.RAW_BASE64] == "AAAA"


def test_through_a_local_pipeline_executor(tmp_path):
    """Reader -> NFC -> PII -> work files, two tasks in forked workers, as in the corpus split pass."""
    inp = tmp_path / "in"
    inp.mkdir()
    bill = inp / "kobill_1809890.txt"
    shutil.copy(GOV / "kobill_1809890.txt", bill)
    rows = [{"id": "a", "text": "민원인 김철수(010-2222-3333)에게 회신. 환불 계좌: 국민 123456-01-123456"},
            {"id": "b", "text": "주민등록번호 900101-1234568", "email": "kim@naver.com"}]
    (inp / "rows.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
                                    + '{"text": "broken 010-4444-5555\n', encoding="utf-8")
    step = PIIStep(PIISettings(salt=SALT))
    files = [str(bill), str(inp / "rows.jsonl")]
    pipeline = [CorpusReader(describe_inputs(files, source="t")), NFCNormalizer(), step,
                WorkWriter(str(tmp_path / "work"))]
    stats = LocalPipelineExecutor(pipeline, tasks=2, workers=2, logging_dir=str(tmp_path / "logs"),
                                  skip_completed=False, start_method="fork").run()
    recs = [json.loads(line) for f in sorted((tmp_path / "work").glob("*.jsonl")) for line in f.open()]
    by_id = {r["id"].rsplit("/", 1)[-1]: r for r in recs}  # ids are file names below the source's root
    text = "\n".join(r["text"] for r in recs) + json.dumps([r["metadata"] for r in recs], ensure_ascii=False)
    for secret in ("02-788-4649", "tanzania@", "2222-3333", "123456-01-123456", "900101-1234568", "kim@naver.com",
                   "4444-5555"):
        assert secret not in text
    assert re.search(r"2010\.\s+11\.\s+12\.", by_id["kobill_1809890.txt"]["text"])  # dates stay
    assert by_id["rows.jsonl:3"]["metadata"][R.REASON] == R.BAD_JSON  # rejected, and scrubbed too
    for r in recs:
        assert r["metadata"][R.SHA256] == R.text_sha256(r["text"])
    counters = next({k: int(v.total) for k, v in s.stats.items()} for s in stats.stats if s.name == str(step))
    assert counters["pii_phone"] == 3 and counters["pii_email"] == 2 and counters["pii_account"] == 1
    assert counters["pii_rrn"] == 1 and counters["pii_docs"] == 4


def test_pii_never_imports_torch():
    code = "import sys, data_prep.corpus.pii; assert 'torch' not in sys.modules, 'pii pulled in torch'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
