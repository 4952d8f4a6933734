"""Near-duplicate removal on real Korean text: copies that differ in 띄어쓰기, punctuation, emoticon
runs or a character or two are caught, short ones too; different documents (the ten bills, distinct
chatbot sentences) are not; the first kept document of a cluster stays whatever the tasks, buckets,
partitions or batches, and the three passes decide as the rule spelled out one document at a time."""

from __future__ import annotations

import csv
import json
import random
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from datatrove.data import Document, DocumentsPipeline
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.base import PipelineStep

from data_prep.corpus import records as R
from rapidfuzz.distance import Levenshtein

from data_prep.corpus.merge import MergeTaskFiles
from data_prep.corpus.near_dedup import (DedupSettings, NearDedup, NearDedupCandidates, NearDedupSignature,
                                         run_in_process)
from data_prep.corpus.near_dedup import candidates, steps, textkey
from data_prep.corpus.near_dedup.minhash import MinHasher
from data_prep.corpus.near_dedup.rules import jaccard_needed, similar
from data_prep.corpus.near_dedup.textkey import WindowHasher, keys
from data_prep.corpus.pii import PIISettings
from data_prep.corpus.quality import QualitySettings
from data_prep.corpus.writers import WorkWriter

# the data stage's dedup on its own (the corpus defaults also pseudonymise and filter for quality)
NO_PII_NO_QUALITY = dict(dedup=DedupSettings(), pii=PIISettings(enabled=False), quality=QualitySettings(enabled=False))

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"
GOV = sorted((DATA / "ko-gov-sample").glob("*.txt"))


def chatbot_sentences() -> list[str]:
    with open(DATA / "ko-chatbot" / "ChatbotData.csv", encoding="utf-8") as f:
        return [r["Q"] for r in csv.DictReader(f)]


def docs_of(texts: list[str], file: str = "in.jsonl") -> list[Document]:
    return [Document(text=t, id=f"d{i}", metadata={R.FILE: file, R.LINE: i + 1, R.FILE_INDEX: 0})
            for i, t in enumerate(texts)]


@pytest.fixture
def work(tmp_path) -> Path:
    return tmp_path / "near"


def dedup(texts: list[str], work: Path, settings: DedupSettings | None = None) -> list[Document]:
    return run_in_process(docs_of(texts), settings or DedupSettings(), work)


def verdicts(out: list[Document]) -> dict[str, str | None]:
    """id -> id of the document it duplicates (None: kept)."""
    return {d.id: d.metadata.get(R.DUPLICATE_OF) for d in out}


LAW_10 = ("모든 국민은 인간으로서의 존엄과 가치를 가지며, 행복을 추구할 권리를 가진다. "
          "국가는 개인이 가지는 불가침의 기본적 인권을 확인하고 이를 보장할 의무를 진다.")
REVIEW = "배송 빠르고 포장도 꼼꼼해요. 가격 대비 품질이 정말 좋아요 ㅋㅋㅋ 재구매 의사 있습니다!!"


def test_key_drops_spacing_punctuation_emoticons_and_squeezes_runs():
    k = keys([REVIEW, "배송빠르고 포장도꼼꼼해요~~ 가격대비 품질이 정말 좋아요ㅠㅠ 재구매 의사 있습니다 ^^;;",
              "ＡＢＣ 좋아요오오오 👍👍", ""])
    # runs squeeze within words too (꼼꼼 -> 꼼): harmless, the key is only ever compared with other keys
    assert k.key(0) == k.key(1) == "배송빠르고포장도꼼해요가격대비품질이정말좋아요재구매의사있습니다"
    assert k.key(2) == "ａｂｃ좋아요오" and k.key(3) == ""  # lower-cased, runs of one character squeezed


def test_spacing_punctuation_emoticon_and_character_variants_are_caught(work):
    originals = [REVIEW, LAW_10, chatbot_sentences()[5000] + " 정말 그런 것 같아요. 다시 생각해 봐야겠어요."]
    variants, of = [], []
    for n, t in enumerate(originals):
        squeezed = t.replace(" ", "")
        mid = len(t) // 2
        vs = [
            squeezed,  # 띄어쓰기 dropped
            " ".join(squeezed[i:i + 3] for i in range(0, len(squeezed), 3)),  # re-spaced
            t.replace(".", "!!").replace(",", "") + " ...",  # punctuation
            t + " ㅋㅋㅋㅋㅋㅋ ㅠㅠ 👍",  # emoticon runs added
            t.replace("ㅋㅋㅋ", "ㅋ"),
            t[:mid] + ("가" if t[mid] != "가" else "나") + t[mid + 1:],  # one character changed
        ]
        variants += vs
        of += [f"d{n}"] * len(vs)
    out = verdicts(dedup(originals + variants, work))
    n = len(originals)
    assert [out[f"d{i}"] for i in range(n)] == [None] * n  # all originals kept
    for v, (text, orig) in enumerate(zip(variants, of)):
        assert out[f"d{n + v}"] == orig, text


