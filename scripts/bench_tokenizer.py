"""Benchmark: the tokenizer stage on a >= 20M-character Korean corpus with a held-out split.

    python scripts/bench_tokenizer.py [--chars 20000000] [--vocab 32000] [--out /tmp/bench_tokenizer]
                                      [--skip-morpheme] [--skip-kiwi]

Prints, on the held-out split (2% of documents by id hash, never trained on):
  - training time of our lossless sentencepiece BPE at --vocab (through the stage's build_tokenizer);
  - characters per token, bytes per token, byte-fallback and unknown rates, round-trip exactness for:
      ours                       lossless BPE (identity normaliser, byte fallback, digits split,
                                 newlines and punctuation merging into pieces)
      ours, morpheme-aware       the same with kiwipiepy morpheme boundaries (tokenizer.morpheme_aware)
      sentencepiece defaults     plain SentencePieceTrainer.train(model_type=bpe, vocab_size) on the
                                 corpus's lines, as spm_train reads a text file (NFKC, whitespace
                                 collapsed, newlines gone: lossy; digits not split)
      kiwipiepy BPE              kiwipiepy.bpe_trainer.train_bpe_tokenizer at the same vocab size
      English-centric baseline   a GPT-2-style byte-level BPE trained here on English text (Python's own
                                 documentation, pydoc), the kind of tokenizer an English model ships
  - round-trip exactness of ours through transformers' AutoTokenizer (target 100%);
  - pre-tokenisation throughput with ours: scripts/bench_shards.py --tokenizer <out>/ours (the shards
    writer vs tokenizers' encode_batch on 2 cores; target >= 0.8x), unless --skip-shards.
Targets: ours no worse than sentencepiece defaults in characters per token, while lossless.

The corpus (seeded, generated here from the repo's examples/data): government notices built from
clause templates (agencies, laws and articles, dates, amounts, statistics), sentences of the
constitution and the ten bills, civil-petition Q&A from ChatbotData, and product reviews
(scripts/bench_data.py's generator). Generated text repeats phrases more than real text, so
every tokenizer's characters per token is higher than on real text; the comparison is on the
same text for all.
"""

from __future__ import annotations

import argparse
import gzip
import json
import pydoc
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

AGENCIES = ["행정안전부", "보건복지부", "국토교통부", "교육부", "기획재정부", "고용노동부", "환경부", "법무부", "국방부",
            "과학기술정보통신부", "농림축산식품부", "산업통상자원부", "중소벤처기업부", "문화체육관광부", "여성가족부",
            "서울특별시", "부산광역시", "대구광역시", "인천광역시", "광주광역시", "대전광역시", "경기도", "강원특별자치도",
            "충청북도", "전라남도", "경상북도", "제주특별자치도", "세종특별자치시", "국세청", "관세청", "통계청", "조달청",
            "경찰청", "소방청", "기상청", "식품의약품안전처", "국민권익위원회", "개인정보보호위원회", "감사원"]
LAWS = ["지방공무원법", "국가공무원법", "개인정보 보호법", "민원 처리에 관한 법률", "행정절차법", "공공기관의 정보공개에 관한 법률",
        "국가재정법", "지방자치법", "도로교통법", "건축법", "주택법", "근로기준법", "고용보험법", "국민건강보험법",
        "사회보장기본법", "재난 및 안전관리 기본법", "전자정부법", "공공데이터의 제공 및 이용 활성화에 관한 법률",
        "부가가치세법", "소득세법", "청소년 보호법", "아동복지법", "노인복지법", "장애인복지법", "환경정책기본법"]
TOPICS = ["육아휴직", "청년 일자리", "주거 급여", "기초연금", "재난지원금", "공공임대주택", "미세먼지 저감", "탄소중립",
          "디지털 전환", "민원 처리 기간", "정보공개 청구", "전통시장 활성화", "소상공인 지원", "출산 장려금",
          "노후 상수관로 교체", "어린이 보호구역", "대중교통 요금", "공무원 보수", "지방세 감면", "농어촌 기본소득",
          "감염병 예방", "폭염 대비", "교통안전 시설", "공공 와이파이", "스마트팜", "평생교육 바우처", "돌봄 서비스"]
