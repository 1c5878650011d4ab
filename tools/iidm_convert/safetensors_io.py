"""safetensors files without the ``safetensors`` package (not available here).

The writer orders tensors widest element type first so that, with the 8-byte aligned data
start, every tensor is naturally aligned and the C++ side can use the bytes in place; files are
written all-or-nothing.  The reader validates the header as strictly as the reference
implementation (tensors must tile the data section exactly).
"""

from __future__ import annotations

import json
import os
import struct
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .errors import ConvertError

# A header this large can only come from a corrupt or hostile file; refusing it
# keeps a garbage length field from triggering a multi-GB allocation.
MAX_HEADER_BYTES = 100 * 1024 * 1024


# safetensors dtype name -> torch dtype, for everything torch 1.13 can hold.
ST_TO_TORCH = OrderedDict(
    [
        ("F64", torch.float64),
        ("F32", torch.float32),
        ("F16", torch.float16),
        ("BF16", torch.bfloat16),
        ("I64", torch.int64),
        ("I32", torch.int32),
        ("I16", torch.int16),
        ("I8", torch.int8),
        ("U8", torch.uint8),
        ("BOOL", torch.bool),
    ]
)
TORCH_TO_ST = {v: k for k, v in ST_TO_TORCH.items()}

# Element sizes for every dtype of the format, so headers written by other
# tools can still be validated and listed even if torch cannot hold the data.
ST_ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U64": 8, "U32": 4, "U16": 2, "U8": 1,
    "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
}

# Little-endian numpy dtype used to (de)serialise the raw bytes.  BF16 has no
# numpy dtype, so its bits travel as int16 and are re-viewed in torch.
ST_TO_NUMPY = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<i2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U8": "u1", "BOOL": "?",
}


def _tensor_to_bytes(tensor: torch.Tensor) -> np.ndarray:
    """Return the tensor's data as a flat little-endian uint8 array."""
    t = tensor.detach().cpu().contiguous()
    arr = t.view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.numpy()
    # The format is little-endian regardless of the host.
    arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return np.ascontiguousarray(arr).reshape(-1).view(np.uint8)


