"""Pre-tokenised corpus for pretraining: flat uint16/uint32 token files per split and input file, a document index
and per-document source/id-hash per file, the train mixture schedule and index.json. Torch-free.

    write.write_shards   corpus + tokenizer -> shards folder (+ metrics); parallel (encode), resumable by input file
    split                per-source train/validation rule by id hash
    mixture              per-source weights -> rates -> train document schedule
    read.load_index / open_split / document_ends / document_meta / open_mixture / iter_documents / check_tokenizer
    stream.TokenStream / sample_indices   the packed token stream and a resumable, rank-sharded sample order
"""
