"""The corpus writers: parts bounded in size, reproducible gzip, every record once and in order."""

from __future__ import annotations

import gzip

from data_prep.corpus.writers import JsonlFiles


def test_parts_split_at_the_bound_and_keep_every_line_in_order(tmp_path):
    lines = [f'{{"n": {i}, "text": "한국어 문장 {i}"}}\n'.encode() for i in range(5000)]
    out = JsonlFiles(str(tmp_path / "gz"), rank=3, gzip_output=True, max_file_bytes=40_000)
    for line in lines:
        out.write(line)
    out.close()
    parts = sorted((tmp_path / "gz").iterdir())
    assert [p.name for p in parts[:2]] == ["000_00003.jsonl.gz", "001_00003.jsonl.gz"]
    data = [gzip.decompress(p.read_bytes()) for p in parts]
    longest = max(map(len, lines))
    assert len(parts) > 2 and all(40_000 <= len(d) < 40_000 + longest for d in data[:-1]) and len(data[-1]) < 40_000 + longest
    assert b"".join(data) == b"".join(lines)

    again = JsonlFiles(str(tmp_path / "again"), rank=3, gzip_output=True, max_file_bytes=40_000)
    for line in lines:
        again.write(line)
    again.close()
    assert [p.read_bytes() for p in sorted((tmp_path / "again").iterdir())] == [p.read_bytes() for p in parts]


def test_no_records_no_file_and_unbounded_single_file(tmp_path):
    JsonlFiles(str(tmp_path / "none"), rank=0, gzip_output=True, max_file_bytes=10).close()
    assert not (tmp_path / "none").exists() or not any((tmp_path / "none").iterdir())
    one = JsonlFiles(str(tmp_path / "work"), rank=7, gzip_output=False, max_file_bytes=None)
    for i in range(3000):
        one.write(b"x" * 1000 + b"\n")
    one.close()
    (f,) = (tmp_path / "work").iterdir()
    assert f.name == "00007.jsonl" and f.stat().st_size == 3000 * 1001
