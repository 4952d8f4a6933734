"""SFT packing with attention kept within each record (TRL SFTConfig arguments for <key>.packing).

How it works (TRL 1.16, transformers 5.23; tests/test_packing.py checks it): packing_strategy "bfd" packs whole
records into rows of max_length tokens (best-fit decreasing; a record longer than max_length is truncated) and
forces padding_free: the collator concatenates the batch into one row with no attention_mask and position_ids that
restart at 0 for every record (and cu_seq_lens for the varlen kernels). transformers' create_causal_mask, when it gets
position_ids and no attention_mask and no cache, finds the records where the positions restart
(masking_utils.find_packed_sequence_indices) and builds a block-diagonal causal mask, for sdpa, eager and
flex_attention alike; flash_attention_2/3 use cu_seq_lens. Each record also gets its own rotary positions, so a
packed row's per-token losses equal those of its records run one by one (to ~5e-7 on CPU).

Refused: packing_strategy "wrapped" (rows cut mid-record with an all-ones attention_mask and no position_ids: tokens
attend across records), and attention implementations that do not build the mask this way.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from kgov_train.config.sections import section, where

# Attention implementations that keep packed records apart given position_ids (sdpa/eager measured on CPU in
# tests/test_packing.py, flex_attention measured once by hand: its first call compiles for ~80 s on 2 cores).
HONOURS_PACKED_POSITIONS = ("sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3")


class PackingError(ValueError):
    pass


def packing_kwargs(cfg: DictConfig, name: str, attn_implementation: str | None = None) -> dict[str, Any]:
    """SFTConfig keyword arguments for the stage's packing setting: packing=False when off; else packing=True,
    packing_strategy='bfd', padding_free=True. Refuses an attention implementation that would let records see
    each other."""
    s = section(cfg, name)
    if not bool(s.packing):
        return {"packing": False}
    attn = attn_implementation or str(cfg.model.attn_implementation)
    if attn not in HONOURS_PACKED_POSITIONS:
        key = where(cfg, name, "packing")
        raise PackingError(f"{key}=true: model.attn_implementation={attn} does not keep packed records apart; use "
                           f"one of {list(HONOURS_PACKED_POSITIONS)} (sdpa on CPU), or set {key}=false")
    return {"packing": True, "packing_strategy": "bfd", "padding_free": True}