DOC_TYPES = ["보도자료", "고시", "공고", "지침", "계획", "시행령 개정안", "조례안", "업무보고", "결과보고서", "안내문"]
OPENERS = ["{agency}는 {date} {topic} 관련 {doc}를 발표하였다.", "{agency}는 {topic} 제도를 {date}부터 개편한다고 밝혔다.",
           "{date} {agency}에서 열린 회의에서 {topic} 추진 현황이 보고되었다.",
           "「{law}」 제{a}조 제{b}항에 따라 {topic} 기준을 다음과 같이 {doc}합니다.",
           "{agency} {topic} 담당 부서는 {date}까지 의견을 받는다.", "{topic}에 관한 {doc}를 다음과 같이 알려 드립니다."]
BODIES = ["올해 예산은 {amount}원으로 전년보다 {pct}% 늘었다.", "지원 대상은 {n}명이며 신청은 {date}까지 가능하다.",
          "대상자는 주민등록상 주소지 읍·면·동 행정복지센터에 신청하면 된다.",
          "지원 금액은 1인당 월 {small}원이고 최대 {m}개월까지 받을 수 있다.",
          "「{law}」 제{a}조의{c}에 근거하여 {topic} 사업을 시행한다.", "처리 기간은 접수일로부터 {m}일 이내이다.",
          "관련 통계에 따르면 {year}년 {topic} 이용자는 {n}명으로 집계되었다.",
          "다만, 제{a}조 제{b}항 각 호의 어느 하나에 해당하는 경우에는 그러하지 아니하다.",
          "자세한 내용은 {agency} 누리집 공지사항에서 확인할 수 있다.", "문의는 {agency} {topic}과(☎ 044-{tel})로 하면 된다.",
          "시범 사업은 {region} 등 {m}개 지역에서 먼저 실시된다.", "이번 조치로 약 {n}가구가 혜택을 볼 것으로 예상된다.",
          "위반 시 {small}원 이하의 과태료가 부과될 수 있다.", "신청서는 별지 제{a}호 서식에 따른다."]
CLOSERS = ["앞으로도 국민 불편을 줄이기 위해 노력하겠다고 말했다.", "많은 관심과 참여를 바랍니다.",
           "이 고시는 발령한 날부터 시행한다.", "세부 일정은 추후 공지할 예정이다.", "끝."]
REGIONS = ["서울", "부산", "대구", "인천", "광주", "대전", "울산", "세종", "수원", "청주", "전주", "창원", "제주", "춘천", "안동"]


class CorpusGenerator:
    def __init__(self, seed: int):
        from bench_data import ReviewGenerator, load_sentences

        self.rng = random.Random(seed)
        self.reviews = ReviewGenerator(seed + 1)
        self.chat, self.gov = load_sentences()
        with open(ROOT / "examples" / "data" / "ko-chatbot" / "ChatbotData.csv", encoding="utf-8") as f:
            import csv
            self.qa = [(r["Q"].strip(), r["A"].strip()) for r in csv.DictReader(f)]

    def _fill(self, template: str) -> str:
        r = self.rng
        return template.format(
            agency=r.choice(AGENCIES), law=r.choice(LAWS), topic=r.choice(TOPICS), doc=r.choice(DOC_TYPES),
            date=r.choice(["올해", "내년", "지난달", "이달", "다음 달", f"{r.randint(1, 12)}월", f"{r.randint(2015, 2026)}년"]), a=r.randint(1, 120),
            b=r.randint(1, 9), c=r.randint(2, 5), amount=f"{r.randint(1, 999)}억",
            pct=round(r.uniform(0.1, 35.0), 1), n=f"{r.randint(10, 9000):,}", small=f"{r.randint(1, 50) * 10}만",
            m=r.randint(2, 24), year=r.randint(2010, 2025), tel=f"{r.randint(200, 999)}-{r.randint(1000, 9999)}",
            region=", ".join(r.sample(REGIONS, 2)))

    def notice(self) -> str:
        r = self.rng
        lines = [self._fill(r.choice(OPENERS))]
        for _ in range(r.randint(2, 8)):
            # half templated clauses, half real sentences of the constitution and bills: about the digit
            # share of real government text (5.5% in examples/data/ko-gov-sample)
            lines.append(self._fill(r.choice(BODIES)) if r.random() < 0.5 else r.choice(self.gov))
        lines.append(r.choice(CLOSERS))
        sep = r.choice(["\n", " ", "\n\n"])
        return sep.join(lines)

    def petition(self) -> str:
        r = self.rng
        q, a = r.choice(self.qa)
        agency = r.choice(AGENCIES)
        return (f"[민원] {r.choice(TOPICS)} 문의\n질문: {q} {r.choice(self.chat)}\n"
                f"답변: 안녕하십니까, {agency}입니다. {a} {self._fill(r.choice(BODIES))}")

    def documents(self, chars: int):
        """(id, text, source) until `chars` characters."""
        total, i = 0, 0
        while total < chars:
            kind = self.rng.random()
            if kind < 0.55:
                text, source = self.notice(), "gov"
            elif kind < 0.8:
                text, source = self.petition(), "civil"
            else:
                text, source = self.reviews.render(self.reviews.segments()), "reviews"
            total += len(text)
            yield f"{source}-{i:07d}", text, source
            i += 1


