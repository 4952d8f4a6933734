"""SFT packing keeps attention within each record (kgov_train.train.packing, TRL 1.16 packing_strategy='bfd').

The packed batches come from a real SFTTrainer (its packed dataset and its padding-free collator: one row, no
attention_mask, position_ids restarting at 0 per record). Every record's per-token log-probabilities in the packed
batch must equal those of the same record run alone, unpacked (within 1e-5), with sdpa (the project's default) and
eager. The control, the same row without position_ids, must differ: the check would see a leak. ~15 s.
flex_attention was measured the same way by hand (max difference 4.8e-7) but compiles for ~80 s on 2 cores.
"""

from __future__ import annotations

import pytest

from tests.test_lora import build_tokenizer, lora_cfg, tiny_model

Q = ["여권 재발급은 어디서 하나요?", "주민등록등본은 어떻게 발급받나요?", "전입신고 기한은?", "세금 납부일을 알려주세요.",
     "운전면허 갱신은요?"]
A = ["가까운 시·군·구청 여권과에서 신청할 수 있습니다.", "정부24에서 온라인으로 발급받을 수 있습니다.",
     "이사한 날부터 14일 이내입니다.", "매년 7월과 9월입니다.", "경찰서나 운전면허시험장에서 합니다."]


def records() -> list[dict]:
    return [{"messages": [{"role": "user", "content": Q[i % 5]}, {"role": "assistant", "content": A[(i * 3) % 5]}]}
            for i in range(15)]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("tok"))


def sft_trainer(model, tokenizer, out, **packing):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=str(out), max_length=96, per_device_train_batch_size=2, use_cpu=True, bf16=False,
                     report_to="none", assistant_only_loss=True, max_steps=1, disable_tqdm=True, **packing)
    return SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(records()), processing_class=tokenizer)


def test_packing_kwargs_follow_the_recipe():
    from kgov_train.train.packing import PackingError, packing_kwargs

    assert packing_kwargs(lora_cfg(), "sft") == {"packing": False}
    on = lora_cfg("sft.packing=true")
    assert packing_kwargs(on, "sft") == {"packing": True, "packing_strategy": "bfd", "padding_free": True}
    assert packing_kwargs(on, "sft_domain", "eager")["packing"] is True
    # The message names the key that switched packing on: sft's, inherited, or the named stage's own.
    with pytest.raises(PackingError, match=r"^sft\.packing=true: model\.attn_implementation=paged"):
        packing_kwargs(on, "sft_general", "paged|sdpa")
    own = lora_cfg("+sft_stages.sft_general.packing=true")
    with pytest.raises(PackingError, match=r"^sft_stages\.sft_general\.packing=true: model\.attn_implementation"):
        packing_kwargs(own, "sft_general", "paged|sdpa")
    assert packing_kwargs(own, "sft_domain", "paged|sdpa") == {"packing": False}


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_records_do_not_attend_to_each_other(tokenizer, tmp_path, attn):
    import torch

    from kgov_train.train.packing import packing_kwargs

    model = tiny_model(tokenizer, attn=attn).eval()
    packed = sft_trainer(model, tokenizer, tmp_path / "packed", **packing_kwargs(lora_cfg("sft.packing=true"), "sft"))
    assert packed.padding_free and packed.args.packing_strategy == "bfd"
    plain = sft_trainer(model, tokenizer, tmp_path / "plain", packing=False)
    alone = {tuple(ex["input_ids"]): ex for ex in plain.train_dataset}  # every record tokenised, unpacked
    assert max(len(r) for r in packed.train_dataset["seq_lengths"]) >= 2, "no row holds two records"

    worst, leak, segments = 0.0, 0.0, 0
    for batch in packed.get_train_dataloader():
        assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1  # padding-free: one row
        with torch.no_grad():
            log_probs = model(**batch, fused_lm_head=True).log_probs[0]  # as TRL's compute_loss calls it
            no_pos = model(input_ids=batch["input_ids"], labels=batch["labels"], fused_lm_head=True).log_probs[0]
        pos = batch["position_ids"][0]
        starts = (pos == 0).nonzero().flatten().tolist() + [len(pos)]
        for s, e in zip(starts[:-1], starts[1:]):
            ids = batch["input_ids"][0, s:e]
            rec = alone[tuple(ids.tolist())]  # the packed segment is exactly one whole record
            labels = torch.tensor(rec["labels"])  # -100 outside the assistant's answers
            assert (labels != -100).any() and (labels == -100).any()
            assert torch.equal(batch["labels"][0, s + 1:e], labels[1:]), "the packed labels are the record's"
            with torch.no_grad():
                ref = model(input_ids=ids[None], labels=labels[None], fused_lm_head=True).log_probs[0]
            worst = max(worst, (log_probs[s:e - 1] - ref).abs().max().item())
            leak = max(leak, (no_pos[s:e - 1] - ref).abs().max().item())
            segments += 1
    print(f"{attn}: {segments} records in {len(packed.train_dataset)} packed rows; max |packed - alone| "
          f"{worst:.2e}; without position_ids {leak:.2e}")
    assert segments == len(records())
    assert worst < 1e-5, f"{attn}: packed records see each other (max log-prob difference {worst:.2e})"
    assert leak > 1e-3, "the control (no position_ids) should mix records"


def test_wrapped_packing_would_mix_records(tokenizer, tmp_path):
    """Why packing_kwargs never picks 'wrapped': its rows keep an all-ones attention_mask and no position_ids, and
    cut records at the row end."""
    trainer = sft_trainer(tiny_model(tokenizer), tokenizer, tmp_path, packing=True, packing_strategy="wrapped")
    batch = next(iter(trainer.get_train_dataloader()))
    assert not trainer.padding_free and "position_ids" not in batch and bool(batch["attention_mask"].all())