def edited(t: str, edits: int, rng: random.Random) -> str:
    """t with `edits` Hangul syllables substituted, deleted or inserted (a typo, a changed particle)."""
    chars = list(t)
    for _ in range(edits):
        spots = [i for i, c in enumerate(chars) if "가" <= c <= "힣"]
        i, op = rng.choice(spots), rng.random()
        if op < 0.5:
            chars[i] = rng.choice([c for c in "다요네가는을를" if c != chars[i]])
        elif op < 0.75:
            del chars[i]
        else:
            chars.insert(i, rng.choice("다요네가는을를"))
    return "".join(chars)


def test_short_texts_with_one_or_two_changed_characters_are_caught(work):
    """Real chatbot questions of 10-60 characters: one edit from a 5-character key, two from a
    10-character key are duplicates (short_similarity 0.8), found by the edit filter whatever the
    n-gram overlap. The changed texts must be as many edits apart as planted, checked here."""
    rng = random.Random(7)
    qs = list(dict.fromkeys(q for q in chatbot_sentences() if 10 <= len(q) <= 60))
    qs = [q for q in qs if len(keys([q]).key(0)) >= 8][::8][:400]
    copies, planted = [], []
    for q in qs:
        n_key = len(keys([q]).key(0))
        e = 2 if n_key >= 10 and rng.random() < 0.5 else 1
        c = edited(q, e, rng)
        planted.append((e, Levenshtein.distance(keys([q]).key(0), keys([c]).key(0))))
        copies.append(c)
    out = verdicts(dedup(qs + copies, work))
    n = len(qs)
    # an original that was itself a copy of an earlier question is not kept, and its copy is compared
    # with the kept ones only (first kept wins; near-duplication is not transitive): those are left out
    kept = [i for i in range(n) if out[f"d{i}"] is None]
    caught = {i: out[f"d{n + i}"] == f"d{i}" for i in kept}
    for i in kept:
        e, d = planted[i]
        if d <= e:  # an edit next to a squeezed run can vanish from the key: fewer edits, still a copy
            assert caught[i], (copies[i], e, d)
    assert sum(caught.values()) >= 0.99 * len(kept) and len(kept) >= 0.95 * n
    # (ChatbotData has natural one-edit paraphrases, "공부하기 싫어" / "공부하기 싫다": a few originals go)


def test_short_texts_that_only_share_a_phrase_are_not_duplicates(work):
    """The same opening with a different ending: more edits than the length allows."""
    texts = ["오늘 날씨 너무 좋다 산책 가야지", "오늘 날씨 너무 좋다 빨래 해야지", "오늘 날씨 너무 춥다 집에 있을래",
             "배송 빠르고 좋아요", "배송 느리고 별로예요", "가격 대비 괜찮아요", "가격 대비 비싸요",
             "내일 시험인데 공부를 하나도 못 했어", "내일 시험인데 벌써 다 끝냈어"]
    assert all(v is None for v in verdicts(dedup(texts, work)).values())


