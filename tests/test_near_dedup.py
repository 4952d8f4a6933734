"""Near-duplicate removal on real Korean text: copies that differ in 띄어쓰기, punctuation, emoticon
runs or a character are caught; different documents (the ten bills, distinct chatbot sentences)
are not; the first kept document of a cluster stays whatever the tasks, batches or index store."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from datatrove.data import Document, DocumentsPipeline
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.base import PipelineStep

from data_prep.corpus import records as R
from data_prep.corpus.merge import MergeTaskFiles
from data_prep.corpus.near_dedup import SIGNATURE, DedupSettings, NearDedup, NearDedupSignature
from data_prep.corpus.near_dedup.minhash import MinHasher
from data_prep.corpus.near_dedup.textkey import keys
from data_prep.corpus.writers import WorkWriter

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"
GOV = sorted((DATA / "ko-gov-sample").glob("*.txt"))


def chatbot_sentences() -> list[str]:
    with open(DATA / "ko-chatbot" / "ChatbotData.csv", encoding="utf-8") as f:
        return [r["Q"] for r in csv.DictReader(f)]


def docs_of(texts: list[str], file: str = "in.jsonl") -> list[Document]:
    return [Document(text=t, id=f"d{i}", metadata={R.FILE: file, R.LINE: i + 1, R.FILE_INDEX: 0})
            for i, t in enumerate(texts)]


def dedup(texts: list[str], settings: DedupSettings | None = None, state_dir=None) -> list[Document]:
    s = settings or DedupSettings()
    return list(NearDedup(s, state_dir).run(NearDedupSignature(s).run(iter(docs_of(texts)))))


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


def test_spacing_punctuation_emoticon_and_character_variants_are_caught():
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
        ]
        if len(keys([t]).key(0)) >= 50:  # one character changed; far from the bar only on longer texts:
            vs.append(t[:mid] + ("가" if t[mid] != "가" else "나") + t[mid + 1:])  # see test_short_review_edits
        variants += vs
        of += [f"d{n}"] * len(vs)
    out = verdicts(dedup(originals + variants))
    n = len(originals)
    assert [out[f"d{i}"] for i in range(n)] == [None] * n  # all originals kept
    for v, (text, orig) in enumerate(zip(variants, of)):
        assert out[f"d{n + v}"] == orig, text


def test_short_review_edits_are_mostly_caught():
    """One changed character in a 20-40 character review: Jaccard of 3-grams 0.7-0.85, under the
    0.8 threshold for many; the max_edits allowance lowers the bar. The estimate from 160 hashes
    has noise (sigma ~0.035), so a few percent of such copies stay: the benchmark measures it."""
    qs = [q for q in chatbot_sentences() if 20 <= len(keys([q + " 정말요"]).key(0)) <= 40][:300]
    originals = [q + " 정말요" for q in qs]
    copies = []
    for t in originals:
        i = next(i for i in range(len(t) // 2, len(t)) if "가" <= t[i] <= "힣")
        copies.append(t[:i] + ("다" if t[i] != "다" else "가") + t[i + 1:])
    out = verdicts(dedup(originals + copies))
    caught = sum(out[f"d{len(originals) + i}"] == f"d{i}" for i in range(len(copies)))
    assert caught >= 0.9 * len(copies), caught
    assert sum(out[f"d{i}"] is not None for i in range(len(originals))) <= 3  # the originals differ


def test_distinct_chatbot_sentences_are_not_duplicates():
    seen, texts = set(), []
    for q in chatbot_sentences():
        k = keys([q]).key(0)
        if len(k) >= 10 and k not in seen:  # distinct keys, long enough for n-grams
            seen.add(k)
            texts.append(q)
    texts = texts[:: len(texts) // 1500][:1500]
    out = dedup(texts)
    rejected = [d for d in out if R.is_rejected(d)]
    # ChatbotData has paraphrases ("3박4일 놀러가고 싶다" / "3박4일 정도 놀러가고 싶다"): allow a handful
    assert len(rejected) <= 5, [(d.text, d.metadata[R.DUPLICATE_OF]) for d in rejected]


def test_bills_only_the_same_bill_for_another_law_is_a_duplicate():
    """9890 (지방공무원법) and 9891 (국가공무원법) are one text with the law's name and article swapped
    (Jaccard 0.94); 9892/9893 share their rationale but amend other laws with other articles (0.67-0.74):
    different bills. The constitution and the other bills share nothing much."""
    out = dedup([p.read_text(encoding="utf-8") for p in GOV])
    names = {f"d{i}": p.stem for i, p in enumerate(GOV)}
    dups = {names[i]: names[d] for i, d in verdicts(out).items() if d}
    assert dups == {"kobill_1809891": "kobill_1809890"}
    rejected = next(d for d in out if R.is_rejected(d))
    assert rejected.metadata[R.REASON] == R.DUPLICATE_NEAR
    assert rejected.metadata[R.DUPLICATE_OF_LOCATION] == "in.jsonl:1"


def test_short_documents_match_only_their_own_key():
    texts = ["네, 알겠습니다.", "네 알겠습니다!!", "네 알겠어요", "좋아요", "좋아요~~ ㅋㅋ", "좋아", "ㅋㅋㅋㅋ", "ㅠㅠ", "^^;;"]
    out = dedup(texts)
    assert verdicts(out) == {"d0": None, "d1": "d0", "d2": None, "d3": None, "d4": "d3", "d5": None,
                             "d6": None, "d7": None, "d8": None}  # emoticon-only: nothing to compare
    assert all(SIGNATURE not in d.metadata for d in out)  # popped: clean/ and rejected/ never carry it


def test_rejected_documents_are_skipped_and_never_kept_as_originals():
    docs = docs_of([REVIEW, REVIEW.replace(" ", ""), REVIEW + "!!"])
    R.reject(docs[0], R.TOO_SHORT, "test")
    s = DedupSettings()
    out = list(NearDedup(s).run(NearDedupSignature(s).run(iter(docs))))
    assert out[0].metadata[R.REASON] == R.TOO_SHORT
    assert verdicts(out)["d1"] is None and verdicts(out)["d2"] == "d1"


def reference(texts: list[str], s: DedupSettings) -> dict[str, str | None]:
    """The rule spelled out, one document at a time: a document duplicates the earliest kept document
    sharing a band whose estimated Jaccard passes the check."""
    mh = MinHasher(s.ngram, s.bands, s.rows, s.seed, s.min_chars)
    sigs, lengths, _ = mh.signatures(texts)
    bands = mh.band_keys(sigs)
    need = NearDedup(s).thresholds(lengths)
    kept: list[int] = []
    out = {}
    for j in range(len(texts)):
        dup = None
        if lengths[j] and kept:
            k = np.array(kept)
            share = (bands[k] == bands[j]).any(axis=1)
            ok = share & NearDedup.similar(sigs[k], np.broadcast_to(sigs[j], sigs[k].shape), need[j])
            if ok.any():
                dup = int(k[np.argmax(ok)])
        out[f"d{j}"] = None if dup is None else f"d{dup}"
        if dup is None and lengths[j]:
            kept.append(j)
    return out


@pytest.fixture(scope="module")
def many_reviews() -> list[str]:
    """~5,000 short texts (more than two batches) with copies near and far: reordered parts, spaced out."""
    rng = np.random.default_rng(3)
    qs = chatbot_sentences()
    texts = []
    for i in range(5000):
        if texts and rng.random() < 0.3:
            t = texts[int(rng.integers(max(0, len(texts) - 3000), len(texts)))]
            texts.append(t.replace(" ", "") + ("ㅋㅋ" if rng.random() < 0.5 else " !!"))
        else:
            a, b = rng.integers(0, len(qs), 2)
            texts.append(f"{qs[a]} {qs[b]}")
    return texts


def test_batches_and_index_store_do_not_change_the_result(many_reviews, tmp_path):
    s = DedupSettings()
    expected = reference(many_reviews, s)
    assert sum(v is not None for v in expected.values()) > 1000
    assert verdicts(dedup(many_reviews, s)) == expected
    on_disk = DedupSettings(on_disk=True)
    assert verdicts(dedup(many_reviews, on_disk, tmp_path / "state")) == expected
    assert (tmp_path / "state" / "near_dedup.sqlite").is_file()


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


def run_two_passes(files: list[str], out: Path, tasks: int, workers: int) -> list[dict]:
    s = DedupSettings()
    split = [ReadJsonl(files), NearDedupSignature(s), WorkWriter(str(out / "work"))]
    LocalPipelineExecutor(split, tasks=tasks, workers=workers, logging_dir=str(out / "logs1"),
                          skip_completed=False, start_method="fork").run()
    merge = [MergeTaskFiles(str(out / "work")), NearDedup(s, out / "state"), WorkWriter(str(out / "final"))]
    stats = LocalPipelineExecutor(merge, tasks=1, workers=1, logging_dir=str(out / "logs2"),
                                  skip_completed=False, start_method="fork").run()
    near = next(x for x in stats.stats if x.name == str(merge[1]))
    with open(out / "final" / "00000.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    assert near.stats["duplicates"].total == sum(r["metadata"].get(R.REASON) == R.DUPLICATE_NEAR for r in rows)
    return rows


def test_same_result_for_any_number_of_tasks(many_reviews, tmp_path):
    files = []
    for f in range(3):  # contiguous thirds: corpus order = index order
        p = tmp_path / f"part{f}.jsonl"
        chunk = many_reviews[f * 1700:(f + 1) * 1700]
        p.write_text("".join(json.dumps({"id": f"d{f * 1700 + i}", "text": t}, ensure_ascii=False) + "\n"
                             for i, t in enumerate(chunk)), encoding="utf-8")
        files.append(str(p))
    one = run_two_passes(files, tmp_path / "one", tasks=1, workers=1)
    three = run_two_passes(files, tmp_path / "three", tasks=3, workers=2)
    assert one == three and len(one) == 5000
    assert all(SIGNATURE not in r["metadata"] for r in one)
    assert {r["id"]: r["metadata"].get(R.DUPLICATE_OF) for r in one} == reference(many_reviews, DedupSettings())


def test_missing_signature_and_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="NearDedupSignature must run in the split pass"):
        list(NearDedup(DedupSettings()).run(iter(docs_of(["서명 없는 문서입니다"]))))
    signed = list(NearDedupSignature(DedupSettings(bands=8)).run(iter(docs_of([LAW_10]))))
    with pytest.raises(ValueError, match=r"bands\*rows = 160"):
        list(NearDedup(DedupSettings()).run(iter(signed)))
    with pytest.raises(ValueError, match=r"data\.dedup\.threshold"):
        NearDedupSignature(DedupSettings(threshold=1.5))
    with pytest.raises(ValueError, match=r"data\.dedup\.min_chars"):
        NearDedup(DedupSettings(ngram=5, min_chars=3))
    with pytest.raises(ValueError, match=r"data\.dedup\.on_disk"):
        NearDedup(DedupSettings(on_disk=True))
