"""Typed schema of the recipe tree.

Hydra validates every composed recipe against these dataclasses, so an unknown
key, a value of the wrong type or a choice not in its enum fails at composition
time, before any data or model is touched, with the full dotted key in the message.
The choices are StrEnums: a value compares equal to its string and is stored as one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from data_prep.corpus.pipeline import CorpusSettings
from kgov_train.run_folder import CHAIN, ROUTES, TRAINING


def _choices(name: str, values: str) -> type[StrEnum]:
    return StrEnum(name, [(v, v) for v in values.split()])


TokenizerModel = _choices("TokenizerModel", "bpe unigram")
BenchmarkChat = _choices("BenchmarkChat", "auto always never")
# transformers' lr_scheduler_type values, and wsd (warmup-stable-decay, pretrain's token schedule: train/schedule.py)
LRScheduler = _choices("LRScheduler", "linear cosine cosine_with_restarts polynomial constant constant_with_warmup "
                                      "inverse_sqrt cosine_with_min_lr warmup_stable_decay wsd")
Optimizer = _choices("Optimizer", "adamw_torch adamw_torch_fused adamw_8bit paged_adamw_8bit adafactor sgd")
SpikePolicy = _choices("SpikePolicy", "none skip rollback")
# pretrain.phases[i].trainable: the new embedding rows of a vocabulary extension only, both embedding matrices, all
PhaseTrainable = _choices("PhaseTrainable", "new_embeddings embeddings all")
Overlong = _choices("Overlong", "truncate drop")
# TRL 1.16 DPOConfig.loss_type values (tests/test_recipes.py checks them against TRL's own list)
DPOLoss = _choices("DPOLoss", "sigmoid hinge ipo exo_pair nca_pair robust bco_pair sppo_hard aot aot_unpaired "
                              "apo_zero apo_down discopop sft sigmoid_norm")
Attention = _choices("Attention", "sdpa eager flash_attention_2")
Device = _choices("Device", "cpu cuda")
Backend = _choices("Backend", "gloo nccl")
Precision = _choices("Precision", "fp32 bf16 fp16")
Route = _choices("Route", " ".join(ROUTES))
TokenizerMode = _choices("TokenizerMode", "train extend base")


@dataclass
class BaseConfig:
    """`base`: the local foundation model folder the cpt and finetune routes start from; the base stage verifies it
    before anything trusts it (docs/base.md). Nothing is fetched from a hub."""

    path: Optional[str] = None  # local folder (config.json, tokenizer, *.safetensors); a hub id is refused
    name: Optional[str] = None  # the model's name as the papers give it, e.g. Llama-3.2-1B
    license: str = "unknown"  # e.g. apache-2.0, llama3.2; unknown/empty refused unless allow_unknown_license
    allow_pickle: bool = False  # accept *.bin/*.pt/*.pth/*.ckpt/*.pkl (read weights-only on the meta device)
    trust_remote_code: bool = False  # accept auto_map in config.json/tokenizer_config.json (runs the folder's code)
    allow_unknown_license: bool = False


@dataclass
class SourceConfig:
    """One corpus source: its files and what every document from them carries."""

    name: str = MISSING
    inputs: List[str] = field(default_factory=list)  # files or globs
    license: str = "unknown"
    weight: float = 1.0  # relative share in the training mixture
    text_key: Optional[str] = None  # null: data.text_key
    id_key: Optional[str] = None  # null: data.id_key
    encoding: Optional[str] = None  # null: data.encoding


@dataclass
class DataConfig(CorpusSettings):
    """`data`: the corpus files and their provenance, on top of how the corpus is prepared (data_prep's
    CorpusSettings: min/max chars, tasks, the normalize/pii/quality/dedup/decontam blocks, executor)."""

    # Either `sources` (several, each with name/license/weight), or the one-source shorthand
    # `inputs` + `source` + `license`. Inputs: jsonl(.gz), parquet, csv/tsv(.gz), txt(.gz), hwp, hwpx.
    sources: List[SourceConfig] = field(default_factory=list)
    inputs: List[str] = field(default_factory=list)
    source: str = "default"
    license: str = "unknown"
    text_key: str = "text"
    id_key: str = "id"
    encoding: str = "utf-8"  # text encoding of jsonl/csv/tsv/txt inputs, e.g. cp949 for many data.go.kr exports


@dataclass
class TokenizerConfig:
    model_type: TokenizerModel = TokenizerModel.bpe
    vocab_size: int = 32000  # with extend_from: the extended tokenizer's total size
    character_coverage: float = 0.9995
    input_sentence_size: int = 2_000_000  # at most this many training "sentences" (documents), sentencepiece samples
    max_sentence_length: int = 16384  # bytes; longer documents are cut (at a newline), not dropped
    split_digits: bool = True
    user_defined_symbols: List[str] = field(default_factory=list)  # extra pieces never split (e.g. "제", "조")
    # Training sample: about this many characters of data/clean, shared between sources by their
    # data.sources[].weight and drawn by a hash of the document id (deterministic, streaming).
    sample_chars: int = 200_000_000
    heldout_fraction: float = 0.01  # documents (by id hash) kept out of training, for the report
    heldout_chars: int = 2_000_000  # per source, at most, scored in report.json/report.md
    morpheme_aware: bool = False  # pieces never straddle a Korean morpheme boundary (kiwipiepy, Polyglot-ko)
    # train: a new tokenizer from the corpus; extend: Korean pieces added to a base tokenizer (extend_from, or the
    # imported base model's on the cpt route) up to vocab_size; base: that base tokenizer as it is.
    # null: extend when extend_from is set, else train (scratch); base (cpt).
    mode: Optional[TokenizerMode] = None
    extend_from: Optional[str] = None  # local HF tokenizer folder (modes extend and base on the scratch route)
    baseline: Optional[str] = None  # local HF tokenizer folder scored beside ours in the report
    chat_template: Optional[str] = None  # jinja; null = the project's template
    num_threads: int = 2


@dataclass
class ShardsConfig:
    validation_fraction: float = 0.05  # of each source's documents, chosen by hash of id
    min_validation_docs: int = 1  # per source
    max_tokens_per_file: int = 100_000_000
    batch_size: int = 256  # documents per batch handed to a worker
    workers: int = 2  # tokenizer processes (1: in the stage's own process)
    seed: int = 0  # order of the train mixture schedule (data.sources[].weight as token shares)


@dataclass
class OptimizerConfig:
    """`<stage>.optimizer`: the Trainer's optimizer (DeepSpeed uses it too unless its own config names one)."""

    name: Optimizer = Optimizer.adamw_torch_fused  # transformers' own default (torch >= 2.8), as before this key existed
    beta1: float = 0.9
    beta2: float = 0.999  # AdamW's default; LLM pretraining uses 0.95 (recipes/recipe/kgov_7b.yaml)
    eps: float = 1e-8
    weight_decay: float = 0.0


