"""Tokenizer for kgov-train: a lossless sentencepiece model (BPE or unigram, byte fallback)
exported as a transformers fast tokenizer with the project's special tokens and chat template.
Torch-free: transformers is not imported here.

    build.build_tokenizer   corpus -> tokenizer folder (+ metrics)
    train.train_sentencepiece, export.export, chat_template.DEFAULT_CHAT_TEMPLATE, specials
    special_ids.read_special_tokens   any tokenizer folder's bos/eos/pad/unk ids, as transformers resolves them
"""
