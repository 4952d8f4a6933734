"""Benchmark: the data stage on >= 500k short Korean review-like documents, with and without
near-dedup, against datatrove's own four-step MinHash pipeline on the same input and cores.

    python scripts/bench_data.py [--docs 500000] [--workers 2] [--out /tmp/bench_data] [--skip-datatrove]

Runs the stage as wired (pipeline.prepare_corpus, 8 input files, 2 workers) three times:
normalise + PII + quality + exact dedup; the same plus near-dedup; normalise + exact + near
alone, where near-dup recall and precision on the planted pairs are measured (no other filter
takes copies out of play). Then datatrove's four MinHash steps on the same files. Prints wall
times, docs/s, speed ratios and the recall/precision figures.

The corpus (seeded, generated here): reviews built from ChatbotData sentences, product
opinions, ratings, openings and emoticon runs, a few government sentences; then
  - planted near-duplicates: a copy of an earlier document with its spacing, punctuation
    and/or emoticon runs changed, and in half of them a few characters edited as well
    (1 edit for a 20-49 character key, 2 for 50-99, 3 beyond; none under 20: one edit in
    fewer characters is a different short text for the stage, by design);
  - planted distinct pairs: a later document that keeps an earlier one's frame (opening,
    rating, emoticons) and at most one of its content sentences, the rest replaced: a
    different review that looks alike.
Recall: planted near-duplicates rejected as duplicates of their original, of a document with
the same origin, or of the document their original was itself rejected as a duplicate of. Precision: TP / (TP + planted distinct partners rejected as
duplicates of their look-alike).

datatrove's MinhashDedupSignature tokenises words with the tokenizer of a language; its
Korean one asks kiwipiepy for a model that is no longer distributed, so it runs here with
language="eng" (spaCy's blank English tokenizer, which splits Korean on spaces and
punctuation), its default MinhashConfig otherwise (5-word n-grams, 14 buckets x 8 hashes,
xxhash; with xxhash 4.1 installed, its str n-grams are UTF-8 encoded first, see
_xxhash_accepts_str).
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


@dataclass
class Planted:
    """What the generator planted: origin family of every document, and the two pair kinds."""
    family: list[int] = field(default_factory=list)  # doc index -> family (= index of its first document)
    dups: list[tuple[int, int, str]] = field(default_factory=list)  # (original, variant, kinds)
    distinct: list[tuple[int, int]] = field(default_factory=list)  # (document, its look-alike)


class ReviewGenerator:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
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

    # -- planted near-duplicates
    def respace(self, t: str) -> str:
        r = self.rng
        mode = r.random()
        if mode < 0.3:
            return t.replace(" ", "")
        chars = []
        for i, c in enumerate(t):
            if c == " " and r.random() < 0.5:
                continue
            chars.append(c)
            if "가" <= c <= "힣" and r.random() < 0.08:
                chars.append(" ")
        return "".join(chars)

    def repunct(self, t: str) -> str:
        r = self.rng
        t = re.sub(r"[.!?,~]+", lambda m: r.choice(["", m.group(0) * 2, r.choice(PUNCT)]), t)
        if r.random() < 0.6:
            t = t + r.choice(PUNCT)
        if r.random() < 0.3:
            words = t.split(" ")
            i = r.randrange(len(words))
            words[i] += r.choice(PUNCT)
            t = " ".join(words)
        return t

    def reemote(self, t: str) -> str:
        r = self.rng
        if _RUN.search(t) and r.random() < 0.7:
            return _RUN.sub(lambda m: "" if r.random() < 0.3 else m.group(0)[0] * r.randint(1, 7), t)
        return t + r.choice(["", " "]) + r.choice(EMOTICONS) * r.randint(1, 3)

    def edit_chars(self, t: str, edits: int) -> str:
        r = self.rng
        chars = list(t)
        for _ in range(edits):
            spots = [i for i, c in enumerate(chars) if "가" <= c <= "힣"]
            if not spots:
                break
            i = r.choice(spots)
            op = r.random()
            if op < 0.5:
                chars[i] = r.choice(FILLER_SYLLABLES.replace(chars[i], ""))
            elif op < 0.75:
                del chars[i]
            else:
                chars.insert(i, r.choice(FILLER_SYLLABLES))
        return "".join(chars)

    def variant(self, t: str) -> tuple[str, str]:
        r = self.rng
        norm = ["spacing", "punct", "emoticon"]
        kinds = [k for k in norm if r.random() < 0.6] or [r.choice(norm)]
        for k in kinds:
            t = {"spacing": self.respace, "punct": self.repunct, "emoticon": self.reemote}[k](t)
        key_len = sum(c.isalnum() and not ("ㄱ" <= c <= "ㅣ") for c in t)
        if r.random() < 0.5 and key_len >= 20:
            edits = 1 if key_len < 50 else 2 if key_len < 100 else 3
            t = self.edit_chars(t, edits)
            kinds.append(f"chars{edits}")
        return t, "+".join(kinds)

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
                t, kinds = self.variant(texts[j])
                texts.append(t)
                segs_of.append(None)
                planted.family.append(planted.family[j])
                planted.dups.append((j, i, kinds))
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


def write_corpus(texts: list[str], folder: Path, files: int) -> list[Path]:
    """Contiguous slices in order, so corpus order is document index order."""
    folder.mkdir(parents=True, exist_ok=True)
    per = -(-len(texts) // files)
    paths = []
    for f in range(files):
        p = folder / f"reviews_{f:02d}.jsonl"
        with open(p, "w", encoding="utf-8") as out:
            for i in range(f * per, min(len(texts), (f + 1) * per)):
                out.write(json.dumps({"id": f"r{i:07d}", "text": texts[i]}, ensure_ascii=False) + "\n")
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

def run_stage(files: list[Path], out: Path, near: bool, workers: int, blocks: bool) -> dict:
    """The data stage as wired (pipeline.prepare_corpus): normalise, PII and quality when `blocks`,
    empty/length filters, exact dedup, and near-dedup when `near`."""
    from data_prep.corpus import pipeline as P
    from data_prep.corpus.near_dedup import DedupSettings
    from data_prep.corpus.readers import describe_inputs

    kw: dict = dict(min_chars=2, tasks=len(files), workers=workers, dedup=DedupSettings(near=near))
    on = ["normalise"]
    for name in ("pii", "quality"):  # the stage's own defaults, switched on or off
        default = P.CorpusSettings.__dataclass_fields__[name].default_factory()
        kw[name] = dataclasses.replace(default, enabled=blocks)
        on += [name] if blocks else []
    on += ["exact"] + (["near"] if near else [])
    t0 = time.time()
    report = P.prepare_corpus(describe_inputs(files), out, P.CorpusSettings(**kw))
    return {"seconds": time.time() - t0, "report": report, "steps": " + ".join(on)}


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


def merged_families(texts: list[str], planted: Planted) -> list[int]:
    """Families whose first documents have the same key (generated twice by chance) are one family:
    a copy of either is a true duplicate of both."""
    from data_prep.corpus.near_dedup.textkey import keys

    roots = sorted(set(planted.family))
    k = keys([texts[r] for r in roots])
    first: dict[str, int] = {}
    canon = {r: first.setdefault(k.key(i), r) for i, r in enumerate(roots)}
    return [canon[f] for f in planted.family]


def score(rejects: dict[int, tuple[str, int | None]], texts: list[str], planted: Planted) -> dict:
    fam = merged_families(texts, planted)
    dedup_reasons = {"duplicate_near", "duplicate_exact"}
    out = {"dups": 0, "caught": 0, "chars": 0, "chars_caught": 0, "excluded": 0, "distinct": 0, "fp": 0}
    def kept_root(i: int) -> int:
        """The kept document i was (transitively) taken for a duplicate of; i itself if kept."""
        while i in rejects and rejects[i][1] is not None:
            i = rejects[i][1]
        return i

    for orig, var, kinds in planted.dups:
        reason, dup = rejects.get(var, (None, None))
        if (reason and reason not in dedup_reasons) or (orig in rejects and rejects[orig][0] not in dedup_reasons):
            out["excluded"] += 1  # an earlier filter took the original or the copy out of play
            continue
        # a copy of the original, or of what the original itself was taken for a copy of
        hit = reason in dedup_reasons and (fam[dup] == fam[var] or dup == kept_root(orig))
        out["dups"] += 1
        out["caught"] += hit
        if "chars" in kinds:
            out["chars"] += 1
            out["chars_caught"] += hit
    for a, b in planted.distinct:
        reason, dup = rejects.get(b, (None, None))
        if reason and reason not in dedup_reasons:
            continue
        out["distinct"] += 1
        out["fp"] += reason in dedup_reasons and fam[dup] == fam[a]
    tp, fp = out["caught"], out["fp"]
    out["recall"] = tp / max(1, out["dups"])
    out["precision"] = tp / max(1, tp + fp)
    out["near_rejected"] = sum(r == "duplicate_near" for r, _ in rejects.values())
    out["exact_rejected"] = sum(r == "duplicate_exact" for r, _ in rejects.values())
    return out


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
    ap.add_argument("--docs", type=int, default=500_000)
    ap.add_argument("--files", type=int, default=8, help="input jsonl files (tasks of the parallel passes)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_data"))
    ap.add_argument("--skip-datatrove", action="store_true")
    ap.add_argument("--no-blocks", action="store_true", help="leave out the quality and PII steps")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # figures appear as they come, also when piped

    t0 = time.time()
    texts, planted = ReviewGenerator(args.seed).generate(args.docs)
    files = write_corpus(texts, args.out / "input", args.files)
    chars = sum(map(len, texts))
    print(f"corpus: {len(texts):,} documents, {chars / len(texts):.1f} chars on average, {len(planted.dups):,} planted "
          f"near-duplicates, {len(planted.distinct):,} planted distinct look-alikes, {args.files} files "
          f"({time.time() - t0:.1f}s to generate)")

    n = len(texts)
    res = {}
    for label, near, blocks in (("stage without near-dedup", False, not args.no_blocks),
                                ("stage with near-dedup", True, not args.no_blocks),
                                ("dedup only (exact + near)", True, False)):
        if label == "dedup only (exact + near)" and args.no_blocks:
            continue
        with quiet(args.out / "stage.log"):
            r = run_stage(files, args.out / "stage", near, args.workers, blocks)
        res[label] = r
        rep = r["report"]
        print(f"{label:28s} {r['seconds']:8.1f} s  {n / r['seconds']:9,.0f} docs/s   [{r['steps']}; parallel pass "
              f"{rep.split_seconds:.1f} s, merge pass {rep.merge_seconds:.1f} s]")
        if near and not blocks:
            s = score(read_rejects(args.out / "stage" / "rejected"), texts, planted)
            print(f"    near-dup on planted pairs: recall {s['recall']:.4f} ({s['caught']:,}/{s['dups']:,}; with "
                  f"character edits {s['chars_caught'] / max(1, s['chars']):.4f} of {s['chars']:,}), precision "
                  f"{s['precision']:.4f} ({s['fp']} of {s['distinct']:,} look-alikes taken for copies); rejected "
                  f"duplicate_near {s['near_rejected']:,}, duplicate_exact {s['exact_rejected']:,}")
    near_s = res["stage with near-dedup"]["seconds"] - res["stage without near-dedup"]["seconds"]
    print(f"near-dedup adds {near_s:.1f} s to the stage")

    if not args.skip_datatrove:
        with quiet(args.out / "datatrove.log"):
            times = run_datatrove(args.out / "input", args.out / "datatrove", args.workers, args.files)
        total = sum(times.values())
        print(f"datatrove MinHash (4 steps)  {total:8.1f} s  {n / total:9,.0f} docs/s   "
              + ", ".join(f"{k} {v:.1f}s" for k, v in times.items()))
        d = datatrove_score(datatrove_rejects(args.out / "datatrove", n), planted)
        print(f"    on planted pairs: recall {d['recall']:.4f}, precision {d['precision']:.4f}, "
              f"removed {d['removed']:,}")
        for label in ("stage with near-dedup", "dedup only (exact + near)"):
            if label in res:
                print(f"speed-up of '{label}' over datatrove's MinHash: {total / res[label]['seconds']:.2f}x")


if __name__ == "__main__":
    main()