@dataclass
class TrainStageConfig:
    """Settings shared by every training stage (pretrain, sft, dpo)."""

    max_steps: int = 100
    save_steps: int = 50
    save_total_limit: int = 2
    logging_steps: int = 1
    zero_stage: Optional[int] = None  # null: the deepspeed recipe's stage
    micro_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    learning_rate: float = 3e-4
    lr_scheduler_type: LRScheduler = LRScheduler.cosine
    warmup_steps: int = 0
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False
    dataloader_num_workers: int = 0
    # Trackers among wandb, tensorboard, mlflow (others are refused), each writing inside the stage folder: wandb
    # offline (<stage>/wandb), tensorboard event files (<stage>/tensorboard), an mlflow file store (<stage>/mlruns).
    # A user's WANDB_MODE / TENSORBOARD_LOGGING_DIR / MLFLOW_TRACKING_URI wins (kgov_train/offline.py)
    report_to: List[str] = field(default_factory=list)
    # Any other field of the stage's arguments object (TrainingArguments; TRL's SFTConfig / DPOConfig), passed through
    # as is and checked when the recipe is, by building that object: e.g. {torch_compile: true, adam_beta2: 0.98}
    trainer_args: Dict[str, Any] = field(default_factory=dict)
    # Extra Trainer callbacks: each {_target_: module.Class, ...its arguments} (Hydra instantiate). One with an
    # attach(trainer) method gets the trainer first.
    callbacks: List[Any] = field(default_factory=list)


