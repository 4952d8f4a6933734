"""The eval stage's pieces: bits per byte on raw text (bits_per_byte, the text sets in texts), validation perplexity
per source, greedy generations, lm-evaluation-harness benchmarks on local task files, and the report (tables, PNG
plots). torch, transformers, lm_eval and matplotlib are imported inside the functions that need them."""
