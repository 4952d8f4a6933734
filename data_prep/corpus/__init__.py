"""Corpus preparation on datatrove: read, NFC-normalise, filter, exactly deduplicate.

Every input record ends in clean/ or in rejected/ with a reason and its file:line.
Entry point: `prepare_corpus(files, out_dir, CorpusSettings(...))`.
"""

from data_prep.corpus.pipeline import CorpusError, CorpusReport, CorpusSettings, prepare_corpus
from data_prep.corpus.readers import FORMATS, input_format

__all__ = ["CorpusError", "CorpusReport", "CorpusSettings", "prepare_corpus", "FORMATS", "input_format"]
