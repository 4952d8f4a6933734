"""Capacity planner behind `kgov-train plan`: memory per GPU and training time of a recipe, before any GPU is booked.

For each ZeRO stage and offload choice: model states per GPU (memory.py: the ZeRO paper's 2 + 2 + 12
bytes/param split plus DeepSpeed's fp32 step gradients and ZeRO-3 gathered module), activations at the
recipe's micro batch and seq_len with and without activation checkpointing (Korthikanti et al. 2022), a fixed
overhead, whether that fits cluster.memory_gb_per_device and the largest micro batch that does. Then the
training time of pretrain.tokens or pretrain.flops (budget.py: flops / (6 x non-embedding parameters); null: the
Chinchilla budget of 20 tokens/parameter, always shown) at
6*N + 6*L*s*h FLOPs per token (model.py) and a stated MFU.
With pretrain.lora.enabled=true (and pretrain.lora.qlora=true) the table is that of LoRA (QLoRA) continued
pretraining (lora.py): the frozen base in bf16 (NF4 + double quantisation, 4.127 bits, for the decoder Linears),
whole on every GPU unless ZeRO-3, and mixed-precision Adam over the adapters and modules_to_save only.

Settings that are not recipe keys: plan.mfu (0.40), plan.vocab_size (default: tokenizer.vocab_size rounded up to
model.pad_vocab_multiple, as the pretrain stage builds the model), plan.overhead_gb (4); --json prints the numbers.
Imports only Hydra/OmegaConf: no torch, no DeepSpeed.
"""
