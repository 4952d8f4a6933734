"""LoRA for the chat stages (kgov_train.train.lora): the peft config from the recipe, the QLoRA refusal, and final/
as the merged standalone model with the adapter beside it, in one process and under ZeRO-2/ZeRO-3 on 2 processes.

Also home of the tiny-model helpers test_preference.py and test_packing.py use: the project's tokenizer (1,000
pieces, its chat template) trained on the ko-gov-sample texts (~0.5 s) and a random 2-layer Llama (hidden 64).
This module takes ~15 s without the slow test, ~30 s more with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT
from tests.helpers import compose_cfg

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PROBE = [[1, 5, 100, 200, 300, 400, 2]]  # <s><|user|>... token ids scored by the trained and the merged model


# ---------------------------------------------------------------------------------------------------------------------
# Shared helpers (imported by test_preference.py and test_packing.py)
# ---------------------------------------------------------------------------------------------------------------------


def build_tokenizer(root: Path):
    """The project's tokenizer (sentencepiece BPE exported to transformers, chat template with {% generation %}),
    1,000 pieces trained on the ko-gov-sample texts."""
    from transformers import AutoTokenizer

    from data_prep.tokenizer.build import BuildSettings, build_tokenizer as build

    out = root / "out"
    if not (out / "tokenizer.json").is_file():
        (root / "clean").mkdir(parents=True, exist_ok=True)
        with open(root / "clean" / "00000.jsonl", "w", encoding="utf-8") as f:
            for p in sorted((REPO_ROOT / "examples/data/ko-gov-sample").glob("*.txt")):
                f.write(json.dumps({"id": p.stem, "text": p.read_text(encoding="utf-8"), "metadata": {"source": "t"}},
                                   ensure_ascii=False) + "\n")
        build(root / "clean", out, BuildSettings(vocab_size=1000, heldout_fraction=0.0))
    return AutoTokenizer.from_pretrained(str(out))


def tiny_model(tokenizer, seed: int = 0, attn: str = "sdpa"):
    """A random Llama: hidden 64, 2 layers, 4 heads (2 kv), untied embeddings, fp32."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False, use_cache=False)
    return LlamaForCausalLM._from_config(config, attn_implementation=attn, dtype=torch.float32)


def save_base(root: Path, seed: int = 0) -> Path:
    """A tiny model and its tokenizer saved as an upstream stage's final/ would be."""
    tokenizer = build_tokenizer(root / "tok")
    final = root / "base"
    tiny_model(tokenizer, seed).save_pretrained(final)
    tokenizer.save_pretrained(final)
    return final


def torchrun(module: str, args: list[str], log: Path, timeout: float = 300) -> float:
    """`python -m <module> args` on 2 CPU processes (gloo) from the repo root; returns the wall time."""
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    t0 = time.time()
    with open(log, "wb") as out:
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                               "-m", module, *args], stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env,
                              timeout=timeout)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
    assert proc.returncode == 0, f"torchrun {module} exited {proc.returncode}; {log}:\n{tail}"
    return time.time() - t0


def lora_cfg(*overrides: str):
    return compose_cfg(["recipe=smoke", "cluster=local_cpu", *overrides])


def chat_records(n: int) -> list[dict]:
    qs = ["여권 재발급은 어디서 하나요?", "전입신고 기한은?", "주민등록등본은 어떻게 발급받나요?"]
    a = "가까운 시·군·구청에서 신청할 수 있습니다."
    return [{"messages": [{"role": "user", "content": f"{qs[i % 3]} ({i})"}, {"role": "assistant", "content": a}]}
            for i in range(n)]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("tok"))


# ---------------------------------------------------------------------------------------------------------------------
# The peft config
# ---------------------------------------------------------------------------------------------------------------------


