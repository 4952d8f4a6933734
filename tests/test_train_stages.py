"""pretrain, sft and dpo with real DeepSpeed/TRL on 2 CPU processes, and the pieces they are built from.

The slow tests read the `trained` run folder (tests/chains.py): the real data/tokenizer/shards stages of the smoke
recipe, then pretrain (ZeRO-2) killed with SIGKILL after its first checkpoint and resumed, then sft and dpo under
ZeRO-3. Step counts are cut down.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import compose_cfg

from tests.chains import BAD_DPO, BAD_SFT, MICRO_BATCH, NPROC, PRETRAIN_STEPS, SAVE_STEPS, SEQ_LEN, manifest, metrics_rows


# ---------------------------------------------------------------------------------------------------------------------
# Multi-process training
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_pretrain_resumes_after_sigkill(trained):
    stage = trained.run_dir / "pretrain"
    assert trained.survivors == [], "torchrun workers outlived their SIGKILLed agent"
    assert trained.status_after_kill == "running"
    k = trained.resume_step
    assert SAVE_STEPS <= k < PRETRAIN_STEPS
    assert f"resuming from {stage / 'checkpoints' / f'checkpoint-{k}'} (global_step {k} of {PRETRAIN_STEPS})" \
        in trained.log

    m = manifest(stage)
    assert m["status"] == "complete"
    assert m["metrics"]["resumed_from_step"] == k
    assert m["metrics"]["steps"] == PRETRAIN_STEPS
    assert m["metrics"]["tokens_seen"] == PRETRAIN_STEPS * MICRO_BATCH * NPROC * SEQ_LEN  # restored, then continued

    rows = metrics_rows(stage)
    assert [r["step"] for r in rows] == list(range(1, PRETRAIN_STEPS + 1))  # each step once, none lost or doubled
    before = {r["step"]: r for r in trained.killed_rows}
    for r in rows:
        if r["step"] <= k:
            assert r == before[r["step"]]  # kept from the killed run
        else:
            assert r["time"] > trained.killed_at  # written by the resumed run
    # Steps the killed run logged after its checkpoint are redone with the same data and RNG: same losses.
    redone = [r for r in rows if k < r["step"] <= max(before)]
    assert redone, "the kill was meant to land after the checkpoint, with steps logged past it"
    for r in redone:
        assert r["loss"] == pytest.approx(before[r["step"]]["loss"], rel=1e-5)


@pytest.mark.slow
def test_metrics_jsonl_and_stage_metrics(trained):
    expected_zero = {"pretrain": 2, "sft": 3, "dpo": 3}
    for name, zero in expected_zero.items():
        stage = trained.run_dir / name
        rows = metrics_rows(stage)
        assert rows, name
        for r in rows:
            assert {"step", "loss", "lr", "grad_norm", "tokens_per_sec", "epoch"} <= set(r), (name, r)
            assert math.isfinite(r["loss"]) and r["tokens_per_sec"] > 0, (name, r)
        m = manifest(stage)
        assert m["status"] == "complete"
        metrics = m["metrics"]
        for key in ("steps", "final_loss", "train_runtime", "tokens_seen", "tokens_per_sec", "world_size",
                    "zero_stage", "parameters"):
            assert metrics.get(key) is not None, (name, key)
        assert metrics["world_size"] == NPROC and metrics["zero_stage"] == zero, name
        assert metrics["final_loss"] == rows[-1]["loss"]
        chat = {"rejects"} if name != "pretrain" else set()  # the chat stages keep their rejected records
        assert {o["path"].split("/")[0] for o in m["outputs"]} == {"final", "metrics.jsonl", *chat}

    pre = manifest(trained.run_dir / "pretrain")["metrics"]
    assert pre["validation_loss"] > 0 and pre["validation_perplexity"] == pytest.approx(
        math.exp(pre["validation_loss"]), rel=1e-3)
    assert pre["vocab_size"] % 64 == 0 and pre["vocab_size"] >= pre["tokenizer_vocab_size"]

    sft = manifest(trained.run_dir / "sft")["metrics"]
    assert sft["skipped_records"] == len(BAD_SFT)
    assert sft["skipped_by_reason"] == {"invalid_json": 1, "no_messages": 1, "bad_role": 1, "empty_content": 1,
                                        "no_assistant": 1}
    assert sft["records"] == 2000 and sft["final_mean_token_accuracy"] is not None

    dpo = manifest(trained.run_dir / "dpo")["metrics"]
    assert dpo["skipped_records"] == len(BAD_DPO)
    for key in ("rewards_accuracies", "rewards_margins", "rewards_chosen", "rewards_rejected"):
        assert dpo["final_" + key] is not None and dpo["mean_" + key] is not None, key
    assert 0 <= dpo["mean_rewards_accuracies"] <= 1
    rejects = [json.loads(x) for x in (trained.run_dir / "dpo" / "rejects" / "rejected.jsonl").read_text().splitlines()]
    assert len(rejects) == len(BAD_DPO) and all(r["file"].endswith("bad_dpo.jsonl") and r["line"] for r in rejects)
    held = dpo["held_out"]  # under ZeRO-3 as well: all ranks score the held-out pairs after training
    assert held["pairs"] == dpo["validation_records"] > 0 and held["logp_accuracy_before"] is not None


@pytest.mark.slow
def test_final_models_load_with_stock_transformers_and_chat(trained):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for name in ("pretrain", "sft", "dpo"):
        final = trained.run_dir / name / "final"
        assert (final / "model.safetensors").is_file() and not (final / "training_args.bin").exists()
        tok = AutoTokenizer.from_pretrained(final)
        model, info = AutoModelForCausalLM.from_pretrained(final, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"], (name, info)
        assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 3)
        gen = model.generation_config
        assert (gen.bos_token_id, gen.eos_token_id, gen.pad_token_id) == (1, 2, 3), name
        assert "{% generation %}" in tok.chat_template.replace("{%-", "{%").replace("-%}", "%}")
        batch = tok.apply_chat_template([{"role": "user", "content": "오늘 너무 피곤해"}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = model.eval().generate(**batch, max_new_tokens=8, min_new_tokens=4, do_sample=False)
        new = out[0, batch["input_ids"].shape[1]:]
        assert len(new) >= 4 and int(new.max()) < len(tok), name
        assert isinstance(tok.decode(new, skip_special_tokens=True), str)


@pytest.mark.slow
def test_zero3_saves_the_trained_weights(trained):
    """Under ZeRO-3 final/ holds the gathered weights, and they moved away from the model the stage started from."""
    from safetensors.torch import load_file

    sft = load_file(trained.run_dir / "sft" / "final" / "model.safetensors")
    dpo = load_file(trained.run_dir / "dpo" / "final" / "model.safetensors")
    assert sft.keys() == dpo.keys()
    assert all(t.numel() > 0 and t.abs().sum() > 0 for t in dpo.values())
    assert any(not (sft[k] == dpo[k]).all() for k in sft)


@pytest.mark.slow
def test_checkpoints_of_other_settings_are_not_resumed(trained):
    """A changed learning rate (or a max_steps below the checkpoint) refuses to resume instead of mixing runs."""
    from kgov_train.stages import StageContext
    from kgov_train.train.resume import ResumeError, resume_checkpoint

    stage = trained.run_dir / "pretrain"
    keep = [o for o in trained.overrides if not o.startswith("pretrain.max_steps")]

    def ctx(*extra):
        cfg = compose_cfg([*keep, *extra])
        return StageContext(cfg=cfg, run_dir=trained.run_dir, stage_dir=stage, upstream={}, rank=0, world_size=NPROC)

    last = resume_checkpoint(ctx(f"pretrain.max_steps={PRETRAIN_STEPS * 2}"), "pretrain", PRETRAIN_STEPS * 2)
    assert last is not None and last.name == f"checkpoint-{PRETRAIN_STEPS}"  # train longer: fine
    with pytest.raises(ResumeError, match=r"pretrain\.learning_rate: 0\.003 -> 0\.001.*force=true"):
        resume_checkpoint(ctx("pretrain.learning_rate=1e-3"), "pretrain", PRETRAIN_STEPS)
    with pytest.raises(ResumeError, match="past pretrain.max_steps=5"):
        resume_checkpoint(ctx("pretrain.max_steps=5"), "pretrain", 5)


# ---------------------------------------------------------------------------------------------------------------------
# In-process checks (no torchrun)
# ---------------------------------------------------------------------------------------------------------------------


def test_tokenizer_shards_mismatch_is_refused(upstream_run, tmp_path):
    from transformers import AutoTokenizer

    from kgov_train.stages import StageContext
    from kgov_train.stages import pretrain
    from kgov_train.train.data import TrainDataError

    other = tmp_path / "tokenizer"
    tok = AutoTokenizer.from_pretrained(upstream_run / "tokenizer")
    tok.add_tokens(["대한민국헌법"])
    tok.save_pretrained(other)
    cfg = compose_cfg(["recipe=smoke", f"run_dir={tmp_path}"])
    ctx = StageContext(cfg=cfg, run_dir=tmp_path, stage_dir=tmp_path / "pretrain",
                       upstream={"tokenizer": other, "shards": upstream_run / "shards"})
    with pytest.raises(TrainDataError, match=r"pretrain: tokenizer/shards mismatch: .*another tokenizer"):
        pretrain.run(ctx)
    assert not (tmp_path / "pretrain" / "final").exists()


class _FakeReader:
    """Stands in for data_prep.shards.read with two small token files."""

    def __init__(self, arrays):
        self.arrays = arrays

    def open_split(self, shards_dir, split):
        return [np.asarray(a, dtype=np.uint16) for a in self.arrays]


def test_packed_windows_span_files_and_drop_the_tail(monkeypatch):
    from kgov_train.train import data

    a, b = list(range(0, 7)), list(range(100, 110))  # 17 tokens in two files
    monkeypatch.setattr(data, "_shards_reader", lambda: _FakeReader([a, b]))
    ds = data.PackedTokens(Path("/nowhere"), "train", seq_len=5)
    stream = a + b
    assert len(ds) == 3 and ds.total_tokens == 17
    for i in range(3):
        item = ds[i]
        assert item["input_ids"].tolist() == stream[i * 5:(i + 1) * 5] == item["labels"].tolist()
    with pytest.raises(IndexError):
        ds[3]
    assert len(data.PackedTokens(Path("/nowhere"), "train", seq_len=5, max_items=2)) == 2
    import pickle

    again = pickle.loads(pickle.dumps(ds))  # dataloader workers reopen the files
    assert again[1]["input_ids"].tolist() == ds[1]["input_ids"].tolist()


def test_partial_checkpoints_are_not_resumed(tmp_path):
    from kgov_train.train.resume import complete_checkpoints

    def make(step, state=True, ds=True, latest=True):
        d = tmp_path / f"checkpoint-{step}"
        (d / f"global_step{step}").mkdir(parents=True) if ds else d.mkdir(parents=True)
        if state:
            (d / "trainer_state.json").write_text("{}")
        if latest:
            (d / "latest").write_text(f"global_step{step}")

    make(5)
    make(10)
    make(15, state=False)  # killed before the Trainer wrote its state
    make(20, latest=False)  # killed inside DeepSpeed's save
    make(7, ds=False, latest=False)  # no DeepSpeed: trainer_state.json is enough
    (tmp_path / "checkpoint-x").mkdir()
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["checkpoint-5", "checkpoint-7", "checkpoint-10"]
    assert complete_checkpoints(tmp_path / "missing") == []


def test_trainer_arguments_follow_the_recipe(tmp_path):
    from kgov_train.train.arguments import deepspeed_config, training_kwargs

    cfg = compose_cfg(["recipe=smoke", "sft.zero_stage=3", "sft.gradient_accumulation_steps=2"])
    assert deepspeed_config(cfg, "pretrain")["zero_optimization"]["stage"] == 2
    ds = deepspeed_config(cfg, "sft")
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    kw = training_kwargs(cfg, "sft", tmp_path / "sft")
    assert kw["output_dir"] == str(tmp_path / "sft" / "checkpoints")
    assert (kw["use_cpu"], kw["bf16"], kw["fp16"]) == (True, False, False)
    assert kw["per_device_train_batch_size"] == cfg.sft.micro_batch_size and kw["gradient_accumulation_steps"] == 2
    assert kw["seed"] == cfg.seed and kw["max_steps"] == cfg.sft.max_steps and kw["report_to"] == "none"

    with pytest.raises(ValueError, match=r"sft.report_to: \['no_such_tracker'\] not supported"):
        training_kwargs(compose_cfg(["recipe=smoke", "sft.report_to=[no_such_tracker]"]), "sft", tmp_path)
    with pytest.raises(ValueError, match=r"dpo.report_to: \['comet_ml'\] not supported"):  # an online service
        training_kwargs(compose_cfg(["recipe=smoke", "dpo.report_to=[comet_ml]"]), "dpo", tmp_path)

    gpu = compose_cfg(["recipe=smoke", "cluster=a100_80g_single_node"])
    kw = training_kwargs(gpu, "pretrain", tmp_path)
    assert (kw["use_cpu"], kw["bf16"]) == (False, gpu.cluster.precision == "bf16")


def test_init_from_checks_the_vocabulary(upstream_run, tmp_path):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from kgov_train.train.model import ModelInitError, build_pretrain_model

    small = tmp_path / "small"
    LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2)).save_pretrained(small)
    tok = AutoTokenizer.from_pretrained(upstream_run / "tokenizer")
    cfg = compose_cfg(["recipe=smoke", f"model.init_from={small}"])
    with pytest.raises(ModelInitError, match=f"100 embedding rows but the tokenizer has {len(tok)}.*resize_embeddings"):
        build_pretrain_model(cfg, tok)

    cfg = compose_cfg(["recipe=smoke", f"model.init_from={small}", "model.resize_embeddings=true"])
    model, info = build_pretrain_model(cfg, tok)
    emb = model.get_input_embeddings().weight.detach()
    assert emb.shape[0] == len(tok) == info["vocab_size"] and info["resized_embeddings_to"] == len(tok)
    assert torch.allclose(emb[100:].mean(0), emb[:100].mean(0), atol=1e-3)
    assert (model.config.bos_token_id, model.config.eos_token_id, model.config.pad_token_id) == (1, 2, 3)


@pytest.mark.slow
def test_wandb_logs_offline_when_asked(trained):
    runs = list((trained.run_dir / "sft" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "one offline wandb run, written by rank 0 only"
    assert any(runs[0].glob("*.wandb")), "the run's history file is there to `wandb sync` later"
    for name in ("pretrain", "dpo"):
        for folder in ("wandb", "tensorboard", "mlruns"):
            assert not (trained.run_dir / name / folder).exists(), f"no tracker unless report_to asks: {name}/{folder}"


@pytest.mark.slow
def test_tensorboard_logs_the_steps_in_the_stage_folder(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sft = trained.run_dir / "sft"
    rows = metrics_rows(sft)
    assert rows and rows[-1]["step"] == 6
    events = list((sft / "tensorboard").glob("events.out.tfevents.*"))
    # transformers' callback closes its writer at the end of training and opens another one for the evaluation
    # after it: two files, both from rank 0's process (events.out.tfevents.<time>.<host>.<pid>.<n>).
    assert events and len({e.name.split(".")[-2] for e in events}) == 1, "written by rank 0 only"
    assert not (sft / "checkpoints" / "runs").exists(), "not transformers' default <output_dir>/runs"
    acc = EventAccumulator(str(sft / "tensorboard"))
    acc.Reload()
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == [r["step"] for r in rows]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in rows], rel=1e-6)  # stored as float32
    lr = acc.Scalars("train/learning_rate")
    assert [e.value for e in lr] == pytest.approx([r["lr"] for r in rows], rel=1e-6)
    assert [e.step for e in acc.Scalars("eval/loss")] == [6]  # the stage's evaluation after training


@pytest.mark.slow
def test_mlflow_logs_to_a_file_store_in_the_stage_folder(trained, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3 refuses a file store without it
    sft = trained.run_dir / "sft"
    rows = metrics_rows(sft)
    client = MlflowClient(tracking_uri=(sft / "mlruns").as_uri())
    exp = client.get_experiment_by_name("smoke")  # the recipe
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, "one run, started by rank 0 only"
    run = runs[0]
    assert run.info.run_name == "smoke-sft" and run.info.status == "FINISHED"
    assert run.data.tags["kgov.stage_dir"] == str(sft.absolute())
    assert run.data.params["max_steps"] == "6"
    assert not list((sft / "mlruns").rglob("artifacts/*")), "no checkpoints copied in as artifacts"

    def history(key):
        return [(m.step, m.value) for m in sorted(client.get_metric_history(run.info.run_id, key),
                                                 key=lambda m: m.step)]

    assert history("loss") == [(r["step"], pytest.approx(r["loss"], rel=1e-9)) for r in rows]
    assert history("grad_norm") == [(r["step"], pytest.approx(r["grad_norm"], rel=1e-9)) for r in rows]
    assert [s for s, _ in history("tokens_per_sec")] == [r["step"] for r in rows]  # MetricsCallback's own
    assert [s for s, _ in history("eval_loss")] == [6]  # the evaluation after training: the same run


def test_trackers_write_inside_the_run_folder_and_the_users_env_wins(tmp_path, monkeypatch):
    import os

    from kgov_train import offline
    from kgov_train.launch import stage_env
    from kgov_train.train.arguments import training_kwargs

    stage = tmp_path / "run" / "sft"
    for k in [*offline.tracker_env(stage, "smoke"), *offline.OFFLINE_ENV]:
        monkeypatch.delenv(k, raising=False)
    cfg = compose_cfg(["recipe=smoke", f"run_dir={tmp_path / 'run'}", "sft.report_to=[wandb,tensorboard,mlflow]"])
    before = dict(os.environ)
    env = stage_env(cfg, "sft")
    assert dict(os.environ) == before, "library code leaves the process environment alone"
    assert env["WANDB_MODE"] == "offline" and env["WANDB_DIR"] == str(stage)
    assert env["TENSORBOARD_LOGGING_DIR"] == str(stage / "tensorboard")
    assert env["MLFLOW_TRACKING_URI"] == (stage / "mlruns").as_uri() == f"file://{stage}/mlruns"
    assert env["MLFLOW_EXPERIMENT_NAME"] == "smoke" and env["MLFLOW_ALLOW_FILE_STORE"] == "true"
    assert env["HF_MLFLOW_LOG_ARTIFACTS"] == "false" and env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert json.loads(env["MLFLOW_TAGS"]) == {"kgov.stage_dir": str(stage)}
    assert training_kwargs(cfg, "sft", stage)["report_to"] == ["wandb", "tensorboard", "mlflow"]

    monkeypatch.chdir(tmp_path)  # a relative run_dir still gives paths inside it, absolute
    rel = offline.tracker_env(Path("runs/smoke/dpo"), "smoke")
    assert rel["MLFLOW_TRACKING_URI"] == f"file://{tmp_path}/runs/smoke/dpo/mlruns"
    assert rel["TENSORBOARD_LOGGING_DIR"] == str(tmp_path / "runs/smoke/dpo/tensorboard")

    # What the user exported wins: the launcher's env and the CLI's (apply_defaults on the process env).
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////data/mlflow.db")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    env = stage_env(cfg, "sft")
    assert env["MLFLOW_TRACKING_URI"] == "sqlite:////data/mlflow.db" and env["WANDB_MODE"] == "disabled"
    assert env["TENSORBOARD_LOGGING_DIR"] == str(stage / "tensorboard")
    mine = {"MLFLOW_TRACKING_URI": "file:/mine"}
    offline.apply_defaults(mine, offline.tracker_env(stage, "smoke"))
    assert mine["MLFLOW_TRACKING_URI"] == "file:/mine" and mine["MLFLOW_EXPERIMENT_NAME"] == "smoke"

    monkeypatch.setenv("HF_MLFLOW_LOG_ARTIFACTS", "1")
    with pytest.raises(ValueError, match="sft.report_to: mlflow with HF_MLFLOW_LOG_ARTIFACTS=1"):
        training_kwargs(cfg, "sft", stage)
    monkeypatch.setattr("transformers.integrations.get_available_reporting_integrations", lambda: ["wandb"])
    with pytest.raises(ValueError, match=r"sft.report_to: \['tensorboard', 'mlflow'\] not installed"):
        training_kwargs(cfg, "sft", stage)


def test_resumed_stage_logs_to_the_same_tracker_runs(tmp_path, monkeypatch):
    """train.trackers.continue_trackers: the interrupted run's MLflow run is started again; TensorBoard drops the steps
    logged after the checkpoint, which the resumed run redoes."""
    from types import SimpleNamespace

    import mlflow
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations.integration_utils import MLflowCallback, TensorBoardCallback

    from kgov_train import offline
    from kgov_train.train.trackers import continue_trackers, end_mlflow_run

    stage = tmp_path / "sft"
    env = offline.tracker_env(stage, "smoke")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    # The interrupted run: steps 1-5 logged, killed after the checkpoint at step 3 (its MLflow run left RUNNING).
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    exp = client.create_experiment("smoke")
    other = client.create_run(exp, run_name="smoke-sft", tags={"kgov.stage_dir": str(tmp_path / "elsewhere")})
    old = client.create_run(exp, run_name="smoke-sft", tags={"kgov.stage_dir": str(stage)})
    writer = SummaryWriter(log_dir=env["TENSORBOARD_LOGGING_DIR"])
    for step in range(1, 6):
        client.log_metric(old.info.run_id, "loss", 1.0 / step, step=step)
        writer.add_scalar("train/loss", 1.0 / step, step)
    writer.close()

    tb = TensorBoardCallback()
    trainer = SimpleNamespace(args=SimpleNamespace(run_name="smoke-sft"),
                              callback_handler=SimpleNamespace(callbacks=[tb, MLflowCallback()]))
    run_id = continue_trackers(trainer, 3)
    try:
        assert run_id == old.info.run_id != other.info.run_id
        assert mlflow.active_run().info.run_id == run_id  # MLflowCallback logs into the active run
        for step in (4, 5, 6):
            mlflow.log_metric("loss", 0.5 / step, step=step)
            tb.tb_writer.add_scalar("train/loss", 0.5 / step, step)
        tb.tb_writer.close()
    finally:
        end_mlflow_run(run_id, "FINISHED")
    assert mlflow.active_run() is None
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["kgov.resumed_from_step"] == "3"
    assert sorted(m.step for m in client.get_metric_history(run_id, "loss")) == [1, 2, 3, 4, 4, 5, 5, 6]

    acc = EventAccumulator(env["TENSORBOARD_LOGGING_DIR"])
    acc.Reload()
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 3, 4, 5, 6]
    assert [e.value for e in loss] == pytest.approx([1.0, 0.5, 1 / 3, 0.125, 0.1, 0.5 / 6], rel=1e-6)

    # No run of this stage in the store (another MLFLOW_TAGS, or none yet): the callback starts its own.
    monkeypatch.setenv("MLFLOW_TAGS", "{}")
    assert continue_trackers(SimpleNamespace(args=trainer.args, callback_handler=SimpleNamespace(
        callbacks=[MLflowCallback()])), 3) is None


@pytest.mark.slow
def test_bf16_precision_path_of_the_gpu_recipes_runs_on_cpu(upstream_run, tmp_path):
    """cluster.precision=bf16, as the A100 recipes train, on 2 CPU processes: DeepSpeed's bf16 optimizer (ZeRO-2 for
    pretrain, ZeRO-3 for SFT) keeps fp32 master weights and the saved models are bf16. fp16 needs a GPU and is
    refused when the recipe is checked."""
    import shutil

    from safetensors import safe_open

    from kgov_train.errors import RecipeError
    from kgov_train.pipeline import validate
    from tests.chains import run_chain

    run_dir = tmp_path / "run"
    for name in ("data", "tokenizer", "shards"):
        shutil.copytree(upstream_run / name, run_dir / name)
    run_chain(["recipe=smoke", f"run_dir={run_dir}", "stages=[pretrain,sft_general]", "cluster.precision=bf16",
               f"nproc_per_node={NPROC}", "pretrain.max_steps=3", "pretrain.eval_sequences=2", "sft.max_steps=2",
               "sft.zero_stage=3"])
    for stage, zero in (("pretrain", 2), ("sft_general", 3)):
        m = manifest(run_dir / stage)
        assert m["status"] == "complete" and m["metrics"]["zero_stage"] == zero
        assert all(math.isfinite(r["loss"]) for r in metrics_rows(run_dir / stage))
        ckpt = sorted((run_dir / stage / "checkpoints").glob("checkpoint-*/global_step*"))[-1]
        assert len(list(ckpt.glob("bf16_zero_pp_rank_*optim_states.pt"))) == NPROC  # fp32 master weights, per rank
        with safe_open(str(run_dir / stage / "final" / "model.safetensors"), framework="pt") as st:
            assert {str(st.get_tensor(k).dtype) for k in st.keys()} == {"torch.bfloat16"}
    with pytest.raises(RecipeError, match="cluster.precision: fp16 training needs a GPU"):
        validate(compose_cfg(["recipe=smoke", "cluster.precision=fp16"]))