@dataclass
class SpikeConfig:
    """`pretrain.spike`: what a loss spike is and what the run does about it."""

    # none | skip (the step changes no weight) | rollback (to the last checkpoint, data window skipped)
    policy: SpikePolicy = SpikePolicy.skip
    factor: float = 3.0  # a loss above factor x its moving average is a spike; a non-finite loss always is
    ema_steps: int = 50  # span of the moving average
    min_steps: int = 20  # no detection before this step: the early loss falls too fast to compare
    max_events: int = 10  # more spikes than this fail the stage: the run is unstable, not unlucky


@dataclass
class PhaseConfig:
    """One of `pretrain.phases`: a part of the stage with its own token budget, trainable set, optimizer and
    schedule, started from the previous phase's weights (docs/pretrain.md#phases)."""

    name: str = MISSING
    trainable: PhaseTrainable = PhaseTrainable.all
    tokens: Optional[int] = None  # the phase's length in tokens (rounded up to whole steps); else max_steps
    max_steps: Optional[int] = None
    learning_rate: Optional[float] = None  # null: pretrain.learning_rate


# The linear layers of a Llama-style decoder layer: LoRA's default targets (train/lora.py) and what the planner
# counts (planner/lora.py).
LLAMA_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoraConfig:
    """`sft.lora` / `dpo.lora` / `pretrain.lora`: peft LoRA. final/ is the merged model, the adapter beside it."""

    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    # left at this default, the architecture's own names are used (train/lora.py DEFAULT_TARGETS: GPT-NeoX ...)
    target_modules: List[str] = field(default_factory=lambda: list(LLAMA_LORA_TARGETS))
    modules_to_save: List[str] = field(default_factory=list)  # e.g. [embed_tokens, lm_head] after a vocab extension
    # QLoRA: the base loaded in 4-bit (bitsandbytes NF4). Needs a CUDA GPU and bitsandbytes; refused on CPU.
    qlora: bool = False


@dataclass
class PretrainConfig(TrainStageConfig):
    seq_len: int = 2048
    # Token-denominated schedule. tokens: the run's length (sets max_steps); global_batch_tokens: tokens per
    # optimizer step over all ranks (sets gradient_accumulation_steps); warmup_tokens overrides warmup_steps.
    tokens: Optional[int] = None
    # Equal-compute budget instead of tokens (not both; not with phases), e.g. 1.0e21: tokens = flops / (6 N), N the
    # NON-embedding parameters of the model trained (neither embedding nor LM head; route=cpt: the base's), so
    # variants with other tokenizers/vocabularies get the same compute in the transformer body (docs/pretrain.md).
    flops: Optional[float] = None
    global_batch_tokens: Optional[int] = None
    warmup_tokens: Optional[int] = None
    # lr_scheduler_type: cosine | linear | constant_with_warmup | wsd (warmup-stable-decay). With wsd the last
    # decay_tokens decay the lr; resuming a checkpoint with a larger tokens/max_steps and decay_tokens set starts
    # the decay from there (annealing a continued-pretraining run).
    decay_tokens: Optional[int] = None
    min_lr_ratio: float = 0.0  # the lr the cosine/wsd decay ends at, as a fraction of learning_rate
    spike: SpikeConfig = field(default_factory=SpikeConfig)
    learning_rate: float = 3e-4
    warmup_steps: int = 10
    eval_sequences: int = 64  # validation sequences of seq_len tokens scored after training (0: skip)
    lora: LoraConfig = field(default_factory=LoraConfig)  # continued pretraining with LoRA/QLoRA (docs/pretrain.md)
    # Phases run in order inside the stage (e.g. the new embedding rows first, then all); empty: one phase of
    # pretrain.tokens / max_steps training everything
    phases: List[PhaseConfig] = field(default_factory=list)


