"""Near-duplicate removal robust to Korean spacing, punctuation, emoticon runs and, in short texts,
a character or two changed. Three passes (steps.py); the candidate search runs in parallel.

  textkey.py     the comparison key of a text and hashes of its character windows (numpy, per batch)
  minhash.py     MinHash signatures of key n-grams, LSH band keys
  editfilter.py  the partition filter that finds every short-key pair within a few edits
  rules.py       when a candidate pair is a near-duplicate (Jaccard estimate, edit distance)
  workfiles.py   what the passes leave for each other under <stage>/work/near/
  candidates.py  the candidate search of one hash partition
  steps.py       NearDedupSignature (split), NearDedupCandidates (near), NearDedup (merge)
  settings.py    DedupSettings, the recipe's `data.dedup`
"""

from data_prep.corpus.near_dedup.settings import DedupSettings
from data_prep.corpus.near_dedup.steps import NearDedup, NearDedupCandidates, NearDedupSignature, run_in_process

__all__ = ["DedupSettings", "NearDedup", "NearDedupCandidates", "NearDedupSignature", "run_in_process"]
