"""Training side: torch, DeepSpeed, transformers and TRL live here only."""
