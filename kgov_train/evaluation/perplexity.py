"""Perplexity of a causal LM on the shards' validation split, overall and per data source.

Each validation document (<s> ... </s>, as the shards stage wrote it) is cut into windows of `seq_len` tokens that
are scored independently (the first token of a window is context only). A source contributes at most
`max_tokens_per_source` tokens, taken in corpus order, so the figure is deterministic.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.shards.read import document_ends, document_meta, load_index, open_split


def validation_windows(shards_dir: Path, seq_len: int, max_tokens_per_source: int) -> dict[str, list[np.ndarray]]:
    """{source name: [int64 token windows]} from the validation split (sources with no validation document absent)."""
    index = load_index(shards_dir)
    names = list(index["sources"])
    out: dict[str, list[np.ndarray]] = {}
    taken: dict[str, int] = {}
    for arr, ends, meta in zip(open_split(shards_dir, "validation"), document_ends(shards_dir, "validation"),
                               document_meta(shards_dir, "validation")):
        start = 0
        for end, rec in zip(ends, meta):
            end = int(end)
            src = int(rec["source"])
            name = names[src] if src < len(names) else f"source_{src}"
            doc = np.asarray(arr[start:end], dtype=np.int64)
            start = end
            for i in range(0, len(doc), seq_len):
                left = max_tokens_per_source - taken.get(name, 0)
                window = doc[i:i + min(seq_len, left)]
                if len(window) < 2:
                    break
                out.setdefault(name, []).append(window)
                taken[name] = taken.get(name, 0) + len(window)
    return out


def score_windows(model, windows: list[np.ndarray], batch_size: int, pad_id: int = 0) -> tuple[float, int]:
    """(summed negative log-likelihood in nats, predicted tokens) over the windows."""
    import torch
    import torch.nn.functional as F

    device = next(model.parameters()).device
    nll, count = 0.0, 0
    order = sorted(range(len(windows)), key=lambda i: -len(windows[i]))  # similar lengths share a batch
    for b in range(0, len(order), batch_size):
        batch = [windows[i] for i in order[b:b + batch_size]]
        width = max(len(w) for w in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for j, w in enumerate(batch):
            ids[j, :len(w)] = torch.from_numpy(w)
            mask[j, :len(w)] = 1
        ids, mask = ids.to(device), mask.to(device)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        target = ids[:, 1:]
        keep = mask[:, 1:].bool()
        losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none")
        nll += float(losses[keep.reshape(-1)].sum())
        count += int(keep.sum())
    return nll, count


def perplexity(model, windows: dict[str, list[np.ndarray]], batch_size: int, pad_id: int = 0) -> dict[str, Any]:
    """{"all": figures, "sources": {name: figures}}, figures = tokens, windows, loss (nats/token), perplexity."""
    def figures(nll: float, n: int, w: int) -> dict[str, Any]:
        loss = nll / n if n else float("nan")
        return {"tokens": n, "windows": w, "loss": round(loss, 6),
                "perplexity": round(math.exp(loss), 4) if n and loss < 700 else None}

    per, total_nll, total_n, total_w = {}, 0.0, 0, 0
    for name, ws in sorted(windows.items()):
        nll, n = score_windows(model, ws, batch_size, pad_id)
        per[name] = figures(nll, n, len(ws))
        total_nll, total_n, total_w = total_nll + nll, total_n + n, total_w + len(ws)
    return {"all": figures(total_nll, total_n, total_w), "sources": per}
