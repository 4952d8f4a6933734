"""A checkpoint's weight files, read without loading a weight: which files hold the weights (safetensors, sharded with
an index, or pickle checkpoints), and each tensor's dtype and shape from the safetensors headers.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON ({name: {dtype, shape, data_offsets:
[begin, end]}, "__metadata__": {...}}), then the data; offsets count from the data's start, and the data is indexed
end to end without holes, so a whole file is exactly 8 + N + the largest end offset bytes.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_INDEX = "pytorch_model.bin.index.json"
MAX_HEADER = 100_000_000  # the safetensors format's own limit on the header

# safetensors dtype -> (bits per element, torch name)
DTYPES = {
    "BOOL": (8, "bool"), "U8": (8, "uint8"), "I8": (8, "int8"), "F8_E5M2": (8, "float8_e5m2"),
    "F8_E4M3": (8, "float8_e4m3fn"), "F8_E8M0": (8, "float8_e8m0fnu"), "I16": (16, "int16"), "U16": (16, "uint16"),
    "F16": (16, "float16"), "BF16": (16, "bfloat16"), "I32": (32, "int32"), "U32": (32, "uint32"),
    "F32": (32, "float32"), "I64": (64, "int64"), "U64": (64, "uint64"), "F64": (64, "float64"),
    "C64": (64, "complex64"), "F4": (4, "float4_e2m1fn_x2"),
}


@dataclass(frozen=True)
class Tensor:
    file: str  # relative to the model folder
    dtype: str  # torch's name: bfloat16, float32, ...
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


class CorruptWeights(ValueError):
    """A safetensors file that is truncated or not safetensors; the message says what is wrong, not which file."""


def read_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{tensor name: (safetensors dtype, shape)} from the file's header, after checking the header and every
    tensor's offsets against the file's size (a copy cut short fails here, before any hash)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CorruptWeights(f"{size} bytes, shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER or 8 + n > size:
            raise CorruptWeights(f"header length {n} beyond the file's {size} bytes")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptWeights(f"header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise CorruptWeights("header is not a JSON object")
    data, end_max, out = size - 8 - n, 0, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], tuple(int(d) for d in info["shape"]), info["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise CorruptWeights(f"tensor {name!r}: header entry without dtype, shape and data_offsets") from None
        if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end):
            raise CorruptWeights(f"tensor {name!r}: bad data_offsets {info['data_offsets']}")
        if end > data:
            raise CorruptWeights(f"tensor {name!r}: data_offsets end {end} beyond the file's {data} data bytes")
        bits = DTYPES.get(dtype, (None,))[0]
        if bits is not None and end - begin != math.prod(shape) * bits // 8:
            raise CorruptWeights(f"tensor {name!r}: {end - begin} bytes for shape {list(shape)} of {dtype}")
        end_max = max(end_max, end)
        out[name] = (dtype, shape)
    if size != 8 + n + end_max:
        raise CorruptWeights(f"file size {size} != 8 + header {n} + data {end_max} bytes")
    return out


def weight_files(folder: Path, files: list[Path]) -> tuple[list[Path], list[Path], list[str]]:
    """(safetensors weight files, pickle files, problems) of a model folder whose files are `files`.

    The safetensors weights are the shards an index names, else model.safetensors, else every *.safetensors at
    the top. Problems: an index that is not JSON, or names a shard that is missing."""
    problems: list[str] = []
    pickles = [f for f in files if f.suffix in PICKLE_SUFFIXES]
    index = folder / SAFETENSORS_INDEX
    if index.is_file():
        shards, problem = _index_shards(index)
        if problem:
            return [], pickles, [problem]
        missing = [s for s in shards if not (folder / s).is_file()]
        problems += [f"{folder / s} is named in {index.name} but missing" for s in missing]
        return [folder / s for s in shards if s not in missing], pickles, problems
    if (folder / "model.safetensors").is_file():
        return [folder / "model.safetensors"], pickles, problems
    return sorted(f for f in files if f.suffix == ".safetensors" and f.parent == folder), pickles, problems


def index_map(folder: Path) -> dict[str, str] | None:
    """The index's tensor -> shard map (None without an index)."""
    path = folder / SAFETENSORS_INDEX
    if not path.is_file():
        return None
    return dict(json.loads(path.read_text(encoding="utf-8")).get("weight_map", {}))


def _index_shards(index: Path) -> tuple[list[str], str | None]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return sorted(set(weight_map.values())), None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        return [], f"{index} is not a safetensors index (JSON with a weight_map): {type(e).__name__}: {e}"


def read_tensors(folder: Path, files: list[Path]) -> tuple[dict[str, Tensor], list[str]]:
    """Every tensor of the safetensors `files` with its file, dtype and shape; problems: a corrupt file (one line
    each), a tensor in two files, and with an index a tensor it maps to a shard that lacks it."""
    tensors: dict[str, Tensor] = {}
    problems: list[str] = []
    for f in files:
        rel = str(f.relative_to(folder))
        try:
            header = read_header(f)
        except CorruptWeights as e:
            problems.append(f"{f} is truncated or corrupt ({e}); copy it again from the source")
            continue
        except OSError as e:
            problems.append(f"{f} cannot be read: {e}")
            continue
        for name, (dtype, shape) in header.items():
            if name in tensors:
                problems.append(f"{f}: tensor {name!r} is also in {folder / tensors[name].file}")
            tensors[name] = Tensor(rel, DTYPES.get(dtype, (0, dtype))[1], shape)
    try:
        mapping = index_map(folder)
    except (OSError, ValueError, TypeError, AttributeError):
        mapping = None  # weight_files reported it
    if mapping and not problems:
        wrong = [n for n, shard in mapping.items() if n not in tensors or tensors[n].file != shard]
        if wrong:
            problems.append(f"{folder / SAFETENSORS_INDEX}: {len(wrong)} tensor(s) not in the shard it names "
                            f"(first: {wrong[0]!r} -> {mapping[wrong[0]]})")
    return tensors, problems


def dtype_elements(tensors: dict[str, Tensor]) -> dict[str, int]:
    """Elements per dtype, most first."""
    counts: dict[str, int] = {}
    for t in tensors.values():
        counts[t.dtype] = counts.get(t.dtype, 0) + t.numel
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))
