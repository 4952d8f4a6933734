"""DPO with LoRA and the held-out preference figures (kgov_train.train.preference).

A learnable toy preference on a random tiny Llama (tests/test_lora.py helpers): for a public-service question the
chosen answer is always a polite "…해 드리겠습니다." phrase (16 tokens) and the rejected one a brush-off (13-14
tokens). The random model gives every token about the same log-probability (-ln 1000), so before training the
longer chosen answer is less likely on every held-out pair: the policy's log-prob accuracy starts at 0. After a few
dozen DPO steps it must prefer the chosen answer on the held-out prompts. ~35 s without the slow test, ~45 s more
with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_lora import TARGETS, build_tokenizer, save_base, tiny_model, torchrun

GOOD = ["안내해 드리겠습니다.", "확인해 드리겠습니다.", "설명해 드리겠습니다.", "처리해 드리겠습니다."]
BAD = ["전혀 모르겠습니다.", "직접 찾아보세요.", "그건 제 일이 아닙니다."]
TOPICS = ["여권", "주민등록", "전입신고", "세금", "자동차", "건강보험", "연금", "복지", "교육", "주택", "운전면허", "인감"]


def pairs(ids) -> list[dict]:
    return [{"prompt": [{"role": "user", "content": f"{TOPICS[i % 12]} 관련 문의 {i}번입니다."}],
             "chosen": [{"role": "assistant", "content": GOOD[i % 4]}],
             "rejected": [{"role": "assistant", "content": BAD[i % 3]}]} for i in ids]


TRAIN, HELDOUT = range(0, 48), range(100, 124)  # held-out prompts are new (other numbers)


def lora_config(modules_to_save=None):
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS,
                      modules_to_save=modules_to_save)


def dpo_args(out: Path, steps: int, lr: float, **extra):
    """Build it before the model: with a ZeRO-3 DeepSpeed config, from_pretrained then loads partitioned."""
    from trl import DPOConfig

    kw = {"per_device_train_batch_size": 8, "per_device_eval_batch_size": 8, "activation_checkpointing": False,
          **extra}  # TRL's configs default activation checkpointing to True, the recipes to False
    return DPOConfig(output_dir=str(out), max_length=64, learning_rate=lr, max_steps=steps, beta=0.1, use_cpu=True,
                     bf16=False, report_to="none", logging_steps=1000, save_strategy="no", disable_tqdm=True, seed=0,
                     **kw)


def dpo_trainer(model, tokenizer, args, peft_config=None, ref_model=None, train=None, heldout=None):
    from datasets import Dataset

    from kgov_train.train.preference import PreferenceTrainer

    return PreferenceTrainer(model=model, ref_model=ref_model, args=args, processing_class=tokenizer,
                             train_dataset=train if train is not None else Dataset.from_list(pairs(TRAIN)),
                             eval_dataset=heldout if heldout is not None else Dataset.from_list(pairs(HELDOUT)),
                             peft_config=peft_config)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("tok"))


def test_summarise_counts_ties_as_wrong():
    import torch

    from kgov_train.train.preference import summarise

    # policy chosen, policy rejected, reference chosen, reference rejected
    rows = torch.tensor([[-10.0, -12.0, -11.0, -11.0],  # policy prefers chosen, reward +0.1*(1+1)
                         [-10.0, -10.0, -10.0, -10.0],  # a tie everywhere: wrong for both accuracies
                         [-14.0, -12.0, -20.0, -12.0]])  # policy prefers rejected, reward +0.1*(6-0)
    s = summarise(rows, beta=0.1)
    assert s["pairs"] == 3
    assert s["logp_accuracy"] == pytest.approx(1 / 3, abs=1e-6) and s["logp_margin"] == pytest.approx(0.0, abs=1e-6)
    assert s["logp_accuracy_before"] == 0.0 and s["logp_margin_before"] == pytest.approx(-8 / 3, abs=1e-6)
    assert s["reward_accuracy"] == pytest.approx(2 / 3, abs=1e-6)
    assert s["reward_margin"] == pytest.approx(0.8 / 3, abs=1e-6)
    assert summarise(torch.zeros(0, 4), 0.1)["logp_accuracy"] is None


def test_dpo_lora_heldout_preference_rises(tokenizer, tmp_path):
    """LoRA (+ lm_head in modules_to_save): no reference model in memory, the reference is the model with the
    adapter disabled, also for lm_head (the before-figures stay those of the untouched model after training)."""
    import torch
    from datasets import Dataset
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from kgov_train.train import lora
    from kgov_train.train.preference import heldout_metrics

    def length(messages) -> int:
        return len(tokenizer.apply_chat_template(messages, return_dict=False))

    assert all(length(p["prompt"] + p["chosen"]) > length(p["prompt"] + p["rejected"]) for p in pairs(HELDOUT)), \
        "the toy needs chosen answers longer than rejected ones"
    base = save_base(tmp_path)
    args = dpo_args(tmp_path / "dpo" / "checkpoints", steps=24, lr=1e-2)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    trainer = dpo_trainer(model, tokenizer, args, peft_config=lora_config(modules_to_save=["lm_head"]))
    assert trainer.ref_model is None and isinstance(trainer.model, PeftModel)
    before = heldout_metrics(trainer)
    trainer.train()
    after = heldout_metrics(trainer, Dataset.from_list(pairs(HELDOUT)))  # a split given at call time works too
    print("held-out before:", before)
    print("held-out after: ", after)
    # before: policy = reference, so TRL's reward is 0 on every pair (accuracy 0 by construction)
    assert before["pairs"] == after["pairs"] == len(HELDOUT)
    assert before["reward_accuracy"] == 0.0 and before["reward_margin"] == 0.0
    assert before["logp_accuracy"] == before["logp_accuracy_before"] == 0.0
    assert before["logp_margin"] == pytest.approx(before["logp_margin_before"], abs=1e-5)
    assert after["logp_accuracy_before"] == 0.0
    assert after["logp_margin_before"] == pytest.approx(before["logp_margin"], abs=1e-3)  # reference untouched
    assert after["logp_accuracy"] >= 0.9 and after["logp_margin"] > 0
    assert after["reward_accuracy"] >= 0.9 and after["reward_margin"] > 1.0
    assert trainer.state.log_history[-1]["eval_rewards/accuracies"] >= 0.9  # TRL's own (batch-averaged) figure

    # final/ of a DPO LoRA stage: the merged model (trained lm_head included) scores as the trained policy
    pair = pairs([7])[0]
    probe = torch.tensor([tokenizer.apply_chat_template(pair["prompt"] + pair["chosen"], return_dict=False)])
    with torch.no_grad():
        trained = trainer.model(input_ids=probe).logits
    lora.save_merged(trainer, tmp_path / "dpo" / "final", base=base, is_main=True, tokenizer=tokenizer)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "dpo" / "final")
    with torch.no_grad():
        assert (merged(input_ids=probe).logits - trained).abs().max() < 1e-4


def test_precomputed_reference_with_lora(tokenizer, tmp_path):
    """precompute_ref_log_probs with LoRA: the reference log-probs are the untrained model's (checked against a
    plain forward), and training against them gives the same figures as the on-the-fly reference."""
    import torch

    from kgov_train.train.preference import heldout_metrics

    plain = tiny_model(tokenizer)
    results = {}
    for pre in (False, True):
        args = dpo_args(tmp_path / str(pre), steps=4, lr=1e-2, precompute_ref_log_probs=pre)
        trainer = dpo_trainer(tiny_model(tokenizer), tokenizer, args, peft_config=lora_config())
        assert trainer.ref_model is None
        if pre:
            ds = trainer.train_dataset
            assert {"ref_chosen_logps", "ref_rejected_logps"} <= set(ds.column_names)
            for ex in ds.select(range(3)):
                for side in ("chosen", "rejected"):
                    ids = torch.tensor([ex["prompt_ids"] + ex[f"{side}_ids"]])
                    with torch.no_grad():
                        logp = plain(input_ids=ids).logits[0, :-1].log_softmax(-1)
                    tok_logps = logp.gather(1, ids[0, 1:, None])[:, 0][len(ex["prompt_ids"]) - 1:]
                    assert ex[f"ref_{side}_logps"] == pytest.approx(tok_logps.sum().item(), abs=1e-3)
        trainer.train()
        results[pre] = heldout_metrics(trainer)
    for k, v in results[False].items():
        assert results[True][k] == pytest.approx(v, abs=1e-4), (k, results)


def _dpo_worker(base: str, out: str, variants: str) -> None:
    """torchrun entry (2 processes): DPO under each variant '<zero stage>-<lora|full>-<ref|pre>' in turn, the held-out
    figures after training written by rank 0 to <out>/results.json."""
    import deepspeed
    import torch
    import torch.distributed as dist
    from datasets import Dataset
    from omegaconf import OmegaConf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.helpers import REPO_ROOT
    from kgov_train.train.preference import heldout_metrics, shared_dataset

    deepspeed.init_distributed(dist_backend="gloo")  # before any model: ZeRO-3's zero.Init needs the group
    rank = dist.get_rank()
    tokenizer = AutoTokenizer.from_pretrained(base)
    results = {}
    for variant in variants.split(","):
        stage, kind, ref = variant.split("-")
        ds = OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "recipes" / "deepspeed" / f"zero{stage}.yaml"))
        ds["zero_optimization"]["reduce_bucket_size"] = 500_000_000
        train, held = Dataset.from_list(pairs(range(0, 32))), Dataset.from_list(pairs(range(100, 111)))
        if ref == "pre":  # file-backed in a folder all ranks read: TRL caches the reference log-probs beside it
            train = shared_dataset(train, Path(out) / variant / "train_data", rank == 0)
            held = shared_dataset(held, Path(out) / variant / "heldout_data", rank == 0)
        args = dpo_args(Path(out) / variant, steps=12, lr=1e-2 if kind == "lora" else 1e-3, deepspeed=ds,
                        per_device_train_batch_size=4, per_device_eval_batch_size=4,
                        precompute_ref_log_probs=ref == "pre", activation_checkpointing=variant in CHECKPOINTED)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        ref_model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32) if variant.endswith(
            "full-ref") else None
        trainer = dpo_trainer(model, tokenizer, args, peft_config=lora_config() if kind == "lora" else None,
                              ref_model=ref_model, train=train, heldout=held)
        assert trainer.accelerator.state.deepspeed_plugin.zero_stage == int(stage)
        with pytest.raises(RuntimeError, match=r"under DeepSpeed call it after trainer\.train\(\)"):
            heldout_metrics(trainer)  # evaluate() first would leave train() without an optimizer
        trainer.train()
        m = heldout_metrics(trainer)
        m["ref_model_in_memory"] = trainer.ref_model is not None
        results[variant] = m
        if rank == 0:
            print(variant, m, flush=True)
        del trainer, model, ref_model
    if rank == 0:
        (Path(out) / "results.json").write_text(json.dumps(results, indent=1))
    dist.barrier()


VARIANTS = ["2-lora-ref", "3-lora-ref", "3-lora-pre", "3-full-pre", "3-full-ref"]
CHECKPOINTED = ("3-lora-ref", "3-full-pre")  # with activation checkpointing (the same numbers, recomputed)


@pytest.mark.slow
def test_lora_and_precomputed_reference_under_zero_on_two_processes(tmp_path):
    """ZeRO-2 and ZeRO-3 on 2 processes, LoRA with the adapter-disabled reference, precomputed reference log-probs
    (LoRA and full fine-tuning), and full fine-tuning with an explicit reference model: every variant trains and
    reports the held-out figures from forwards on all ranks; the three LoRA variants train identically, as do the
    two full ones, and all start from the same model."""
    base = save_base(tmp_path)
    wall = torchrun("tests.test_preference", ["dpo-worker", str(base), str(tmp_path), ",".join(VARIANTS)],
                    tmp_path / "torchrun.log")
    res = json.loads((tmp_path / "results.json").read_text())
    print(f"{len(VARIANTS)} DPO variants on 2 processes, one torchrun: {wall:.1f}s")
    for v in VARIANTS:
        print(v, res[v])
    assert set(res) == set(VARIANTS)
    for v, m in res.items():
        assert m["pairs"] == 11, v  # 11 held-out pairs over 2 ranks x batches of 4: the padding is dropped
        assert m["ref_model_in_memory"] == (v == "3-full-ref"), v
        assert m["logp_accuracy_before"] == 0.0 and m["logp_margin_before"] == pytest.approx(
            res["2-lora-ref"]["logp_margin_before"], abs=1e-3), v
        assert m["reward_accuracy"] == 1.0 and m["logp_margin"] > m["logp_margin_before"] + 10, v
    for group in (["2-lora-ref", "3-lora-ref", "3-lora-pre"], ["3-full-pre", "3-full-ref"]):
        for v in group[1:]:
            for k in ("reward_margin", "logp_margin", "logp_accuracy"):
                assert res[v][k] == pytest.approx(res[group[0]][k], abs=1e-3), (v, k, res[v], res[group[0]])


if __name__ == "__main__":
    import sys

    if sys.argv[1] == "dpo-worker":
        _dpo_worker(*sys.argv[2:])