def test_distinct_chatbot_sentences_are_not_duplicates(work):
    seen, texts = set(), []
    for q in chatbot_sentences():
        k = keys([q]).key(0)
        if len(k) >= 10 and k not in seen:  # distinct keys, long enough for n-grams
            seen.add(k)
            texts.append(q)
    texts = texts[:: len(texts) // 1500][:1500]
    out = dedup(texts, work)
    rejected = [d for d in out if R.is_rejected(d)]
    # ChatbotData has paraphrases ("3박4일 놀러가고 싶다" / "3박4일 정도 놀러가고 싶다"): allow a handful
    assert len(rejected) <= 8, [(d.text, d.metadata[R.DUPLICATE_OF]) for d in rejected]


def test_bills_only_the_same_bill_for_another_law_is_a_duplicate(work):
    """9890 (지방공무원법) and 9891 (국가공무원법) are one text with the law's name and article swapped
    (Jaccard 0.94); 9892/9893 share their rationale but amend other laws with other articles (0.67-0.74):
    different bills. The constitution and the other bills share nothing much."""
    out = dedup([p.read_text(encoding="utf-8") for p in GOV], work)
    names = {f"d{i}": p.stem for i, p in enumerate(GOV)}
    dups = {names[i]: names[d] for i, d in verdicts(out).items() if d}
    assert dups == {"kobill_1809891": "kobill_1809890"}
    rejected = next(d for d in out if R.is_rejected(d))
    assert rejected.metadata[R.REASON] == R.DUPLICATE_NEAR
    assert rejected.metadata[R.DUPLICATE_OF_LOCATION] == "in.jsonl:1"


def test_very_short_documents_match_only_their_own_key(work):
    texts = ["네, 알겠습니다.", "네 알겠습니다!!", "네 알겠어요", "좋아요", "좋아요~~ ㅋㅋ", "좋아", "ㅋㅋㅋㅋ", "ㅠㅠ", "^^;;"]
    out = dedup(texts, work)
    assert verdicts(out) == {"d0": None, "d1": "d0", "d2": None, "d3": None, "d4": "d3", "d5": None,
                             "d6": None, "d7": None, "d8": None}  # emoticon-only: nothing to compare
    assert all(set(d.metadata) <= {R.FILE, R.LINE, R.FILE_INDEX, R.REASON, R.DUPLICATE_OF, R.DUPLICATE_OF_LOCATION}
               for d in out)  # nothing of the work files rides along


def test_rejected_documents_are_skipped_and_never_kept_as_originals(work):
    docs = docs_of([REVIEW, REVIEW.replace(" ", ""), REVIEW + "!!"])
    R.reject(docs[0], R.TOO_SHORT, "test")
    out = run_in_process(docs, DedupSettings(), work)
    assert out[0].metadata[R.REASON] == R.TOO_SHORT
    assert verdicts(out)["d1"] is None and verdicts(out)["d2"] == "d1"


def test_five_thousand_real_short_reviews_through_the_stage(tmp_path):
    """The crash of issue 13: real short texts with min_chars=1 (candidates that all fail their check)."""
    from data_prep.corpus import pipeline as P
    from data_prep.corpus.readers import describe_inputs

    rows = list(csv.DictReader(open(DATA / "ko-chatbot" / "ChatbotData.csv", encoding="utf-8")))
    f = tmp_path / "reviews.jsonl"
    f.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n"
                         for r in rows[:2500] for t in (r["Q"], r["A"])), encoding="utf-8")
    report = P.prepare_corpus(describe_inputs([f]), tmp_path / "out", P.CorpusSettings(min_chars=1,
                                                                                         **NO_PII_NO_QUALITY))
    assert report.docs_in == 5000 == report.docs_kept + report.docs_rejected
    assert report.rejected_by_reason["duplicate_near"] > 50 and report.near_dedup["similar_pairs"] > 0
    assert set(report.peak_rss_mb) == {"split", "near", "merge"} and report.peak_rss_mb["near"] > 0
    assert 0 < report.peak_anon_mb["near"] <= report.peak_rss_mb["near"]


def test_every_duplicate_names_a_kept_document_exact_copies_too(tmp_path):
    """An exact copy of a text that near-dedup rejected names the kept document, as duplicate_near;
    an exact copy of the kept text is duplicate_exact; key-less texts are left to exact dedup."""
    from data_prep.corpus import pipeline as P
    from data_prep.corpus.readers import describe_inputs

    texts = ["배송 빠르고 좋아요", "배송빠르고 좋아요!!", "배송빠르고 좋아요!!", "배송 빠르고 좋아요", "ㅋㅋㅋ", "ㅋㅋㅋ"]
    f = tmp_path / "r.jsonl"
    f.write_text("".join(json.dumps({"id": f"d{i}", "text": t}, ensure_ascii=False) + "\n"
                         for i, t in enumerate(texts)), encoding="utf-8")
    P.prepare_corpus(describe_inputs([f]), tmp_path / "out", P.CorpusSettings(min_chars=1, **NO_PII_NO_QUALITY))
    import gzip
    rows = [json.loads(line) for p in sorted((tmp_path / "out" / "rejected").glob("*.gz"))
            for line in gzip.open(p, "rt", encoding="utf-8")]
    got = {r["id"]: (r["reason"], r["duplicate_of"]) for r in rows}
    assert got == {"d1": ("duplicate_near", "d0"), "d2": ("duplicate_near", "d0"), "d3": ("duplicate_exact", "d0"),
                   "d5": ("duplicate_exact", "d4")}


# ---- the passes against the rule spelled out -------------------------------------------------------

