"""Corpus side of kgov-train: datatrove blocks for Korean text, tokenizer building and
pre-tokenisation into shards. Never imports torch, so it runs on CPU-only data nodes."""