def test_peft_config_follows_the_recipe(tokenizer):
    from peft import LoraConfig, TaskType

    from kgov_train.train import lora

    model = tiny_model(tokenizer)
    assert lora.peft_config(lora_cfg(), "sft", model) is None  # lora.enabled defaults to false
    cfg = lora_cfg("sft.lora.enabled=true", "sft.lora.r=4", "sft.lora.alpha=8", "sft.lora.dropout=0.1",
                   "sft.lora.modules_to_save=[embed_tokens,lm_head]", "dpo.lora.enabled=true")
    pc = lora.peft_config(cfg, "sft", model)
    assert isinstance(pc, LoraConfig) and pc.task_type == TaskType.CAUSAL_LM
    assert (pc.r, pc.lora_alpha, pc.lora_dropout) == (4, 8, 0.1)
    assert set(pc.target_modules) == set(TARGETS) and pc.modules_to_save == ["embed_tokens", "lm_head"]
    assert lora.peft_config(cfg, "sft_domain", model).r == 4  # a named SFT stage inherits sft.lora
    assert lora.peft_config(cfg, "dpo", model).r == 16 and lora.peft_config(cfg, "dpo", model).modules_to_save is None


@pytest.mark.parametrize("overrides, message", [
    (["sft.lora.target_modules=[q_proj,foo]"],
     "sft.lora.target_modules: 'foo' matches no module of the model; it has embed_tokens, q_proj, k_proj, v_proj, "
     "o_proj, gate_proj, up_proj, down_proj, lm_head"),
    (["sft.lora.target_modules=[mlp]"], "sft.lora.target_modules: 'mlp' matches only ['LlamaMLP'] modules"),
    (["sft.lora.target_modules=[q_proj,lm_head]"], "sft.lora.target_modules: 'lm_head' is the LM head"),
    (["sft.lora.target_modules=[]"], "sft.lora.target_modules is empty"),
    (["sft.lora.modules_to_save=[embeddings]"], "sft.lora.modules_to_save: 'embeddings' matches no module"),
    (["sft.lora.modules_to_save=[q_proj]"], "sft.lora: ['q_proj'] in both target_modules and modules_to_save"),
    (["sft.lora.r=0"], "sft.lora: r and alpha must be >= 1"),
])
def test_bad_lora_settings_name_the_key(tokenizer, overrides, message):
    from kgov_train.train import lora

    with pytest.raises(lora.LoraSetupError) as e:
        lora.peft_config(lora_cfg("sft.lora.enabled=true", *overrides), "sft", tiny_model(tokenizer))
    assert message in str(e.value), str(e.value)


def test_named_sft_stage_errors_name_its_key(tokenizer):
    from kgov_train.train import lora

    cfg = lora_cfg("sft.lora.enabled=true", "sft.lora.target_modules=[foo]")
    with pytest.raises(lora.LoraSetupError, match=r"^sft_stages\.sft_domain\.lora\.target_modules: 'foo'"):
        lora.peft_config(cfg, "sft_domain", tiny_model(tokenizer))


# ---------------------------------------------------------------------------------------------------------------------
# QLoRA
# ---------------------------------------------------------------------------------------------------------------------


def test_qlora_is_refused_on_cpu_and_without_bitsandbytes(tokenizer, monkeypatch):
    from kgov_train.train import lora

    model = tiny_model(tokenizer)
    cpu = lora_cfg("sft.lora.enabled=true", "sft.lora.qlora=true")
    for call in (lambda: lora.peft_config(cpu, "sft", model), lambda: lora.quantization_config(cpu, "sft"),
                 lambda: lora.check_qlora(cpu, "sft")):
        with pytest.raises(lora.LoraSetupError) as e:
            call()
        assert str(e.value).startswith("sft.lora.qlora=true: QLoRA needs a CUDA GPU and bitsandbytes"), str(e.value)
        assert "cluster.device=cpu" in str(e.value)
    # A named SFT stage inheriting sft.lora.qlora is told about the key that sets it; one setting it, about its own.
    assert lora.qlora_problem(cpu, "sft_general").startswith("sft.lora.qlora=true: QLoRA needs")
    own = lora_cfg("sft.lora.enabled=true", "+sft_stages.sft_general.lora.qlora=true")
    assert lora.qlora_problem(own, "sft_general").startswith("sft_stages.sft_general.lora.qlora=true: QLoRA needs")
    assert lora.qlora_problem(own, "sft_domain") is None
    assert lora.qlora_problem(cpu, "dpo") is None  # dpo.lora.qlora is false

    cuda = lora_cfg("sft.lora.enabled=true", "sft.lora.qlora=true", "cluster.device=cuda")
    monkeypatch.setattr(lora.importlib.util, "find_spec", lambda name: None)
    assert "bitsandbytes is not installed" in lora.qlora_problem(cuda, "sft")
    off = lora_cfg("sft.lora.qlora=true", "cluster.device=cuda")
    assert "set sft.lora.enabled=true as well" in lora.qlora_problem(off, "sft")
    with pytest.raises(lora.LoraSetupError, match="set sft.lora.enabled=true"):
        lora.peft_config(off, "sft", model)


