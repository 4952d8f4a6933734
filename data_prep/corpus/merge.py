"""Restore the corpus order after the parallel pass: a streaming k-way merge of the task files.

Each task wrote its records ordered by (file_index, line), so merging them yields
the order of a single-task run, whatever the number of tasks; memory stays at one
record per task file.
"""

from __future__ import annotations

import heapq
from typing import Iterator

import orjson
from datatrove.data import Document, DocumentsPipeline
from datatrove.io import get_datafolder

from data_prep.corpus import records as R
from data_prep.corpus.step import CorpusStep


class CorpusOrderError(RuntimeError):
    pass


class MergeTaskFiles(CorpusStep):
    type = "📖 - READER"
    name = "merge task files in corpus order"

    def __init__(self, work_folder: str):
        super().__init__()
        self.work_folder = work_folder

    def _read(self, folder, name: str) -> Iterator[Document]:
        with folder.open(name, "rb") as f:
            for raw in f:
                d = orjson.loads(raw)
                yield Document(text=d["text"], id=d["id"], metadata=d["metadata"])

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if world_size != 1:
            raise ValueError(f"{self.name} must run as a single task, got {world_size} tasks")
        folder = get_datafolder(self.work_folder)
        names = folder.list_files(glob_pattern="*.jsonl")
        self.stat_update("task_files", value=len(names))
        last = None
        for doc in heapq.merge(*(self._read(folder, n) for n in names), key=R.order_key):
            key = R.order_key(doc)
            # a repeated or backwards key means a task file was duplicated or written out of order
            if last is not None and key <= last:
                raise CorpusOrderError(f"record {R.location(doc.metadata)} after {last}: task files overlap "
                                       f"or are out of order in {self.work_folder}")
            last = key
            self.stat_update("records")
            yield doc
