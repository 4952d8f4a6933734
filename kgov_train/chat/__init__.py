"""Chat (SFT) and preference (DPO) data: local jsonl/json/parquet files -> checked records in TRL's form.

torch-free. Modules:
    specs      the section's datasets (`data` shorthand or `datasets`), globs resolved, recipe errors named
    readers    records of jsonl, json and parquet files with file and line/row
    formats    converters to messages: messages, alpaca (KoAlpaca), qa, auto; preference for DPO; system prompt
    checks     validation of every record, with a reason
    rejects    <stage_dir>/rejects/rejected.jsonl: every rejected record with dataset, file, line/row and reason
    mixture    validation split by prompt hash, per-dataset caps, weighted mixture
    lengths    token lengths under the chat template; max_length with overlong truncate|drop
    load       load_chat_data(): the whole path, with stats
"""

from kgov_train.chat.errors import ChatDataError
from kgov_train.chat.lengths import apply_max_length, token_lengths
from kgov_train.chat.load import ChatData, load_chat_data
from kgov_train.chat.specs import DatasetSpec, InputFile, dataset_specs, input_files

__all__ = ["ChatData", "ChatDataError", "DatasetSpec", "InputFile", "apply_max_length", "dataset_specs",
           "input_files", "load_chat_data", "token_lengths"]
