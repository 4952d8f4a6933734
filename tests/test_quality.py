"""Korean quality heuristics on real text: the fixture laws and bills and the ChatbotData answers
pass; constructed garbage fires the rule meant for it, with the measured value in `detail`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from datatrove.data import Document
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import JsonlReader

from data_prep.corpus import quality as Q
from data_prep.corpus import records as R
from data_prep.corpus.filters import LengthFilter
from data_prep.corpus.normalize import TextNormalizer
from data_prep.corpus.quality import QualityFilter, QualitySettings
from data_prep.corpus.writers import WorkWriter

DATA = Path(__file__).parents[1] / "examples" / "data"
FIXTURES = sorted((DATA / "ko-gov-sample").glob("*.txt"))
NORMALIZE = TextNormalizer()
CONSTITUTION = NORMALIZE.normalize((DATA / "ko-gov-sample" / "kolaw_constitution.txt").read_text("utf-8-sig"))[0]
PREAMBLE = CONSTITUTION.split("\n")[2]  # "유구한 역사와 전통에 빛나는 ..." one paragraph, ~430 chars

GARBAGE = {
    # a site's navigation menu
    "menu": ("\n".join("• " + w for w in "홈 기관소개 알림마당 정보공개 민원서비스 정책정보 참여마당 사이트맵".split()),
             Q.BULLET_LINES),
    # emoticon spam, already squeezed run by run
    "kkk": ("ㅋㅋㅋㅋㅋ ㅋㅋㅋ ㅎㅎㅎㅎ 진짜 ㅋㅋㅋㅋㅋㅋ ㅠㅠㅠ ㅋㅋ", Q.JAMO_RATIO),
    # the same lines over and over
    "lines": ("\n".join(["오늘의 특가 상품을 확인하세요"] * 6 + ["문의는 고객센터로 연락 주세요"]), Q.DUPLICATE_LINES),
    # English in a Korean corpus
    "english": ("The Constitution of the Republic of Korea was adopted on 17 July 1948 and has been "
                "amended nine times since then, most recently in 1987.", Q.HANGUL_RATIO),
    # source code with a Korean comment
    "code": ("def load(path):\n    # 파일 읽기\n    with open(path) as f:\n        return json.load(f)\n"
             "for item in load('config.json'):\n    print(item['name'], item['value'])", Q.HANGUL_RATIO),
    # hashtag soup
    "hashtags": (" ".join(f"#{w}" for w in "맛집 서울맛집 강남역 데이트 일상 먹스타그램 맛스타그램 오늘뭐먹지 좋아요 "
                                           "팔로우 소통 선팔 맞팔 카페 디저트 주말 여행 서울여행 힐링 감성".split()),
                 Q.SYMBOL_WORD_RATIO),
    # a base64 blob
    "base64": ("첨부 " + "QUFBQUJCQkJDQ0NDRERERUVFRUZGRkZHR0dH" * 10, Q.MAX_MEAN_WORD_LENGTH),
    # letter-spaced text
    "spaced": (" ".join(PREAMBLE[:60].replace(" ", "")), Q.MIN_MEAN_WORD_LENGTH),
    # a one-word fragment
    "fragment": ("병원가세요.", Q.MIN_WORDS),
    # truncated snippets
    "snippets": ("\n".join(f"{t} 관련 소식을 전해 드립니다. 자세한 내용은 누리집에서 확인하실 수 있습니다\n"
                          f"{t} 정책 관련 최신 기사 모아 보기..." for t in ["정부", "국회", "지자체", "공공기관"]),
                 Q.ELLIPSIS_LINES),
    # an advert phrase repeated, spaced
    "ngram": ("대출 상담 신청 바로 가능 " * 30, Q.top_ngram_reason(2)),
    # the same phrase repeated without spaces: cut into pseudo-words, still caught
    "unspaced_spam": ("지금바로연락주세요최저가보장" * 40, Q.top_ngram_reason(2)),
}


def doc(text: str, i: int | str = 0) -> Document:
    return Document(text=NORMALIZE.normalize(text)[0], id=str(i), metadata={})


def verdict(text: str, settings: QualitySettings | None = None):
    return QualityFilter(settings).check(doc(text))


def test_all_fixture_documents_pass():
    step = QualityFilter()
    docs = [doc(p.read_text("utf-8-sig"), p.name) for p in FIXTURES]
    out = list(step.run(iter(docs)))
    assert len(out) == 11 and [d for d in out if R.is_rejected(d)] == []
    assert int(step.stats["checked"].total) == 11


def test_chatbot_answers_pass_except_one_word_fragments():
    with (DATA / "ko-chatbot" / "ChatbotData.csv").open(encoding="utf-8") as f:
        answers = [row["A"] for row in csv.DictReader(f)]
    step = QualityFilter()
    out = list(step.run(doc(a, i) for i, a in enumerate(answers)))
    reasons = {d.metadata[R.REASON] for d in out if R.is_rejected(d)}
    assert reasons == {Q.MIN_WORDS}  # only single-eojeol answers such as "저도요."
    assert all(len(d.text.split()) < 2 for d in out if R.is_rejected(d))
    assert sum(not R.is_rejected(d) for d in out) > 0.9 * len(answers)
    # and as longer documents: 50 distinct answers per document, one per line
    distinct = list(dict.fromkeys(answers))
    blocks = ["\n".join(distinct[i:i + 50]) for i in range(0, len(distinct), 50)]
    assert [verdict(b) for b in blocks] == [None] * len(blocks)


@pytest.mark.parametrize("name", GARBAGE)
def test_garbage_fires_the_intended_rule(name):
    text, reason = GARBAGE[name]
    v = verdict(text)
    assert v is not None and v[0] == reason, (name, v)
    assert v[1]  # the measured value vs the threshold


def test_detail_names_value_and_threshold():
    reason, detail = verdict(GARBAGE["lines"][0])
    assert reason == "quality_duplicate_lines"
    assert detail == "5/7 lines repeat an earlier line > max_duplicate_line_fraction=0.3"
    reason, detail = verdict(GARBAGE["english"][0])
    assert reason == "quality_hangul_ratio" and "< min_hangul_ratio=0.25" in detail and detail.startswith("0/")


def test_unspaced_korean_passes():
    """띄어쓰기 missing entirely: one 'word' of 400 characters is still Korean prose."""
    unspaced = PREAMBLE.replace(" ", "")
    assert len(unspaced.split()) == 1 and len(unspaced) > 300
    assert verdict(unspaced) is None
    assert verdict(CONSTITUTION.replace(" ", "")) is None  # the whole constitution, unspaced
    ws = Q.words(unspaced, 12)
    assert len(ws) == -(-len(unspaced) // Q.CHUNK)  # counted as 4-character pseudo-words
    # without the fallback it is one enormous word
    assert verdict(unspaced, QualitySettings(long_eojeol_chars=0))[0] == Q.MIN_WORDS


def test_legal_structures_are_not_garbage():
    # an outline with bullets and table rules, a numbers table, Hanja-mixed statute text
    outline = ("□ 추진 배경\n ○ 소말리아 해역 파견 연장 필요\n  - 우리 선박의 안전한 활동 지원\n"
               "  - 국제 해상 안전에 기여\n ○ 파견 기간: 2011년 1월 1일부터 12월 31일까지\n"
               "------------------------\n-\n-\n-\n13,710\n13,710\n7,781\n7,781")
    hanja = ("第1條(目的) 이 法은 國民의 權利와 義務에 관한 事項을 規定함을 目的으로 한다.\n"
             "第2條(定義) 이 法에서 使用하는 用語의 뜻은 다음과 같다.")
    assert verdict(outline) is None and verdict(hanja) is None


def test_short_chat_style_is_not_judged_by_ratios():
    for text in ["울적... 우울할땐... 울면", "눈 또 와", "난 또 바보ㅠㅠ", "#오늘 #일상"]:
        assert verdict(text) is None, text
    # the same ratios do fire once the text is long enough to show a pattern
    assert verdict("눈 또 와 " * 10)[0] == Q.MIN_MEAN_WORD_LENGTH


def test_zero_disables_a_rule_and_disabled_step_passes_all():
    text, _ = GARBAGE["english"]
    assert verdict(text, QualitySettings(min_hangul_ratio=0)) is None
    off = QualityFilter(QualitySettings(enabled=False))
    docs = [doc(t, n) for n, (t, _) in GARBAGE.items()]
    assert not any(R.is_rejected(d) for d in off.run(iter(docs)))
    text, _ = GARBAGE["ngram"]
    assert verdict(text, QualitySettings(top_ngram_fractions={})) == verdict(
        text, QualitySettings(top_ngram_fractions={"2": 0}))
    assert verdict(text, QualitySettings(top_ngram_fractions={}))[0] == Q.duplicate_ngram_reason(5)


@pytest.mark.parametrize("settings, key", [
    (QualitySettings(min_hangul_ratio=1.5), "data.quality.min_hangul_ratio"),
    (QualitySettings(min_words=-1), "data.quality.min_words"),
    (QualitySettings(top_ngram_fractions={"two": 0.2}), "data.quality.top_ngram_fractions"),
    (QualitySettings(duplicate_ngram_fractions={"5": 2.0}), r"data.quality.duplicate_ngram_fractions\['5'\]"),
])
def test_bad_settings_name_the_key(settings, key):
    with pytest.raises(ValueError, match=key):
        QualityFilter(settings)


def test_already_rejected_docs_are_skipped():
    d = R.reject(doc(GARBAGE["english"][0]), R.TOO_SHORT, "x")
    step = QualityFilter()
    assert list(step.run(iter([d])))[0].metadata[R.REASON] == R.TOO_SHORT
    assert "checked" not in step.stats.stats


def test_through_local_pipeline_executor(tmp_path):
    """In the split pass: normalise -> length filter -> quality filter, two tasks."""
    (tmp_path / "in").mkdir()
    rows = [{"id": p.name, "text": p.read_text("utf-8-sig")} for p in FIXTURES]
    rows += [{"id": name, "text": text} for name, (text, _) in GARBAGE.items()]
    for i in range(2):
        (tmp_path / "in" / f"{i}.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[i::2]), encoding="utf-8")
    quality = QualityFilter(QualitySettings())
    pipeline = [JsonlReader(str(tmp_path / "in")), TextNormalizer(), LengthFilter(5, 2_000_000), quality,
                WorkWriter(str(tmp_path / "work"))]
    stats = LocalPipelineExecutor(pipeline, tasks=2, workers=2, logging_dir=str(tmp_path / "logs"),
                                  skip_completed=False, start_method="fork").run()
    out = {r["id"]: r for f in (tmp_path / "work").glob("*.jsonl") for r in map(json.loads, f.open(encoding="utf-8"))}
    assert len(out) == len(rows)
    assert all("reason" not in out[p.name]["metadata"] for p in FIXTURES)
    for name, (_, reason) in GARBAGE.items():
        assert out[name]["metadata"]["reason"] == reason, name
        assert out[name]["metadata"]["detail"]
    counts = next({k: int(v.total) for k, v in s.stats.items()} for s in stats.stats if s.name == str(quality))
    assert counts["checked"] == len(rows)
    assert sum(v for k, v in counts.items() if k.startswith("rejected_quality_")) == len(GARBAGE)
    assert counts[f"rejected_{Q.JAMO_RATIO}"] == 1 and counts[f"rejected_{Q.HANGUL_RATIO}"] == 2