def test_qlora_on_cuda_asks_for_nf4_double_quant_bf16(monkeypatch):
    """The GPU path's quantization config (bitsandbytes itself is only needed to load the model)."""
    import torch

    from kgov_train.train import lora

    monkeypatch.setattr(lora.importlib.util, "find_spec", lambda name: object())  # as if bitsandbytes were there
    cfg = lora_cfg("dpo.lora.enabled=true", "dpo.lora.qlora=true", "cluster.device=cuda")
    assert lora.quantization_config(cfg, "sft") is None
    bnb = lora.quantization_config(cfg, "dpo")
    assert bnb.load_in_4bit and bnb.bnb_4bit_quant_type == "nf4" and bnb.bnb_4bit_use_double_quant
    assert bnb.bnb_4bit_compute_dtype == torch.bfloat16 and bnb.bnb_4bit_quant_storage == torch.bfloat16


# ---------------------------------------------------------------------------------------------------------------------
# final/ = merged model, adapter beside it
# ---------------------------------------------------------------------------------------------------------------------


def train_sft_lora(base: Path, out: Path, args_extra: dict, cfg):
    """A few SFT steps with LoRA + modules_to_save from `base`; returns the trainer and the trained model's logits
    on PROBE (every rank takes part in the forward)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from kgov_train.train import lora

    args = SFTConfig(output_dir=str(out / "checkpoints"), max_length=64, per_device_train_batch_size=2,
                     learning_rate=1e-2, max_steps=6, use_cpu=True, bf16=False, report_to="none",
                     save_strategy="no", disable_tqdm=True, logging_steps=1, assistant_only_loss=True, seed=0,
                     **{"activation_checkpointing": False, **args_extra})  # TRL's configs default it to True
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)  # after the args: zero.Init under ZeRO-3
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(chat_records(16)),
                         processing_class=tokenizer, peft_config=lora.peft_config(cfg, "sft", model))
    trainer.train()
    trainer.model.eval()
    with torch.no_grad():
        logits = trainer.model(input_ids=torch.tensor(PROBE)).logits
    return trainer, logits


SAVE_CFG = ("sft.lora.enabled=true", "sft.lora.r=4", "sft.lora.alpha=8", "sft.lora.dropout=0.0",
            "sft.lora.target_modules=[q_proj,v_proj,down_proj]", "sft.lora.modules_to_save=[embed_tokens,lm_head]")


def check_final(final: Path, base: Path, logits) -> dict:
    """final/ loads with stock transformers (no peft, no missing/extra keys), scores PROBE as the trained peft
    model did, and holds the trained embeddings/LM head; the adapter is beside it. Returns the merged weights."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    adapter = final.parent / "adapter"
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in adapter.iterdir()}
    saved = load_file(adapter / "adapter_model.safetensors")
    assert any("lora_A" in k for k in saved) and any("embed_tokens" in k for k in saved) and any(
        "lm_head" in k for k in saved), sorted(saved)[:5]
    assert not list(final.glob("adapter*")) and (final / "tokenizer.json").is_file()
    merged, info = AutoModelForCausalLM.from_pretrained(final, output_loading_info=True)
    assert type(merged).__name__ == "LlamaForCausalLM"
    assert not any(info.values()), info  # missing, unexpected, mismatched keys, errors
    sd = merged.state_dict()
    assert not [k for k in sd if "lora" in k or "modules_to_save" in k or "base_layer" in k]
    with torch.no_grad():
        diff = (merged(input_ids=torch.tensor(PROBE)).logits - logits).abs().max().item()
    assert diff < 1e-4, f"merged model scores PROBE {diff:.2e} away from the trained peft model"
    orig = AutoModelForCausalLM.from_pretrained(base).state_dict()
    for k in ("model.embed_tokens.weight", "lm_head.weight", "model.layers.0.self_attn.q_proj.weight"):
        assert (sd[k] - orig[k]).abs().max() > 1e-3, f"{k}: the merged model kept the base's"
    assert torch.equal(sd["model.layers.0.self_attn.k_proj.weight"], orig["model.layers.0.self_attn.k_proj.weight"])
    return sd