@dataclass
class ChatDatasetConfig:
    """One chat (SFT) or preference (DPO) dataset of `sft.datasets` / `dpo.datasets`: local files, their layout,
    their share of the mixture and a cap."""

    name: str = MISSING
    inputs: List[str] = field(default_factory=list)  # jsonl / json / parquet files or globs (local only)
    # auto | messages | alpaca (instruction/input/output, KoAlpaca) | qa (question/answer columns) for SFT;
    # auto | preference (prompt/chosen/rejected, conversational or plain strings) for DPO
    format: str = "auto"
    weight: float = 1.0  # relative share of the training mixture (records), after caps
    max_records: Optional[int] = None  # cap: at most this many of the dataset's valid records (seeded sample)
    license: str = "unknown"
    question_key: Optional[str] = None  # qa: the question column (null: the first of question, Q, 질문, instruction)
    answer_key: Optional[str] = None  # qa: the answer column (null: the first of answer, A, 답변, output)
    system_prompt: Optional[str] = None  # null: the stage's system_prompt


@dataclass
class ChatStageConfig(TrainStageConfig):
    """What SFT and DPO share: datasets, validation split, record checks, LoRA."""

    data: List[str] = field(default_factory=list)  # shorthand: files of one dataset named "data", format auto
    datasets: List[ChatDatasetConfig] = field(default_factory=list)
    validation_fraction: float = 0.05  # of each dataset's records (by hash), held out
    max_validation_records: int = 200  # per stage, at most
    system_prompt: Optional[str] = None  # added to records without a system turn, e.g. "당신은 ... 도우미입니다."
    max_length: int = 1024  # tokens
    overlong: Overlong = Overlong.truncate  # records longer than max_length are truncated or dropped (both counted)
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class SFTConfig(ChatStageConfig):
    learning_rate: float = 2e-5
    assistant_only_loss: bool = True
    packing: bool = False  # several records per row, attention kept within each record (position_ids)


@dataclass
class DPOConfig(ChatStageConfig):
    learning_rate: float = 5e-7
    beta: float = 0.1
    loss_type: DPOLoss = DPOLoss.sigmoid
    precompute_ref_log_probs: bool = False  # score the reference once before training (no reference in memory)
    # The stage whose model DPO starts from; null: the last SFT stage. E.g. base (route finetune) or pretrain, to
    # tune preferences without SFT: stages=[base,dpo,eval] dpo.from_stage=base.
    from_stage: Optional[str] = None


@dataclass
class EvalConfig:
    """`eval`: perplexity, bits per byte, greedy generations and lm-evaluation-harness benchmarks of the trained models
    and the imported base model (CPU ok)."""

    model_stage: str = "dpo"  # the model evaluated; must be complete
    stages: List[str] = field(default_factory=lambda: list(TRAINING))  # compared too, when complete
    seq_len: Optional[int] = None  # perplexity and bits-per-byte window in tokens; null: pretrain.seq_len
    max_tokens_per_source: int = 200_000  # validation tokens scored per source, at most
    prompts: str = "${kgov_root:}/examples/eval/prompts.jsonl"  # jsonl: {"id", "prompt"}
    max_new_tokens: int = 64  # greedy generations
    tasks: List[str] = field(default_factory=lambda: ["kgov_kobest_boolq_sample", "kgov_public_admin_mc_sample"])
    task_dirs: List[str] = field(default_factory=list)  # extra local lm-eval task folders of your own
    # lm-eval's Korean benchmarks by name (kobest, kmmlu, haerae, click, kormedmcqa, kbl or one of their groups or
    # tasks), on local copies of their hub datasets in datasets_dir (kgov_train.evaluation.benchmarks, docs/eval.md)
    benchmarks: List[str] = field(default_factory=list)
    datasets_dir: Optional[str] = None
    chat_template: BenchmarkChat = BenchmarkChat.auto  # auto: generative tasks of chat models (docs/eval.md)
    limit: Optional[int] = None  # items per task; null: all
    num_fewshot: Optional[int] = None
    batch_size: int = 8  # lm-eval, perplexity and bits-per-byte batches
    # bits per byte (kgov_train.evaluation.bits_per_byte) on raw text, every model with its own tokenizer, the
    # imported base model included: the run's held-out corpus documents per source (routes with shards), the chat
    # stages' validation records (finetune route), and each of these local files as its own set (named by the file
    # stem): .txt (one document per blank-line-separated paragraph) or .jsonl ("text"), e.g.
    # examples/eval/texts/en_forgetting_sample.txt to measure forgetting of English
    text_files: List[str] = field(default_factory=list)
    max_bytes_per_set: int = 500_000  # UTF-8 bytes scored per set, at most (whole documents, in order)


