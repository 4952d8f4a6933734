"""Pre-tokenised corpus for pretraining: flat uint16/uint32 token files per split, a
document index per file and index.json. Torch-free.

    write.write_shards   corpus + tokenizer -> shards folder (+ metrics)
    read.load_index / open_split / document_ends / iter_documents / check_tokenizer
"""