def test_final_is_the_merged_standalone_model(tmp_path):
    from kgov_train.train import lora

    base = save_base(tmp_path)
    trainer, logits = train_sft_lora(base, tmp_path / "sft", {}, lora_cfg(*SAVE_CFG))
    final = tmp_path / "sft" / "final"
    adapter = lora.save_merged(trainer, final, base=base, is_main=True, tokenizer=trainer.processing_class)
    assert adapter == tmp_path / "sft" / "adapter" and lora.is_lora_trainer(trainer)
    n_lora = 2 * 4 * ((64 + 64) + (64 + 32) + (128 + 64))  # 2 layers, rank 4: q 64->64, v 64->32, down 128->64
    assert lora.trainable_parameters(trainer.model) == n_lora + 2 * len(trainer.processing_class) * 64
    check_final(final, base, logits)


def _zero_worker(base: str, out: str, stages: str) -> None:
    """torchrun entry (2 processes): for each ZeRO stage, train with LoRA + modules_to_save, save_merged, and keep
    the trained model's PROBE logits for the test to compare with final/."""
    import deepspeed
    import torch
    import torch.distributed as dist
    from omegaconf import OmegaConf

    from kgov_train.train import lora

    deepspeed.init_distributed(dist_backend="gloo")  # before any model: ZeRO-3's zero.Init needs the group
    rank = dist.get_rank()
    for stage in stages.split(","):
        ds = OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "recipes" / "deepspeed" / f"zero{stage}.yaml"))
        ds["zero_optimization"]["reduce_bucket_size"] = 500_000_000
        stage_dir = Path(out) / f"zero{stage}"
        # ZeRO-3 also with activation checkpointing: TRL then enables input grads and reentrant checkpointing for peft
        extra = {"deepspeed": ds, "activation_checkpointing": stage == "3"}
        trainer, logits = train_sft_lora(Path(base), stage_dir, extra, lora_cfg(*SAVE_CFG))
        assert trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin.zero_stage == int(stage)
        if rank == 0:
            torch.save(logits, stage_dir / "probe_logits.pt")
        lora.save_merged(trainer, stage_dir / "final", base=Path(base), is_main=rank == 0,
                         tokenizer=trainer.processing_class)
        del trainer
    dist.barrier()


@pytest.mark.slow
def test_merged_final_under_zero2_and_zero3_on_two_processes(tmp_path):
    import torch

    base = save_base(tmp_path)
    wall = torchrun("tests.test_lora", ["zero-worker", str(base), str(tmp_path), "2,3"], tmp_path / "torchrun.log")
    print(f"ZeRO-2 + ZeRO-3 LoRA runs (2 processes, one torchrun): {wall:.1f}s")
    weights = {}
    for stage in ("2", "3"):
        d = tmp_path / f"zero{stage}"
        weights[stage] = check_final(d / "final", base, torch.load(d / "probe_logits.pt"))
    diff = max((weights["2"][k] - weights["3"][k]).abs().max().item() for k in weights["2"])
    assert diff < 1e-4, f"ZeRO-2 and ZeRO-3 merged models differ by up to {diff:.2e}"


if __name__ == "__main__":
    if sys.argv[1] == "zero-worker":
        _zero_worker(*sys.argv[2:])