def _build_header(
    tensors: Mapping, metadata: Optional[Mapping[str, str]]
) -> Tuple[bytes, List[str]]:
    """Build the padded JSON header; return it with the data order of the keys."""
    for name in tensors:
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ConvertError(f"invalid tensor name {name!r}")
    # Widest element types first (stable, so state-dict order survives within
    # a width): with the 8-byte aligned data start this keeps every tensor
    # naturally aligned, so the C++ side can use the bytes in place.
    order = sorted(tensors, key=lambda k: -tensors[k].element_size())
    header: "OrderedDict[str, object]" = OrderedDict()
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name in order:
        t = tensors[name]
        if t.dtype not in TORCH_TO_ST:
            raise ConvertError(f"tensor '{name}' has dtype {t.dtype}, which safetensors output does not support")
        nbytes = t.numel() * t.element_size()
        header[name] = {
            "dtype": TORCH_TO_ST[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # 8 + len(raw) is then a multiple of 8
    return raw, order


def _write_one(f, tensors: Mapping, metadata: Optional[Mapping[str, str]]) -> None:
    header, order = _build_header(tensors, metadata)
    f.write(struct.pack("<Q", len(header)))
    f.write(header)
    for name in order:
        f.write(_tensor_to_bytes(tensors[name]).data)


def write_safetensors_many(
    jobs: Sequence[Tuple[str, Mapping, Optional[Mapping[str, str]]]]
) -> List[int]:
    """Write several safetensors files all-or-nothing; return their sizes.

    Every file is first written completely to ``PATH.tmp`` and only then moved
    into place with os.replace, so an error (or Ctrl-C) never leaves a partial
    output behind and never clobbers an existing good file.
    """
    tmps: List[str] = []
    try:
        for path, tensors, metadata in jobs:
            tmp = path + ".tmp"
            tmps.append(tmp)
            with open(tmp, "wb") as f:
                _write_one(f, tensors, metadata)
                f.flush()
                os.fsync(f.fileno())
        sizes = [os.path.getsize(tmp) for tmp in tmps]
        for (path, _, _), tmp in zip(jobs, tmps):
            os.replace(tmp, path)
        return sizes
    except BaseException:
        for tmp in tmps:
            try:
                os.remove(tmp)
            except FileNotFoundError:
                pass
        raise


def write_safetensors(path: str, tensors: Mapping, metadata: Optional[Mapping[str, str]] = None) -> int:
    """Atomically write one safetensors file; return its size in bytes."""
    return write_safetensors_many([(path, tensors, metadata)])[0]


@dataclass
class SafetensorsHeader:
    entries: "OrderedDict[str, dict]"  # name -> {"dtype", "shape", "data_offsets"}
    metadata: Dict[str, str]
    data_start: int  # absolute file offset of the data section


def _parse_header(raw: bytes, data_len: int, path: str) -> SafetensorsHeader:
    try:
        obj = json.loads(raw.decode("utf-8"), object_pairs_hook=OrderedDict)
    except (UnicodeDecodeError, ValueError) as e:
        raise ConvertError(f"{path}: safetensors header is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ConvertError(f"{path}: safetensors header is not a JSON object")
    metadata = obj.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise ConvertError(f"{path}: safetensors __metadata__ must map strings to strings")
    spans = []
    for name, info in obj.items():
        bad = f"{path}: safetensors entry '{name}'"
        if not isinstance(info, dict) or info.get("dtype") not in ST_ITEMSIZE:
            raise ConvertError(f"{bad} has a missing or unknown dtype")
        shape, offs = info.get("shape"), info.get("data_offsets")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ConvertError(f"{bad} has an invalid shape {shape!r}")
        if (
            not isinstance(offs, list)
            or len(offs) != 2
            or not all(isinstance(o, int) for o in offs)
            or not 0 <= offs[0] <= offs[1] <= data_len
        ):
            raise ConvertError(f"{bad} has invalid data_offsets {offs!r}")
        if offs[1] - offs[0] != int(np.prod(shape, dtype=np.int64)) * ST_ITEMSIZE[info["dtype"]]:
            raise ConvertError(f"{bad}: data_offsets do not match dtype and shape")
        spans.append((offs[0], offs[1], name))
    # Like the reference implementation, demand that the tensors tile the data
    # section exactly: overlaps or holes indicate a corrupt or truncated file.
    pos = 0
    for begin, end, name in sorted(spans):
        if begin != pos:
            raise ConvertError(f"{path}: safetensors data of '{name}' is not contiguous (starts at {begin}, expected {pos})")
        pos = end
    if pos != data_len:
        raise ConvertError(f"{path}: safetensors data section is {data_len} bytes but the header describes {pos}")
    return SafetensorsHeader(obj, dict(metadata), 8 + len(raw))


def _read_header_from(f, path: str, file_size: int) -> SafetensorsHeader:
    head = f.read(8)
    if len(head) != 8:
        raise ConvertError(f"{path}: too short to be a safetensors file")
    (n,) = struct.unpack("<Q", head)
    if n > min(MAX_HEADER_BYTES, file_size - 8):
        raise ConvertError(f"{path}: invalid safetensors header length {n} (file has {file_size} bytes)")
    return _parse_header(f.read(n), file_size - 8 - n, path)


def read_safetensors_header(path: str) -> SafetensorsHeader:
    """Read and validate only the header (cheap even for multi-GB files)."""
    try:
        with open(path, "rb") as f:
            return _read_header_from(f, path, os.fstat(f.fileno()).st_size)
    except OSError as e:
        raise ConvertError(f"{path}: cannot read file ({e.strerror or e})") from None


def read_safetensors(path: str) -> Tuple["OrderedDict[str, torch.Tensor]", Dict[str, str]]:
    """Read a safetensors file into CPU tensors; return (tensors, metadata)."""
    try:
        with open(path, "rb") as f:
            header = _read_header_from(f, path, os.fstat(f.fileno()).st_size)
            data = f.read()
    except OSError as e:
        raise ConvertError(f"{path}: cannot read file ({e.strerror or e})") from None
    tensors: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for name, info in header.entries.items():
        st = info["dtype"]
        if st not in ST_TO_NUMPY:
            raise ConvertError(f"{path}: tensor '{name}' has dtype {st}, which torch {torch.__version__} cannot load")
        begin, end = info["data_offsets"]
        np_dtype = np.dtype(ST_TO_NUMPY[st])
        arr = np.frombuffer(data, dtype=np_dtype, count=(end - begin) // np_dtype.itemsize, offset=begin)
        # Copy: the bytes buffer is read-only and torch wants native byte order.
        arr = arr.astype(np_dtype.newbyteorder("="), copy=True).reshape(info["shape"])
        t = torch.from_numpy(arr)
        tensors[name] = t.view(torch.bfloat16) if st == "BF16" else t
    return tensors, header.metadata
