"""Size of a Llama model from its recipe, and its training FLOPs per token.

Parameters (transformers' LlamaForCausalLM, no biases):
    embeddings       V*h                      (+ V*h LM head unless tie_word_embeddings)
    per layer        attention  h*a*d (q) + 2*h*k*d (k, v; GQA: k = num_key_value_heads) + a*d*h (o), d = h/a
                     SwiGLU MLP 3*h*i (gate, up, down)
                     RMSNorm    2*h
    final RMSNorm    h
    non-embedding    L * per layer + h        (neither the input embedding nor the LM head: pretrain.flops's N)

FLOPs per token (forward + backward = 3 x forward, 2 FLOPs per multiply-add), as the pretrain stage's `mfu`
metric counts them (train/engine.py flops_per_token), so plan.mfu and the logged mfu are the same quantity:
    6*N + 6*L*s*h
N is every parameter (the input embedding is a lookup, so this overstates by V*h/N, ~2-4% at 7B). 6*L*s*h is
attention's QK^T and AV with a causal mask: 12*L*s*h unmasked, halved as flash/SDPA kernels skip the masked half.
"""

from __future__ import annotations

from dataclasses import dataclass

CHINCHILLA_TOKENS_PER_PARAM = 20  # Hoffmann et al. 2022: compute-optimal tokens ~ 20 x parameters (embeddings included)


@dataclass(frozen=True)
class Shape:
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    tied: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def layer_params(self) -> int:
        h, d = self.hidden, self.head_dim
        attention = h * self.heads * d * 2 + h * self.kv_heads * d * 2  # q, o + k, v
        return attention + 3 * h * self.intermediate + 2 * h

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def non_embedding_params(self) -> int:
        """The transformer body: every parameter but the input embedding and the LM head (Kaplan et al. 2020's N).
        Independent of the vocabulary, so pretrain.flops buys variants with other tokenizers the same body compute."""
        return self.layers * self.layer_params + self.hidden

    @property
    def params(self) -> int:
        head = 0 if self.tied else self.embedding_params
        return self.embedding_params + head + self.layers * self.layer_params + self.hidden

    @property
    def largest_layer_params(self) -> int:
        """Largest single module (what ZeRO-3 gathers at once): in a Llama, the embedding/LM head or an MLP matrix."""
        return max(self.embedding_params, self.hidden * self.intermediate, self.hidden * self.heads * self.head_dim)

    def flops_per_token(self, seq_len: int) -> int:
        return 6 * self.params + 6 * self.layers * seq_len * self.hidden