def reference(texts: list[str], s: DedupSettings) -> dict[str, str | None]:
    """One document at a time: the first document of a key stands for its key class (a later one with
    the same key is a duplicate of it if kept, else of what it duplicates); the first of a class is a
    duplicate of the earliest kept first-of-class document it shares a band with and passes the Jaccard
    check, or whose short key is within the allowed edits."""
    k = keys(texts)
    n, lengths = len(texts), k.lengths
    mh = MinHasher(s.ngram, s.bands, s.rows, s.seed)
    sigs = np.zeros((n, s.bands * s.rows), np.uint16)
    signed = lengths >= s.min_chars
    if signed.any():
        sigs[signed] = mh.signatures(WindowHasher(k), np.flatnonzero(signed))
    bands = mh.band_keys(sigs)
    need = jaccard_needed(s, lengths)
    text_key = [k.key(i) for i in range(n)]
    first_of: dict[str, int] = {}
    kept: list[int] = []
    stands_for: dict[int, int] = {}
    out = {}
    for j in range(n):
        dup = None
        if lengths[j] and text_key[j] in first_of:
            f = first_of[text_key[j]]
            dup = stands_for[f]
        elif lengths[j]:
            first_of[text_key[j]] = j
            for i in kept:  # in corpus order: the earliest that passes wins
                by_band = signed[i] and signed[j] and (bands[i] == bands[j]).any() and \
                    similar(sigs[j][None], sigs[i][None], need[j:j + 1])[0]
                by_edits = s.short_min <= lengths[i] <= s.short_chars and Levenshtein.distance(
                    text_key[i], text_key[j]) <= s.allowed_edits(max(lengths[i], lengths[j]))
                if by_band or by_edits:
                    dup = i
                    break
            stands_for[j] = j if dup is None else dup
            if dup is None:
                kept.append(j)
        out[f"d{j}"] = None if dup is None else f"d{dup}"
    return out


def random_corpus(rng: random.Random, n: int) -> list[str]:
    """Collisions on purpose: few syllables, so band keys, pieces and probes collide; copies of the same
    key (spacing, punctuation), edits of 1-3 characters, long and short, emoticon-only texts."""
    syl = "가나다라마바사"
    texts: list[str] = []
    for _ in range(n):
        u = rng.random()
        if texts and u < 0.25:
            t = rng.choice(texts)
            texts.append(rng.choice([t.replace(" ", ""), t + "!!", " ".join(t), t + " ㅋㅋ"]))
        elif texts and u < 0.55:
            t = rng.choice(texts)
            chars = list(t)
            for _ in range(rng.randint(1, 3)):
                if chars:
                    i = rng.randrange(len(chars))
                    chars[i:i + rng.randint(0, 1)] = [rng.choice(syl)] * rng.randint(0, 1)
            texts.append("".join(chars) or "마")
        elif u < 0.6:
            texts.append(rng.choice(["ㅋㅋㅋ", "!!", "^^", "ㅠㅠ ㅠㅠ"]))
        else:
            texts.append("".join(rng.choice(syl + " ") for _ in range(rng.choice([3, 6, 9, 14, 25, 40, 70]))))
    return texts


@pytest.mark.parametrize("seed", range(6))
def test_passes_decide_as_the_rule_one_document_at_a_time(seed, tmp_path, monkeypatch):
    """Random batches, buckets, partitions and chunk sizes, with empty candidate sets, all candidates
    rejected, all accepted, copies within a batch and across batches: the same verdicts as reference()."""
    rng = random.Random(seed)
    texts = random_corpus(rng, rng.choice([300, 700]))
    s = DedupSettings(buckets=rng.choice([1, 2, 3]), partitions=rng.choice([1, 4, 7]), holders=10_000,
                      ngram=rng.choice([2, 3]), bands=rng.choice([8, 32]), rows=rng.choice([2, 5]),
                      min_chars=rng.choice([5, 10]))
    monkeypatch.setattr(steps, "batches", partial(textkey.batches, max_docs=rng.choice([7, 64, 2048])))
    monkeypatch.setattr(candidates, "_PAIRS_PER_CHUNK", rng.choice([5, 100, 1 << 18]))
    expected = reference(texts, s)
    got = verdicts(dedup(texts, tmp_path / "near", s))
    assert got == expected, [(texts[int(k[1:])], v, expected[k]) for k, v in got.items() if v != expected[k]][:5]
    assert sum(v is not None for v in expected.values()) > len(texts) // 5


def test_holders_caps_the_comparisons_of_a_crowded_key(work):
    """2,000 different texts sharing one long phrase: each is compared with at most `holders` earlier
    ones per key, and nothing is taken for a copy of a text it only shares the phrase with."""
    rng = random.Random(1)
    texts = ["국민 여러분 안녕하십니까 오늘 발표할 내용은 " + "".join(rng.choice("가나다라마바사아자차카타파하")
                                                   for _ in range(30)) for _ in range(2000)]
    out = dedup(texts, work, DedupSettings(holders=4))
    assert not any(R.is_rejected(d) for d in out)