def english_text(max_chars: int = 6_000_000) -> list[str]:
    """Python's own documentation: English prose an English-centric tokenizer is at home with."""
    import pkgutil

    out, total = [], 0
    for mod in sorted(m.name for m in pkgutil.iter_modules() if not m.name.startswith("_")):
        try:
            text = pydoc.render_doc(mod, renderer=pydoc.plaintext)
        except Exception:  # modules that fail to import here are just skipped
            continue
        out.append(text)
        total += len(text)
        if total >= max_chars:
            break
    return out


def english_baseline(out: Path, vocab: int):  # -> tokenizers.Tokenizer
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"], show_progress=False)
    tok.train_from_iterator(english_text(), trainer)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    return tok


def spm_defaults(train: list[str], out: Path, vocab: int):
    import io

    import sentencepiece as spm

    from data_prep.tokenizer.train import lines

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=lines(train), model_writer=buf, model_type="bpe",
                                   vocab_size=vocab, num_threads=2, minloglevel=2)
    out.mkdir(parents=True, exist_ok=True)
    (out / "spm_defaults.model").write_bytes(buf.getvalue())
    return spm.SentencePieceProcessor(model_proto=buf.getvalue())


def score_spm(sp, docs: list[tuple[str, str]]) -> dict:
    chars = sum(len(t) for _, t in docs)
    ids = sp.encode([t for _, t in docs])
    tokens = sum(map(len, ids))
    exact = sum(sp.decode(i) == t for i, (_, t) in zip(ids, docs))
    unk = sum(x == sp.unk_id() for i in ids for x in i)
    return {"chars_per_token": round(chars / tokens, 4),
            "bytes_per_token": round(sum(len(t.encode()) for _, t in docs) / tokens, 4),
            "byte_fallback_rate": 0.0, "unk_rate": round(unk / tokens, 6), "roundtrip_exact": round(exact / len(docs), 6)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chars", type=int, default=20_000_000)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_tokenizer"))
    ap.add_argument("--skip-morpheme", action="store_true")
    ap.add_argument("--skip-kiwi", action="store_true")
    ap.add_argument("--skip-shards", action="store_true")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)

    from data_prep.hashing import id_hash
    from data_prep.tokenizer import report as RPT
    from data_prep.tokenizer.build import BuildSettings, build_tokenizer

    t0 = time.time()
    docs = list(CorpusGenerator(args.seed).documents(args.chars))
    held = [(d, t) for d, t, _ in docs if id_hash(d) < 0.02 * 2**64]
    train = [(d, t, s) for d, t, s in docs if id_hash(d) >= 0.02 * 2**64]
    clean = args.out / "clean"
    clean.mkdir(parents=True, exist_ok=True)
    with gzip.open(clean / "000_00000.jsonl.gz", "wt", encoding="utf-8", compresslevel=1) as f:
        for d, t, s in train:
            f.write(json.dumps({"id": d, "text": t, "metadata": {"source": s}}, ensure_ascii=False) + "\n")
    train_chars = sum(len(t) for _, t, _ in train)
    digits = sum(c.isdigit() for _, t, _ in docs for c in t) / sum(len(t) for _, t, _ in docs)
    print(f"corpus: {len(docs):,} documents, {sum(len(t) for _, t, _ in docs):,} characters ({digits:.1%} digits); "
          f"training {train_chars:,}, "
          f"held out {len(held):,} documents ({sum(len(t) for _, t in held):,} characters) "
          f"[{time.time() - t0:.1f} s to generate]")

    rows: dict[str, dict] = {}
    common = dict(vocab_size=args.vocab, heldout_fraction=0.0, input_sentence_size=2_000_000, num_threads=2)
    t = time.time()
    _, m = build_tokenizer(clean, args.out / "ours", BuildSettings(**common))
    ours_seconds = time.time() - t
    print(f"ours: trained {args.vocab:,} pieces in {m['train_seconds']:.1f} s ({ours_seconds:.1f} s with export "
          f"and checks), {m['training_sentences']:,} sentences")
    ours = RPT.load_tokenizer_json(args.out / "ours")
    rows["ours (lossless BPE)"] = RPT.score(ours, held)

    if not args.skip_morpheme:
        t = time.time()
        _, mm = build_tokenizer(clean, args.out / "ours_morph", BuildSettings(morpheme_aware=True, **common))
        print(f"ours, morpheme-aware: {time.time() - t:.1f} s in all (kiwipiepy segmentation + training)")
        rows["ours, morpheme-aware"] = RPT.score(RPT.load_tokenizer_json(args.out / "ours_morph"), held)

    t = time.time()
    sp = spm_defaults([t_ for _, t_, _ in train], args.out / "spm_defaults", args.vocab)
    print(f"sentencepiece defaults: trained in {time.time() - t:.1f} s")
    rows["sentencepiece defaults"] = score_spm(sp, held)

    if not args.skip_kiwi:
        from kiwipiepy import Kiwi
        from kiwipiepy.bpe_trainer import train_bpe_tokenizer

        t = time.time()
        path = args.out / "kiwi_bpe" / "tokenizer.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        train_bpe_tokenizer(str(path), (t_ for _, t_, _ in train), vocab_size=args.vocab, kiwi=Kiwi(num_workers=2),
                            pretokenize_j=True, pretokenize_e=True, num_workers=2, show_progress=False)
        print(f"kiwipiepy BPE (josa/eomi boundaries): trained in {time.time() - t:.1f} s")
        rows["kiwipiepy BPE"] = RPT.score(RPT.load_tokenizer_json(path.parent), held)

    t = time.time()
    rows["English-centric byte-level BPE"] = RPT.score(english_baseline(args.out / "english", args.vocab), held)
    print(f"English-centric baseline: trained in {time.time() - t:.1f} s on Python's documentation")

    from transformers import AutoTokenizer

    auto = AutoTokenizer.from_pretrained(str(args.out / "ours"))
    exact = sum(auto.decode(auto.encode(t_, add_special_tokens=False)) == t_ for _, t_ in held)
    print(f"\nround trip through AutoTokenizer (ours): {exact:,}/{len(held):,} = {exact / len(held):.4%}")

    cols = ("chars_per_token", "bytes_per_token", "byte_fallback_rate", "unk_rate", "roundtrip_exact")
    print(f"\nheld-out split, vocab {args.vocab:,}:")
    print(f"{'tokenizer':32s}" + "".join(f"{c:>20s}" for c in cols))
    for name, r in rows.items():
        print(f"{name:32s}" + "".join(f"{r[c]:>20}" for c in cols))
    a, b = rows["ours (lossless BPE)"]["chars_per_token"], rows["sentencepiece defaults"]["chars_per_token"]
    print(f"\nours / sentencepiece defaults, characters per token: {a / b:.3f} (target >= 1.0, and lossless)")
    if "ours, morpheme-aware" in rows:
        c = rows["ours, morpheme-aware"]["chars_per_token"]
        print(f"morpheme-aware costs {1 - c / a:.1%} of characters per token")
    if not args.skip_shards:
        import subprocess

        print("\npre-tokenisation with ours (scripts/bench_shards.py):")
        subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_shards.py"), "--tokenizer", str(args.out / "ours"),
                        "--out", str(args.out / "shards"), "--repeat", "2"], check=True)


if __name__ == "__main__":
    main()