@dataclass
class ModelConfig:
    name: str = MISSING
    architecture: str = "llama"
    hidden_size: int = MISSING
    intermediate_size: int = MISSING
    num_hidden_layers: int = MISSING
    num_attention_heads: int = MISSING
    num_key_value_heads: Optional[int] = None  # null: same as attention heads (no GQA)
    max_position_embeddings: int = 4096
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02
    attn_implementation: Attention = Attention.sdpa  # flash_attention_2: GPU only
    init_from: Optional[str] = None  # local HF checkpoint for continued pretraining
    # Embedding rows rounded up to a multiple of this (1: exactly len(tokenizer)); the extra rows are never produced
    # by the tokenizer. Ignored with init_from.
    pad_vocab_multiple: int = 64
    # init_from with fewer embedding rows than the tokenizer (an extended tokenizer): grow them, new rows at the mean
    # of the old ones (transformers' mean_resizing). False refuses such a checkpoint.
    resize_embeddings: bool = False


@dataclass
class ClusterConfig:
    name: str = MISSING
    device: Device = Device.cpu
    backend: Backend = Backend.gloo
    precision: Precision = Precision.fp32
    gpus_per_node: int = 0
    peak_tflops_per_device: float = 0.0  # dense bf16 peak, for MFU
    memory_gb_per_device: float = 0.0  # accelerator memory, for `kgov-train plan`
    # Slurm: used by the sbatch templates and the submitter.
    partition: Optional[str] = None
    cpu_partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    time: str = "24:00:00"
    cpus_per_task: int = 2
    mem: Optional[str] = None
    master_port: int = 29500
    # Training jobs: USR1 this many seconds before the time limit (checkpoint and stop), then requeue, at most
    # max_requeues times (slurm/train.sbatch).
    preempt_signal_seconds: int = 300
    max_requeues: int = 3
    setup: List[str] = field(default_factory=list)  # shell lines run before training (module load, venv)
    env: Dict[str, str] = field(default_factory=dict)  # exported in jobs (NCCL_*, GLOO_SOCKET_IFNAME)


@dataclass
class KGovConfig:
    recipe_name: str = MISSING
    route: Route = Route.scratch  # scratch | cpt | finetune: the chain of stages (kgov_train.run_folder.ROUTES)
    run_dir: str = "runs/${recipe_name}"
    # The stage cache (docs/operations.md#sweeps-and-the-stage-cache): a folder where sealed stages are kept by
    # content and reused by any run that plans the same stage. null: none, except under -m (the sweep's own).
    cache_dir: Optional[str] = None
    stages: List[str] = field(default_factory=lambda: list(CHAIN))
    seed: int = 42
    force: bool = False
    nproc_per_node: int = 1
    nnodes: int = 1
    base: BaseConfig = field(default_factory=BaseConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    shards: ShardsConfig = field(default_factory=ShardsConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    # Named SFT stages run in this order instead of `sft`, each from the previous one's final/ (e.g. sft_general,
    # then sft_domain): each value holds the keys that differ from `sft`.
    sft_stages: Optional[Dict[str, Any]] = None
    dpo: DPOConfig = field(default_factory=DPOConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    # DeepSpeed's own JSON config, as in recipes/deepspeed/*.yaml; the Trainer fills "auto".
    deepspeed: Dict[str, Any] = field(default_factory=dict)


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="kgov_schema", node=KGovConfig)