class ReadJsonl(PipelineStep):
    """Test reader: file i goes to task i % tasks, records carry their corpus position like CorpusReader's."""

    name = "test jsonl"

    def __init__(self, files: list[str]):
        super().__init__()
        self.files = files

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for index in range(rank, len(self.files), world_size):
            with open(self.files[index], encoding="utf-8") as f:
                for line, raw in enumerate(f, 1):
                    r = json.loads(raw)
                    yield Document(text=r["text"], id=r["id"],
                                   metadata={R.FILE: self.files[index], R.LINE: line, R.FILE_INDEX: index})


def run_three_passes(files: list[str], out: Path, tasks: int, workers: int, s: DedupSettings) -> list[dict]:
    split = [ReadJsonl(files), NearDedupSignature(s, out / "work" / "near"), WorkWriter(str(out / "work"))]
    LocalPipelineExecutor(split, tasks=tasks, workers=workers, logging_dir=str(out / "logs1"),
                          skip_completed=False, start_method="fork").run()
    LocalPipelineExecutor([NearDedupCandidates(s, out / "work" / "near")], tasks=s.buckets, workers=workers,
                          logging_dir=str(out / "logs2"), skip_completed=False, start_method="fork").run()
    merge = [MergeTaskFiles(str(out / "work")), NearDedup(s, out / "work" / "near"), WorkWriter(str(out / "final"))]
    stats = LocalPipelineExecutor(merge, tasks=1, workers=1, logging_dir=str(out / "logs3"),
                                  skip_completed=False, start_method="fork").run()
    near = next(x for x in stats.stats if x.name == str(merge[1]))
    with open(out / "final" / "00000.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    assert near.stats["duplicates"].total == sum(r["metadata"].get(R.REASON) == R.DUPLICATE_NEAR for r in rows)
    return rows


def test_same_result_for_any_number_of_tasks_and_buckets(tmp_path):
    rng = np.random.default_rng(3)
    qs = chatbot_sentences()
    texts: list[str] = []
    for i in range(5000):  # short texts with copies near and far: spaced out, an emoticon, a character
        if texts and rng.random() < 0.3:
            t = texts[int(rng.integers(max(0, len(texts) - 3000), len(texts)))]
            texts.append(t.replace(" ", "") + ("ㅋㅋ" if rng.random() < 0.5 else " !!"))
        elif texts and rng.random() < 0.1:
            t = texts[int(rng.integers(0, len(texts)))]
            texts.append(t[:-1] + "요")
        else:
            a, b = rng.integers(0, len(qs), 2)
            texts.append(f"{qs[a]} {qs[b]}" if rng.random() < 0.5 else qs[a])
    files = []
    for f in range(3):  # contiguous thirds: corpus order = index order
        p = tmp_path / f"part{f}.jsonl"
        chunk = texts[f * 1700:(f + 1) * 1700]
        p.write_text("".join(json.dumps({"id": f"d{f * 1700 + i}", "text": t}, ensure_ascii=False) + "\n"
                             for i, t in enumerate(chunk)), encoding="utf-8")
        files.append(str(p))
    one = run_three_passes(files, tmp_path / "one", 1, 1, DedupSettings(buckets=1, partitions=1))
    three = run_three_passes(files, tmp_path / "three", 3, 2, DedupSettings(buckets=3, partitions=16))
    assert one == three and len(one) == 5000
    assert {r["id"]: r["metadata"].get(R.DUPLICATE_OF) for r in one} == reference(texts, DedupSettings())


def test_missing_near_pass_and_bad_settings_are_clear_errors(work):
    list(NearDedupSignature(DedupSettings(), work).run(iter(docs_of([LAW_10]))))
    with pytest.raises(ValueError, match="the near pass .* must run between the split and merge passes"):
        list(NearDedup(DedupSettings(), work).run(iter(docs_of([LAW_10]))))
    with pytest.raises(ValueError, match=r"data\.dedup\.threshold"):
        NearDedupSignature(DedupSettings(threshold=1.5), work)
    with pytest.raises(ValueError, match=r"data\.dedup\.min_chars"):
        NearDedup(DedupSettings(ngram=5, min_chars=3), work)
    with pytest.raises(ValueError, match=r"data\.dedup\.short_similarity"):
        NearDedupCandidates(DedupSettings(short_similarity=1.0), work)
    with pytest.raises(ValueError, match=r"data\.dedup\.buckets=2 tasks, got 3"):
        list(NearDedupCandidates(DedupSettings(), work).run(None, 0, 3))
