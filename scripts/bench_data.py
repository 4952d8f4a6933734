"""Benchmark: the data stage on short Korean texts, real or generated, with planted near-duplicates:
recall per variant kind, precision on planted look-alikes, exact copies removed, speed against
datatrove's own four-step MinHash pipeline on the same input and cores, and peak memory per pass.

    python scripts/bench_data.py --corpus examples/data/ko-chatbot/ChatbotData.csv   # real texts (Q and A)
    python scripts/bench_data.py [--docs 500000]                                      # generated reviews
    python scripts/bench_data.py --docs 10000000 --runs stage+near@1,stage+near@2 --skip-datatrove  # scale

Real mode (--corpus, repeatable: .csv with --columns, default Q,A; .jsonl with --text-key; .txt, one
text per line): the real texts, each once, in a seeded order, are the base; variants are planted
into copies of real texts of 10-60 characters and placed later in the corpus. Nothing of the base
is generated: only the changes are. Generated mode: reviews built from ChatbotData sentences,
product opinions, ratings, openings and emoticon runs (a best case: the generator knows its own
variety), the same variants planted. The variant kinds, one per planted copy:
  exact     the same text (must go as duplicate_exact)
  spacing   띄어쓰기 dropped or moved        punct     punctuation changed, added or dropped
  emoticon  emoticon runs added, dropped, lengthened
  edit1     one Hangul syllable substituted, deleted or inserted (keys of 5+ characters)
  edit2     two of them (keys of 10+ characters)
Planted look-alikes (precision): a real text's first words with another real text's ending, kept only
when their keys are at least 3 edits and 30% apart (real mode); the generator's own look-alikes
keep a review's frame with other content (generated mode).

Recall of a kind: planted copies of kept originals rejected as duplicates (the share matched with
their own original or another copy of it is printed too: an earlier text sharing the original's
content can be within reach of the copy and, being earlier, is the one named). An original that the stage itself took for a copy of another real text is not
scored (near-duplication keeps the first kept document and is not transitive); their number is
printed, with the natural near-duplicates the stage found among the real texts and a few examples.
Precision: TP / (TP + look-alikes rejected as duplicates of their partner's family).

The runs (--runs, comma-separated): stage = normalise + PII + quality + exact (+ near: stage+near),
dedup = normalise + exact + near alone (where recall and precision are scored), near = the same as
dedup at --tasks/--buckets; NAME@N runs NAME with N tasks, buckets and workers (scale runs). datatrove's MinhashDedupSignature tokenises words with the
tokenizer of a language; its Korean one asks kiwipiepy for a model that is no longer distributed, so
it runs with language="eng" (spaCy's blank English tokenizer, which splits Korean on spaces and
punctuation), its default MinhashConfig otherwise (5-word n-grams, 14 buckets x 8 hashes, xxhash; with
xxhash 4.1 installed, its str n-grams are UTF-8 encoded first, see _xxhash_accepts_str).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import random
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT / "examples" / "data"

PRODUCTS = [
    "이어폰", "무선 키보드", "텀블러", "운동화", "샴푸", "가습기", "노트북 파우치", "전기포트", "블루투스 스피커",
    "캠핑 의자", "베개", "수건", "물티슈", "마스크팩", "선크림", "커피 원두", "견과류", "닭가슴살", "생수",
    "충전기", "보조배터리", "휴대폰 케이스", "모니터 받침대", "책상 조명", "머그컵", "후라이팬", "밀폐용기",
    "에어프라이어", "청소기 필터", "양말", "후드티", "패딩", "우산", "백팩", "지갑", "손목시계", "로션",
    "강아지 간식", "고양이 모래", "화분", "볼펜", "다이어리", "퍼즐", "레고", "요가매트", "아령", "자전거 라이트",
]
ADJECTIVES = [
    "너무 좋아요", "생각보다 괜찮아요", "가성비 최고예요", "별로예요", "그냥 그래요", "품질이 좋네요", "마감이 아쉬워요",
    "색상이 예뻐요", "사이즈가 딱 맞아요", "조금 작아요", "냄새가 좀 나요", "튼튼해요", "가볍고 좋아요", "소리가 커요",
    "디자인이 마음에 들어요", "사진이랑 달라요", "재질이 부드러워요", "오래 쓸 것 같아요", "금방 고장났어요", "향이 좋아요",
    "배터리가 오래가요", "설명서가 불친절해요", "포장이 꼼꼼해요", "만족합니다", "실망했어요", "쓸만해요",
]
OPENINGS = [
    "배송 빠르고 좋아요", "배송이 하루 만에 왔어요", "배송이 좀 늦었어요", "두 번째 구매입니다", "선물용으로 샀어요",
    "할인할 때 샀어요", "엄마가 좋아하세요", "처음 써봐요", "재구매했어요", "리뷰 보고 샀어요", "회사에서 쓰려고 샀어요",
    "아이가 좋아해요", "가격 대비 괜찮아요", "오늘 받았어요", "한 달 써보고 남깁니다",
]
RATINGS = ["별점 5점", "별점 4점", "별점 3점", "별점 2점", "별점 1점", "★★★★★", "★★★★☆", "★★★☆☆", "5점 만점에 4점",
           "재구매 의사 있어요", "재구매는 글쎄요", "추천합니다", "비추예요"]
EMOTICONS = ["ㅋㅋ", "ㅋㅋㅋ", "ㅎㅎ", "ㅠㅠ", "ㅜㅜ", "^^", "!!", "~~", "👍", ";;", "ㅎㅎㅎ", "ㅋㅋㅋㅋㅋ"]
FILLER_SYLLABLES = "가나다라마바사아자차카타파하요고네서도의를은는이가에한진짜정말좀더잘안못다시또꼭"
PUNCT = [".", "!", "?", "~", "...", ",", "!!", "?!"]
_RUN = re.compile(r"(ㅋ+|ㅎ+|ㅠ+|ㅜ+|\^\^+|;;+|~+|!+)")


def load_sentences() -> tuple[list[str], list[str]]:
    """ChatbotData questions and answers (everyday speech), and short sentences of the gov sample."""
    with open(DATA / "ko-chatbot" / "ChatbotData.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    chat = sorted({r["Q"].strip() for r in rows} | {r["A"].strip() for r in rows})
    gov: set[str] = set()
    for p in sorted((DATA / "ko-gov-sample").glob("*.txt")):
        for s in re.split(r"(?<=다\.)\s+|\n", p.read_text(encoding="utf-8")):
            s = " ".join(s.split())
            if 12 <= len(s) <= 80:
                gov.add(s)
    return [s for s in chat if s], sorted(gov)


KINDS = ("exact", "spacing", "punct", "emoticon", "edit1", "edit2")


@dataclass
class Planted:
    """What was planted: origin family of every document, and the two pair kinds."""
    family: list[int] = field(default_factory=list)  # doc index -> family (= index of its first document)
    dups: list[tuple[int, int, str]] = field(default_factory=list)  # (original, variant, kind)
    distinct: list[tuple[int, int]] = field(default_factory=list)  # (document, its look-alike)


def key_len(t: str) -> int:
    from data_prep.corpus.near_dedup.textkey import keys

    return int(keys([t]).lengths[0])


class Planter:
    """The planted changes, the same in both modes."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def respace(self, t: str) -> str:
        r = self.rng
        if r.random() < 0.3:
            return t.replace(" ", "")
        chars = []
        for c in t:
            if c == " " and r.random() < 0.5:
                continue
            chars.append(c)
            if "가" <= c <= "힣" and r.random() < 0.08:
                chars.append(" ")
        out = "".join(chars)
        return out if out != t else t.replace(" ", "", 1) if " " in t else t + " "

    def repunct(self, t: str) -> str:
        r = self.rng
        t2 = re.sub(r"[.!?,~]+", lambda m: r.choice(["", m.group(0) * 2, r.choice(PUNCT)]), t)
        if r.random() < 0.6 or t2 == t:
            t2 += r.choice(PUNCT)
        if r.random() < 0.3:
            words = t2.split(" ")
            words[r.randrange(len(words))] += r.choice(PUNCT)
            t2 = " ".join(words)
        return t2

    def reemote(self, t: str) -> str:
        r = self.rng
        if _RUN.search(t) and r.random() < 0.7:
            t2 = _RUN.sub(lambda m: "" if r.random() < 0.3 else m.group(0)[0] * r.randint(1, 7), t)
            if t2 != t:
                return t2
        return t + r.choice(["", " "]) + r.choice(EMOTICONS) * r.randint(1, 3)

    def edit_chars(self, t: str, edits: int) -> str:
        """`edits` Hangul syllables substituted, deleted or inserted (a typo, a changed particle)."""
        r = self.rng
        chars = list(t)
        for _ in range(edits):
            spots = [i for i, c in enumerate(chars) if "가" <= c <= "힣"]
            if not spots:
                break
            i, op = r.choice(spots), r.random()
            if op < 0.5:
                chars[i] = r.choice(FILLER_SYLLABLES.replace(chars[i], ""))
            elif op < 0.75:
                del chars[i]
            else:
                chars.insert(i, r.choice(FILLER_SYLLABLES))
        return "".join(chars)

    def kinds_for(self, t: str) -> list[str]:
        """The kinds a text can carry: edits need key characters to stay a copy, and a text without
        a key (only punctuation or emoticons) can only be copied exactly."""
        n = key_len(t)
        return [k for k in KINDS if not (k == "edit1" and n < 5 or k == "edit2" and n < 10 or k != "exact" and n == 0)]

    def variant(self, t: str, kind: str) -> str:
        if kind == "exact":
            return t
        if kind.startswith("edit"):
            return self.edit_chars(t, int(kind[-1]))
        return {"spacing": self.respace, "punct": self.repunct, "emoticon": self.reemote}[kind](t)


