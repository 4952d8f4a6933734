"""Near-duplicate removal robust to Korean spacing, punctuation and emoticon runs.

  textkey.py   the comparison key of a text and hashes of its character windows (numpy, per batch)
  minhash.py   MinHash signatures of key n-grams, LSH band keys
  index.py     the kept documents later ones are compared with (in memory, or sqlite on disk)
  steps.py     NearDedupSignature (split pass) and NearDedup (merge pass, after ExactDedup)
  settings.py  DedupSettings, the recipe's `data.dedup`
"""

from data_prep.corpus.near_dedup.settings import DedupSettings
from data_prep.corpus.near_dedup.steps import SIGNATURE, NearDedup, NearDedupSignature

__all__ = ["DedupSettings", "NearDedup", "NearDedupSignature", "SIGNATURE"]