class ReviewGenerator:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.planter = Planter(self.rng)
        self.chat, self.gov = load_sentences()

    def content(self) -> str:
        r = self.rng
        kind = r.random()
        if kind < 0.55:
            return r.choice(self.chat)
        if kind < 0.92:
            return f"{r.choice(PRODUCTS)} {r.choice(ADJECTIVES)}"
        return r.choice(self.gov)

    def segments(self) -> list[tuple[str, str]]:
        """(role, text) parts of one review; role is 'frame' or 'content'."""
        r = self.rng
        segs = []
        if r.random() < 0.35:
            segs.append(("frame", r.choice(OPENINGS)))
        segs += [("content", self.content()) for _ in range(r.choice((1, 1, 2, 2, 2, 3, 4)))]
        if r.random() < 0.4:
            segs.append(("frame", r.choice(RATINGS)))
        if r.random() < 0.45:
            segs.append(("frame", r.choice(EMOTICONS)))
        return segs

    def render(self, segs: list[tuple[str, str]]) -> str:
        r = self.rng
        out = []
        for _, s in segs:
            out.append(s)
            if r.random() < 0.3:
                out.append(r.choice(PUNCT))
        return " ".join(out)

    def lookalike(self, segs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Same frame, at most one of the content parts kept, and never more than half the content."""
        r = self.rng
        content = [s for role, s in segs if role == "content"]
        total = sum(len(s) for s in content)
        keep = r.choice(content) if len(content) >= 2 and r.random() < 0.5 else None
        if keep is not None and len(keep) * 2 > total:
            keep = None
        out, kept = [], False
        for role, s in segs:
            if role == "frame":
                out.append((role, s))
            elif s == keep and not kept:
                out.append((role, s))
                kept = True
            else:
                new = self.content()
                while new == s:
                    new = self.content()
                out.append((role, new))
        return out

    def generate(self, n_docs: int, dup_rate: float = 0.08, distinct_rate: float = 0.04) -> tuple[list[str], Planted]:
        r = self.rng
        texts: list[str] = []
        segs_of: list[list[tuple[str, str]] | None] = []
        plain: list[int] = []  # documents that are neither variants nor look-alikes
        planted = Planted()
        for i in range(n_docs):
            u = r.random()
            if plain and u < dup_rate:
                j = r.choice(plain)
                kind = r.choice(self.planter.kinds_for(texts[j]))
                texts.append(self.planter.variant(texts[j], kind))
                segs_of.append(None)
                planted.family.append(planted.family[j])
                planted.dups.append((j, i, kind))
            elif plain and u < dup_rate + distinct_rate:
                j = r.choice(plain)
                segs = self.lookalike(segs_of[j])
                texts.append(self.render(segs))
                segs_of.append(segs)
                planted.family.append(i)
                planted.distinct.append((j, i))
            else:
                segs = self.segments()
                texts.append(self.render(segs))
                segs_of.append(segs)
                planted.family.append(i)
                plain.append(i)
        return texts, planted


def load_real(paths: list[Path], columns: list[str], text_key: str) -> list[str]:
    """Every text of the files, each once, in file order."""
    texts: list[str] = []
    for p in paths:
        name = p.name.lower()
        if name.endswith(".csv"):
            with open(p, encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    texts += [row[c] for c in columns if row.get(c)]
        elif name.endswith(".jsonl"):
            with open(p, encoding="utf-8") as f:
                texts += [json.loads(line)[text_key] for line in f if line.strip()]
        else:
            texts += p.read_text(encoding="utf-8").splitlines()
    return list(dict.fromkeys(" ".join(t.split()) for t in texts if t.strip()))


def plant_real(base: list[str], seed: int, share: float = 0.25, lookalikes: float = 0.1) -> tuple[list[str], Planted]:
    """The real texts in a seeded order, a planted copy of about `share` of the 10-60 character ones
    after its original, and look-alikes: the first half of a text's words with another text's ending."""
    from rapidfuzz.distance import Levenshtein

    from data_prep.corpus.near_dedup.textkey import keys

    r = random.Random(seed)
    planter = Planter(r)
    order = base[:]
    r.shuffle(order)
    texts: list[str] = []
    planted = Planted()
    pending: list[tuple[int, str, str | None, int]] = []  # (due position, text, kind or None: look-alike, original)
    for t in order:
        i = len(texts)
        texts.append(t)
        planted.family.append(i)
        words = t.split()
        if 10 <= len(t) <= 60 and key_len(t) >= 5:
            u = r.random()
            if u < share:
                kind = r.choice(planter.kinds_for(t))
                pending.append((i + r.randint(1, 2000), planter.variant(t, kind), kind, i))
            elif u < share + lookalikes and len(words) >= 3:
                other = r.choice(order).split()
                b = " ".join(words[:(len(words) + 1) // 2] + other[len(other) // 2:])
                ka, kb = keys([t, b]).key(0), keys([t, b]).key(1)
                d = Levenshtein.distance(ka, kb)
                if d >= max(3, 0.3 * max(len(ka), len(kb))):
                    pending.append((i + r.randint(1, 2000), b, None, i))
        pending.sort(key=lambda p: p[0])
        while pending and pending[0][0] <= len(texts):
            _, v, kind, j = pending.pop(0)
            _append(texts, planted, v, kind, j)
    for _, v, kind, j in pending:
        _append(texts, planted, v, kind, j)
    return texts, planted


def _append(texts: list[str], planted: Planted, text: str, kind: str | None, original: int) -> None:
    i = len(texts)
    texts.append(text)
    if kind is None:
        planted.family.append(i)
        planted.distinct.append((original, i))
    else:
        planted.family.append(planted.family[original])
        planted.dups.append((original, i, kind))


def write_corpus(texts: list[str], folder: Path, files: int) -> list[Path]:
    """Contiguous slices in order, so corpus order is document index order."""
    folder.mkdir(parents=True, exist_ok=True)
    per = -(-len(texts) // files)
    paths = []
    for f in range(files):
        p = folder / f"reviews_{f:02d}.jsonl"
        with open(p, "w", encoding="utf-8") as out:
            for i in range(f * per, min(len(texts), (f + 1) * per)):
                out.write(json.dumps({"id": f"r{i:08d}", "text": texts[i]}, ensure_ascii=False) + "\n")
        paths.append(p)
    return paths


# ---------------------------------------------------------------- our stage

@contextlib.contextmanager
def quiet(log: Path):
    """datatrove's per-task loggers write to whatever sys.stderr is when a task starts: a file here,
    so the figures stay readable (the logs are in <out>/*.log)."""
    from loguru import logger

    log.parent.mkdir(parents=True, exist_ok=True)
    saved = sys.stderr
    with open(log, "a", encoding="utf-8") as f:
        sys.stderr = f
        logger.remove()
        logger.add(f, level="INFO")
        try:
            yield
        finally:
            sys.stderr = saved
            logger.remove()
            logger.add(saved, level="WARNING")

def run_stage(files: list[Path], out: Path, near: bool, workers: int, blocks: bool, tasks: int | None = None,
              buckets: int = 2) -> dict:
    """The data stage as wired (pipeline.prepare_corpus): normalise, PII and quality when `blocks`,
    empty/length filters, exact dedup, and near-dedup when `near`."""
    from data_prep.corpus import pipeline as P
    from data_prep.corpus.near_dedup import DedupSettings
    from data_prep.corpus.readers import describe_inputs

    kw: dict = dict(min_chars=2, tasks=tasks or len(files), workers=workers,
                    dedup=DedupSettings(near=near, buckets=buckets))
    on = ["normalise"]
    for name in ("pii", "quality"):  # the stage's own defaults, switched on or off
        default = P.CorpusSettings.__dataclass_fields__[name].default_factory()
        kw[name] = dataclasses.replace(default, enabled=blocks)
        on += [name] if blocks else []
    on += ["exact"] + (["near"] if near else [])
    t0 = time.time()
    report = P.prepare_corpus(describe_inputs(files), out, P.CorpusSettings(**kw))
    return {"seconds": time.time() - t0, "report": report, "steps": " + ".join(on)}


def _quiet_stage(log: Path, *args) -> dict:
    with quiet(log):
        return run_stage(*args)


def stage_in_fresh_process(log: Path, *args) -> dict:
    """run_stage in a new (spawned) process: its peak memory is the stage's, not this script's corpus."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_quiet_stage, (log, *args))


def read_rejects(folder: Path) -> dict[int, tuple[str, int | None]]:
    """doc index -> (reason, index of the document it duplicates)."""
    import gzip

    out = {}
    for p in sorted(folder.glob("*.jsonl*")):
        with (gzip.open(p, "rt", encoding="utf-8") if p.suffix == ".gz" else open(p, encoding="utf-8")) as f:
            for line in f:
                r = json.loads(line)
                dup = r.get("duplicate_of")
                out[int(r["id"][1:])] = (r["reason"], int(dup[1:]) if dup else None)
    return out


def score(rejects: dict[int, tuple[str, int | None]], texts: list[str], planted: Planted) -> dict:
    dedup_reasons = {"duplicate_near", "duplicate_exact"}
    fam = planted.family
    per_kind = {k: [0, 0] for k in KINDS}  # kind -> [scored, caught]
    out = {"not_scored": 0, "distinct": 0, "fp": 0, "exact_left": 0, "attributed": 0, "misses": {}}
    for orig, var, kind in planted.dups:
        if orig in rejects:  # the original itself went (a copy of another text, or filtered): not scored
            out["not_scored"] += 1
            continue
        reason, dup = rejects.get(var, (None, None))
        # a copy rejected as a duplicate is caught, whichever earlier document it was matched with (an
        # earlier text that shares the original's content can be within reach of the copy too)
        hit = reason in dedup_reasons
        per_kind[kind][0] += 1
        per_kind[kind][1] += hit
        out["attributed"] += hit and fam[dup] == fam[var]
        if kind == "exact":
            out["exact_left"] += reason != "duplicate_exact"
        if not hit:
            out["misses"].setdefault(kind, []).append((texts[orig], texts[var]))
    for a, b in planted.distinct:
        reason, dup = rejects.get(b, (None, None))
        if reason and reason not in dedup_reasons:
            continue
        out["distinct"] += 1
        out["fp"] += reason in dedup_reasons and fam[dup] == fam[a]
    tp = sum(c for _, c in per_kind.values())
    out["per_kind"] = {k: (c / n if n else float("nan"), c, n) for k, (n, c) in per_kind.items()}
    out["recall"] = tp / max(1, sum(n for n, _ in per_kind.values()))
    out["precision"] = tp / max(1, tp + out["fp"])
    planted_docs = {v for _, v, _ in planted.dups} | {b for _, b in planted.distinct}
    natural = [(i, d) for i, (r, d) in rejects.items()
               if r == "duplicate_near" and i not in planted_docs and d is not None and fam[d] != fam[i]]
    out["natural"] = natural
    out["near_rejected"] = sum(r == "duplicate_near" for r, _ in rejects.values())
    out["exact_rejected"] = sum(r == "duplicate_exact" for r, _ in rejects.values())
    return out


def print_score(s: dict, texts: list[str], n_base: int) -> None:
    print("    recall per kind (planted copies of kept originals): " + ", ".join(
        f"{k} {r:.4f} ({c:,}/{n:,})" for k, (r, c, n) in s["per_kind"].items() if n))
    tp = sum(c for _, c, _ in s["per_kind"].values())
    print(f"    caught copies matched with their own original (or another copy of it): "
          f"{s['attributed'] / max(1, tp):.4f}")
    print(f"    overall recall {s['recall']:.4f}; precision {s['precision']:.4f} ({s['fp']} of {s['distinct']:,} "
          f"look-alikes taken for copies); exact copies left {s['exact_left']}; originals not scored (the stage "
          f"took them for copies of other texts) {s['not_scored']:,}")
    print(f"    rejected duplicate_near {s['near_rejected']:,}, duplicate_exact {s['exact_rejected']:,}; natural "
          f"near-duplicates among the {n_base:,} base texts: {len(s['natural']):,}")
    for i, d in s["natural"][:6]:
        print(f"      natural: {texts[i]!r} ~ {texts[d]!r}")
    for kind, ex in s["misses"].items():
        for a, b in ex[:3]:
            print(f"      missed {kind}: {a!r} -> {b!r}")


# ---------------------------------------------------------------- datatrove's own MinHash

def _xxhash_accepts_str() -> None:
    """datatrove 0.10.1 hashes n-grams as str with xxhash; xxhash 4.1 only takes bytes ("Strings must
    be encoded before hashing"). Encode as UTF-8 as older xxhash did, so datatrove runs its default
    (and fastest) hash rather than the slower sha1 alternative."""
    import xxhash

    from datatrove.utils.hashes import xxhash as dt_xxhash

    def enc(data):
        return data.encode("utf-8") if isinstance(data, str) else data

    dt_xxhash.xxhash32 = lambda data: xxhash.xxh32_intdigest(enc(data))
    dt_xxhash.xxhash64 = lambda data: xxhash.xxh64_intdigest(enc(data))


def run_datatrove(folder: Path, out: Path, workers: int, n_files: int) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                                  MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    _xxhash_accepts_str()
    shutil.rmtree(out, ignore_errors=True)
    cfg = MinhashConfig()  # 5-gram words, 14 buckets x 8 hashes, 64-bit xxhash
    reader = lambda: JsonlReader(str(folder), glob_pattern="*.jsonl")  # noqa: E731
    runs = [
        ("1 signatures", [reader(), MinhashDedupSignature(str(out / "sigs"), config=cfg, language="eng")], n_files),
        ("2 buckets", [MinhashDedupBuckets(str(out / "sigs"), str(out / "buckets"), config=cfg)], cfg.num_buckets),
        ("3 cluster", [MinhashDedupCluster(str(out / "buckets"), str(out / "remove"), config=cfg)], 1),
        ("4 filter", [reader(), MinhashDedupFilter(str(out / "remove")),
                      JsonlWriter(str(out / "deduped"), compression="gzip")], n_files),
    ]
    times = {}
    for name, steps, tasks in runs:
        t0 = time.time()
        LocalPipelineExecutor(steps, tasks=tasks, workers=min(workers, tasks), logging_dir=str(out / "logs" / name[0]),
                              skip_completed=False, start_method="fork").run()
        times[name] = time.time() - t0
    return times


def datatrove_rejects(out: Path, n_docs: int) -> dict[int, tuple[str, int | None]]:
    """datatrove writes what it keeps; everything else it removed (it does not say as a copy of what)."""
    import gzip

    kept = set()
    for p in (out / "deduped").glob("*.jsonl.gz"):
        with gzip.open(p, "rt", encoding="utf-8") as f:
            kept.update(int(json.loads(line)["id"][1:]) for line in f)
    return {i: ("duplicate_near", None) for i in range(n_docs) if i not in kept}


def datatrove_score(rejects: dict, planted: Planted) -> dict:
    caught = sum(v in rejects for _, v, _ in planted.dups)
    fp = sum(b in rejects for _, b in planted.distinct)
    return {"recall": caught / max(1, len(planted.dups)), "precision": caught / max(1, caught + fp),
            "removed": len(rejects)}


# ---------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, action="append", help="real texts (.csv, .jsonl, .txt); repeatable")
    ap.add_argument("--columns", default="Q,A", help="csv columns holding texts (real mode)")
    ap.add_argument("--text-key", default="text", help="jsonl key holding the text (real mode)")
    ap.add_argument("--docs", type=int, default=500_000, help="generated mode: documents")
    ap.add_argument("--files", type=int, default=8, help="input jsonl files")
    ap.add_argument("--tasks", type=int, help="split tasks (default: one per file)")
    ap.add_argument("--buckets", type=int, default=2, help="near pass tasks (data.dedup.buckets)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", default="stage,stage+near,dedup",
                    help="stage, stage+near, dedup, near; NAME@N: with N tasks, buckets and workers")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_data"))
    ap.add_argument("--skip-datatrove", action="store_true")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # figures appear as they come, also when piped

    t0 = time.time()
    if args.corpus:
        base = load_real(args.corpus, args.columns.split(","), args.text_key)
        texts, planted = plant_real(base, args.seed)
        what = f"real texts from {', '.join(str(p) for p in args.corpus)}: {len(base):,} distinct"
    else:
        texts, planted = ReviewGenerator(args.seed).generate(args.docs)
        base, what = texts, "generated reviews"
    files = write_corpus(texts, args.out / "input", args.files)
    n = len(texts)
    short = sum(10 <= len(t) <= 60 for t in texts)
    print(f"corpus: {what}; {n:,} documents ({short / n:.0%} of 10-60 characters), "
          f"{sum(map(len, texts)) / n:.1f} chars on average, {len(planted.dups):,} planted copies, "
          f"{len(planted.distinct):,} planted look-alikes, {args.files} files ({time.time() - t0:.1f}s to prepare)")

    runs = {"stage": (False, True), "stage+near": (True, True), "dedup": (True, False), "near": (True, False)}
    res = {}
    for label in args.runs.split(","):
        name, _, width = label.partition("@")  # near@2: 2 tasks, 2 buckets, 2 workers
        near, blocks = runs[name]
        tasks, buckets, workers = args.tasks if name == "near" else None, args.buckets, args.workers
        if width:
            tasks = buckets = workers = int(width)
        stage_args = (files, args.out / "stage", near, workers, blocks, tasks, buckets)
        if width:  # scale runs: measured in a process of their own
            r = stage_in_fresh_process(args.out / "stage.log", *stage_args)
        else:
            r = _quiet_stage(args.out / "stage.log", *stage_args)
        res[label] = r
        rep = r["report"]
        passes = ", ".join(f"{k} {v:.1f} s / {rep.peak_rss_mb.get(k, 0):,.0f} / {rep.peak_anon_mb.get(k, 0):,.0f} MB"
                           for k, v in
                           (("split", rep.split_seconds), ("near", rep.near_seconds), ("merge", rep.merge_seconds))
                           if k in rep.peak_rss_mb)
        print(f"{label:11s} {r['seconds']:8.1f} s  {n / r['seconds']:9,.0f} docs/s   [{r['steps']}; tasks {rep.tasks}, "
              f"workers {rep.workers}; pass seconds / peak RSS / peak anonymous memory: {passes}]")
        if near:
            nd = rep.near_dedup
            print(f"    near pass: {nd.get('documents', 0):,} keyed documents, {nd.get('band_entries', 0):,} band and "
                  f"{nd.get('edit_entries', 0):,} edit-filter entries, {nd.get('candidate_pairs', 0):,} candidate pairs, "
                  f"{nd.get('checked_pairs', 0):,} checked, {nd.get('similar_pairs', 0):,} similar, "
                  f"{nd.get('same_key', 0):,} same-key copies")
        if name in ("dedup", "near"):
            print_score(score(read_rejects(args.out / "stage" / "rejected"), texts, planted), texts, len(base))

    if not args.skip_datatrove:
        with quiet(args.out / "datatrove.log"):
            times = run_datatrove(args.out / "input", args.out / "datatrove", args.workers, args.files)
        total = sum(times.values())
        print(f"datatrove MinHash (4 steps) {total:8.1f} s  {n / total:9,.0f} docs/s   "
              + ", ".join(f"{k} {v:.1f}s" for k, v in times.items()))
        d = datatrove_score(datatrove_rejects(args.out / "datatrove", n), planted)
        print(f"    on planted pairs: recall {d['recall']:.4f}, precision {d['precision']:.4f}, "
              f"removed {d['removed']:,}")
        for label in ("stage+near", "dedup"):
            if label in res:
                print(f"speed-up of '{label}' over datatrove's MinHash: {total / res[label]['seconds']:.2f}x")


if __name__ == "__main__":
    main()
