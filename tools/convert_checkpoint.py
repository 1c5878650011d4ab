#!/usr/bin/python3
"""Convert SDM / LDM / IIDM checkpoints to safetensors for the iidm C++ toolkit.

Supported inputs
  * official PyTorch ``.pt`` / ``.pth`` files (guided-diffusion / SDM: a plain
    state_dict of tensors),
  * PyTorch-Lightning ``.ckpt`` files (LDM / Stable Diffusion: a dict holding
    ``state_dict``, ``optimizer_states``, ``global_step``, ...),
  * IIDM's Jittor ``.pkl`` files (a pickle of name -> numpy array, optionally
    nested under ``state_dict`` / ``model`` and optionally followed by Jittor's
    sha1 + ``HCAJSLHD`` trailer),
  * ``.safetensors`` files (to re-filter / re-cast them, or to ``--list`` them).

The output is a plain safetensors file written without the ``safetensors``
package (it is not available here), plus a reader for the same format.

Run with /usr/bin/python3 (the Debian interpreter that has torch).
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import io
import json
import os
import pickle
import struct
import sys
import textwrap
import types
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

CONVERTER_NAME = "iidm convert_checkpoint"

# Lightning/LDM bookkeeping that lives inside the state_dict but is not a weight.
TRAINING_ONLY_KEYS = frozenset({"model_ema.decay", "model_ema.num_updates"})
EMA_PREFIX = "model_ema."

# Containers that wrap the actual state dict in the formats we know about.
WRAPPER_KEYS = ("state_dict", "model", "module")

# (output file, key prefix, required) for --split of a full LDM checkpoint.
SPLIT_GROUPS = (
    ("unet.safetensors", "model.diffusion_model.", True),
    ("first_stage.safetensors", "first_stage_model.", True),
    ("cond_stage.safetensors", "cond_stage_model.", False),
)

# Jittor's jt.save appends sha1(payload) + this magic to the pickle.
JITTOR_TRAILER = b"HCAJSLHD"

# A header this large can only come from a corrupt or hostile file; refusing it
# keeps a garbage length field from triggering a multi-GB allocation.
MAX_HEADER_BYTES = 100 * 1024 * 1024


class ConvertError(Exception):
    """A problem with the user's input or options, reported without traceback."""


# --------------------------------------------------------------------------
# safetensors format
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# Restricted unpickling
# --------------------------------------------------------------------------


class _Stub:
    """Stand-in for a class we refuse (or are unable) to import.

    Checkpoints reference classes from packages that are usually absent here
    (jittor's Var, pytorch_lightning callbacks, omegaconf configs).  A stub
    accepts every way pickle can construct or fill an object and just records
    what it was given, so arrays wrapped inside can still be recovered.
    """

    _stub_qualname = "?"

    def __new__(cls, *args, **kwargs):
        self = object.__new__(cls)
        d = self.__dict__
        d["_stub_args"], d["_stub_kwargs"], d["_stub_state"] = args, kwargs, None
        d["_stub_items"], d["_stub_list"] = OrderedDict(), []
        return self

    def __init__(self, *args, **kwargs):  # REDUCE calls cls(*args); __new__ kept them
        pass

    def __setstate__(self, state):
        self.__dict__["_stub_state"] = state

    def __setitem__(self, key, value):
        self._stub_items[key] = value

    def append(self, value):
        self._stub_list.append(value)

    def extend(self, values):
        self._stub_list.extend(values)

    def __repr__(self):
        return f"<object of unimportable class {self._stub_qualname}>"

    def _stub_mapping(self) -> Optional[Mapping]:
        if self._stub_items:
            return self._stub_items
        state = self._stub_state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], Mapping):
            state = state[0]  # (dict_state, slots_state) form
        return state if isinstance(state, Mapping) else None

    def _stub_children(self) -> Iterable:
        yield from self._stub_args
        yield from self._stub_kwargs.values()
        yield self._stub_state
        yield from self._stub_items.values()
        yield from self._stub_list


def _array_leaves(obj, depth: int = 0) -> Iterable:
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        yield obj
    elif depth >= 4 or obj is None:
        return
    elif isinstance(obj, _Stub):
        for child in obj._stub_children():
            yield from _array_leaves(child, depth + 1)
    elif isinstance(obj, Mapping):
        for child in obj.values():
            yield from _array_leaves(child, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for child in obj:
            yield from _array_leaves(child, depth + 1)


def _stub_array(stub: _Stub):
    """The single array wrapped by a stub (e.g. jittor.Var(ndarray)), or None."""
    leaves = list(_array_leaves(stub))
    return leaves[0] if len(leaves) == 1 else None


_STUB_CLASSES: Dict[Tuple[str, str], type] = {}


def _stub_class(module: str, name: str) -> type:
    key = (module, name)
    if key not in _STUB_CLASSES:
        _STUB_CLASSES[key] = type(name, (_Stub,), {"_stub_qualname": f"{module}.{name}"})
    return _STUB_CLASSES[key]


# Globals a weights file legitimately needs.  Everything else becomes a stub,
# which both tolerates missing packages and means loading a checkpoint cannot
# run arbitrary code through pickle's REDUCE opcode.
_ALLOWED_GLOBALS = frozenset(
    {
        "collections.OrderedDict",
        "builtins.set", "builtins.frozenset", "builtins.slice", "builtins.complex",
        "builtins.bytearray", "builtins.bytes", "builtins.list", "builtins.dict",
        "builtins.tuple", "builtins.int", "builtins.float", "builtins.str",
        "builtins.bool", "builtins.object", "builtins.range",
        "_codecs.encode",  # protocol-2 pickles encode bytes (e.g. array data) this way
        "copyreg._reconstructor", "copyreg.__newobj__",
        "torch.Size", "torch.device", "torch.Tensor",
        "torch.nn.parameter.Parameter",
        "torch.serialization._get_layout",
        "torch._tensor._rebuild_from_type", "torch._tensor._rebuild_from_type_v2",
        "numpy.ndarray", "numpy.dtype",
        "numpy.core.multiarray._reconstruct", "numpy.core.multiarray.scalar",
        "numpy.core.numeric._frombuffer",
    }
)


def _is_allowed_global(module: str, name: str) -> bool:
    if f"{module}.{name}" in _ALLOWED_GLOBALS:
        return True
    if module == "torch._utils" and name.startswith("_rebuild_"):
        return True
    if module == "numpy.dtypes" and name.endswith("DType"):
        return True
    if module == "torch":
        obj = getattr(torch, name, None)
        return isinstance(obj, torch.dtype) or (isinstance(obj, type) and name.endswith("Storage"))
    return False


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        # numpy >= 2 writes numpy._core.*, which numpy 1.x calls numpy.core.*.
        if module.startswith("numpy._core"):
            module = "numpy.core" + module[len("numpy._core"):]
        if module == "torch.storage" and name == "_load_from_bytes":
            return _load_storage_from_bytes  # the stock one calls unrestricted torch.load
        if _is_allowed_global(module, name):
            try:
                return super().find_class(module, name)
            except (ImportError, AttributeError):
                pass
        return _stub_class(module, name)


def _safe_pickle_load(file, **kwargs):
    return _SafeUnpickler(file, **kwargs).load()


# torch.load takes a "pickle module"; start from a copy of pickle so that the
# exception types and constants torch may look up are all still there.
_SAFE_PICKLE = types.ModuleType("iidm_safe_pickle")
_SAFE_PICKLE.__dict__.update({k: v for k, v in vars(pickle).items() if not k.startswith("__")})
_SAFE_PICKLE.Unpickler = _SafeUnpickler
_SAFE_PICKLE.load = _safe_pickle_load


def _torch_load(source):
    kwargs = {"map_location": "cpu", "pickle_module": _SAFE_PICKLE}
    # Our pickle module already restricts globals; torch's own weights_only
    # unpickler would reject Lightning checkpoints (callbacks, hparams) and
    # numpy arrays, so explicitly ask for the custom module to be used.
    if "weights_only" in inspect.signature(torch.load).parameters:
        kwargs["weights_only"] = False
    # torch 1.13 silently replaces pickle_module with the stock pickle module
    # whenever weights_only is False, which would both crash on missing
    # packages (pytorch_lightning, jittor) and allow code execution.  Swapping
    # the module torch.serialization falls back to covers that version and is
    # harmless where the argument is honoured.  Not thread-safe, which is fine
    # for this single-threaded tool.
    serialization = torch.serialization
    saved = getattr(serialization, "pickle", None)
    if saved is None:
        return torch.load(source, **kwargs)
    serialization.pickle = _SAFE_PICKLE
    try:
        return torch.load(source, **kwargs)
    finally:
        serialization.pickle = saved


def _load_storage_from_bytes(b):
    return _torch_load(io.BytesIO(b))


# --------------------------------------------------------------------------
# Loading checkpoints
# --------------------------------------------------------------------------


@dataclass
class Checkpoint:
    path: str
    fmt: str  # "torch", "pickle" or "safetensors"
    state: "OrderedDict[str, torch.Tensor]"
    location: str = ""  # where the state dict was found, e.g. "['state_dict']"
    ignored: List[str] = field(default_factory=list)  # unused top-level entries
    global_step: Optional[int] = None
    metadata: Dict[str, str] = field(default_factory=dict)


def _type_name(obj) -> str:
    if isinstance(obj, _Stub):
        return obj._stub_qualname
    return f"{type(obj).__module__}.{type(obj).__qualname__}".replace("builtins.", "")


def _is_tensor_like(value) -> bool:
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        return True
    return isinstance(value, _Stub) and _stub_array(value) is not None


def _to_tensor(key: str, value, path: str) -> torch.Tensor:
    if isinstance(value, _Stub):
        array = _stub_array(value)
        if array is None:
            raise ConvertError(
                f"{path}: value of '{key}' is an object of class {value._stub_qualname} "
                "that does not wrap exactly one array"
            )
        value = array
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided or value.is_quantized:
            raise ConvertError(f"{path}: tensor '{key}' is sparse or quantized, which is not supported")
        return value.detach()
    if isinstance(value, np.generic):
        value = np.asarray(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc" or value.dtype.kind == "u" and value.dtype.itemsize > 1:
            raise ConvertError(f"{path}: array '{key}' has dtype {value.dtype}, which torch cannot hold")
        # torch needs native byte order and a writable buffer; np.require
        # copies only when the array does not already satisfy both.
        value = np.require(value, dtype=value.dtype.newbyteorder("="), requirements=["C", "W"])
        return torch.from_numpy(value)
    raise ConvertError(
        f"{path}: non-tensor value in state dict: '{key}' is {_type_name(value)}, expected a tensor or array"
    )


def _unstub(obj):
    if isinstance(obj, _Stub):
        mapping = obj._stub_mapping()
        if mapping is not None:
            return mapping
    return obj


def _find_state_dict(obj, path: str) -> Tuple[Mapping, str, List[str], Optional[int]]:
    """Locate the name -> tensor mapping inside a loaded checkpoint object."""
    obj = _unstub(obj)
    if isinstance(obj, torch.jit.ScriptModule):
        return obj.state_dict(), ".state_dict()", [], None
    location, ignored, step = "", [], None
    for _ in range(3):
        if not isinstance(obj, Mapping):
            raise ConvertError(f"{path}: expected a dict of tensors{' at ' + location if location else ''}, found {_type_name(obj)}")
        if isinstance(obj.get("global_step"), (int, np.integer)) and step is None:
            step = int(obj["global_step"])
        if all(_is_tensor_like(v) or k in TRAINING_ONLY_KEYS for k, v in obj.items()):
            break
        inner = next((k for k in WRAPPER_KEYS if isinstance(_unstub(obj.get(k)), Mapping)), None)
        if inner is None:
            break
        ignored += [f"{location}[{k!r}]" if location else str(k) for k in obj if k != inner]
        location += f"[{inner!r}]"
        obj = _unstub(obj[inner])
    if not isinstance(obj, Mapping):
        raise ConvertError(f"{path}: expected a dict of tensors at {location}, found {_type_name(obj)}")
    if not any(_is_tensor_like(v) for v in obj.values()):
        keys = ", ".join(f"{k}: {_type_name(v)}" for k, v in list(obj.items())[:8]) or "none"
        raise ConvertError(f"{path}: no tensors found{' in ' + location if location else ''} (keys: {keys})")
    return obj, location, ignored, step


def _read_pickle_bytes(path: str, data: bytes):
    if data.endswith(JITTOR_TRAILER) and len(data) >= 28:
        payload, checksum = data[:-28], data[-28:-8]
        if hashlib.sha1(payload).digest() != checksum:
            raise ConvertError(f"{path}: Jittor checksum mismatch; the file is truncated or corrupted")
        data = payload
    # latin1 lets pickles written by Python 2 numpy load (their str payloads
    # are raw bytes); it is a no-op for Python 3 pickles.
    return _SafeUnpickler(io.BytesIO(data), encoding="latin1").load()


def load_checkpoint(path: str) -> Checkpoint:
    """Load any supported checkpoint into a Checkpoint with CPU tensors."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            size = os.fstat(f.fileno()).st_size
    except OSError as e:
        raise ConvertError(f"{path}: cannot read file ({e.strerror or e})") from None
    if not head:
        raise ConvertError(f"{path}: file is empty")

    ext = os.path.splitext(path)[1].lower()
    looks_safetensors = len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] <= size - 8
    if ext == ".safetensors" or (looks_safetensors and ext not in (".pt", ".pth", ".ckpt", ".pkl", ".bin")):
        tensors, metadata = read_safetensors(path)
        if not tensors:
            raise ConvertError(f"{path}: no tensors found")
        return Checkpoint(path, "safetensors", tensors, metadata=metadata)

    def load_pickle():
        with open(path, "rb") as f:
            return _read_pickle_bytes(path, f.read())

    # A zip can only be torch's format.  Otherwise the extension decides which
    # reader is tried first; the other one is the fallback because jittor and
    # torch files are both pickles underneath and extensions are unreliable.
    # torch.load gets the path rather than bytes so that multi-GB Lightning
    # checkpoints are not held in memory twice.
    loaders: List[Tuple[str, Callable[[], object]]] = [("torch", lambda: _torch_load(path)), ("pickle", load_pickle)]
    if head[:4] == b"PK\x03\x04":
        loaders = loaders[:1]
    elif ext in (".pkl", ".pickle"):
        loaders.reverse()
    failures = []
    for fmt, loader in loaders:
        try:
            obj = loader()
            break
        except ConvertError:
            raise
        except Exception as e:  # any reader failure just means "not this format"
            msg = str(e).splitlines()[0] if str(e) else ""
            failures.append(f"as {fmt}: {type(e).__name__}" + (f": {msg}" if msg else ""))
    else:
        raise ConvertError(
            f"{path}: cannot read checkpoint; it is not a readable PyTorch, Lightning, Jittor or "
            f"safetensors file (possibly truncated or corrupt) [{'; '.join(failures)}]"
        )

    raw, location, ignored, step = _find_state_dict(obj, path)
    state: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for key, value in raw.items():
        if not isinstance(key, str):
            raise ConvertError(f"{path}: state dict key {key!r} is not a string")
        if key in TRAINING_ONLY_KEYS and not _is_tensor_like(value):
            continue  # bookkeeping scalars; dropped later anyway
        state[key] = _to_tensor(key, value, path)
    return Checkpoint(path, fmt, state, location, ignored, step)


# --------------------------------------------------------------------------
# Selecting and converting weights
# --------------------------------------------------------------------------


def _is_loss_key(key: str) -> bool:
    # Autoencoder training carries its discriminator / LPIPS net under loss.*;
    # inference never needs them.
    return key.startswith("loss.") or key.startswith("first_stage_model.loss.")


_AMBIGUOUS = object()


def _squash_index(keys: Iterable[str], transform: Callable[[str], Optional[str]]) -> Dict[str, object]:
    index: Dict[str, object] = {}
    for key in keys:
        squashed = transform(key)
        if squashed is not None:
            index[squashed] = _AMBIGUOUS if index.get(squashed, key) != key else key
    return index


def map_ema_keys(state: Mapping[str, torch.Tensor], path: str) -> Dict[str, str]:
    """Map each EMA entry to the state-dict key it is a copy of.

    LDM's LitEma registers its shadow weights as buffers named after the
    parameter with the dots removed (buffer names may not contain dots), e.g.
    'model.diffusion_model.input_blocks.0.0.weight' is shadowed by
    'model_ema.diffusion_modelinput_blocks00weight'.  Autoencoders with EMA
    shadow their own top-level keys the same way.  Dotted names are accepted
    too, for checkpoints written by other EMA helpers.
    """
    ema_keys = [k for k in state if k.startswith(EMA_PREFIX) and k not in TRAINING_ONLY_KEYS]
    plain = [k for k in state if not k.startswith(EMA_PREFIX)]
    exact = set(plain)
    ldm = _squash_index(plain, lambda k: k[len("model."):].replace(".", "") if k.startswith("model.") else None)
    whole = _squash_index(plain, lambda k: k.replace(".", ""))
    mapping: Dict[str, str] = {}
    unmatched = []
    for ema_key in ema_keys:
        suffix = ema_key[len(EMA_PREFIX):]
        if "model." + suffix in exact:
            target = "model." + suffix
        elif suffix in exact:
            target = suffix
        else:
            target = ldm.get(suffix) or whole.get(suffix)
        if target is _AMBIGUOUS:
            raise ConvertError(f"{path}: EMA entry '{ema_key}' matches several weights once dots are removed")
        if target is None:
            unmatched.append(ema_key)
            continue
        if target in mapping.values():
            raise ConvertError(f"{path}: duplicate key '{target}': more than one EMA entry maps to it")
        if state[target].shape != state[ema_key].shape:
            raise ConvertError(
                f"{path}: EMA entry '{ema_key}' has shape {list(state[ema_key].shape)} "
                f"but '{target}' has {list(state[target].shape)}"
            )
        mapping[ema_key] = target
    if unmatched:
        more = f" (and {len(unmatched) - 5} more)" if len(unmatched) > 5 else ""
        raise ConvertError(
            f"{path}: {len(unmatched)} EMA entries match no model weight, e.g. {', '.join(unmatched[:5])}{more}"
        )
    return mapping


def select_weights(
    ckpt: Checkpoint, ema: bool, keep_loss: bool, notes: List[str]
) -> Tuple["OrderedDict[str, torch.Tensor]", List[str]]:
    """Apply --ema and drop training-only entries; return (state, dropped keys)."""
    state, path = ckpt.state, ckpt.path
    has_ema = any(k.startswith(EMA_PREFIX) and k not in TRAINING_ONLY_KEYS for k in state)
    replacement: Dict[str, torch.Tensor] = {}
    if ema:
        if not has_ema:
            raise ConvertError(
                f"{path}: --ema given but the checkpoint has no EMA weights (no '{EMA_PREFIX}*' entries); "
                "guided-diffusion/SDM ship EMA weights as separate ema_*.pt files"
            )
        mapping = map_ema_keys(state, path)
        replacement = {target: state[ema_key] for ema_key, target in mapping.items()}
        notes.append(f"took {len(replacement)} tensors from the EMA copy")
    elif has_ema:
        notes.append("EMA weights present but not used (pass --ema to take them)")

    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    dropped = []
    for key, value in state.items():
        if key.startswith(EMA_PREFIX) or key in TRAINING_ONLY_KEYS or (not keep_loss and _is_loss_key(key)):
            dropped.append(key)
        else:
            out[key] = replacement.get(key, value)
    n_loss = sum(1 for k in dropped if _is_loss_key(k))
    if n_loss and not keep_loss:
        notes.append(f"dropped {n_loss} loss.* tensors (pass --keep-loss to keep them)")
    return out, dropped


def _prefix_groups(keys: Iterable[str]) -> str:
    counts: "OrderedDict[str, int]" = OrderedDict()
    for key in keys:
        parts = key.split(".")
        depth = 2 if parts[0] == "model" and len(parts) > 2 else 1
        group = ".".join(parts[:depth]) + "." if len(parts) > depth else "(top level)"
        counts[group] = counts.get(group, 0) + 1
    return ", ".join(f"{g} ({n})" for g, n in list(counts.items())[:10])


def apply_prefix(
    state: Mapping[str, torch.Tensor], prefix: str, path: str, dropped: Sequence[str] = ()
) -> "OrderedDict[str, torch.Tensor]":
    """Keep keys starting with prefix and strip it (plus a separating dot)."""
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    origin: Dict[str, str] = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if not prefix.endswith(".") and name.startswith("."):
            name = name[1:]
        if not name:
            raise ConvertError(f"{path}: key '{key}' is empty after stripping prefix '{prefix}'")
        if name in out:
            raise ConvertError(
                f"{path}: duplicate key '{name}' after stripping prefix '{prefix}' (from '{origin[name]}' and '{key}')"
            )
        out[name], origin[name] = value, key
    if not out:
        hint = f"; available: {_prefix_groups(state)}" if state else ""
        n_dropped = sum(1 for k in dropped if k.startswith(prefix))
        if n_dropped:
            hint += f"; {n_dropped} matching entries were dropped as EMA/training-only (see --ema, --keep-loss)"
        raise ConvertError(f"{path}: prefix '{prefix}' matched nothing{hint}")
    return out


DTYPE_CHOICES = {"keep": None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def convert_dtype(
    state: Mapping[str, torch.Tensor], mode: str, path: str, notes: List[str]
) -> "OrderedDict[str, torch.Tensor]":
    """Cast floating tensors to the requested dtype; integers stay unchanged."""
    target = DTYPE_CHOICES[mode]
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    overflowed = []
    for key, t in state.items():
        if t.dtype not in TORCH_TO_ST:
            raise ConvertError(f"{path}: tensor '{key}' has dtype {t.dtype}, which safetensors output does not support")
        if target is not None and t.is_floating_point() and t.dtype != target:
            new = t.to(target)
            # Narrowing (e.g. fp32 -> fp16) silently turns large values into inf.
            if new.element_size() < t.element_size() and not torch.isfinite(new).all() and torch.isfinite(t).all():
                overflowed.append(key)
            t = new
        out[key] = t
    if overflowed:
        notes.append(f"warning: {len(overflowed)} tensors overflowed to inf in {mode}, e.g. '{overflowed[0]}'")
    return out


@dataclass
class Written:
    path: str
    tensors: int
    parameters: int
    nbytes: int


def convert(
    input_path: str,
    output: Optional[str] = None,
    split_dir: Optional[str] = None,
    prefix: Optional[str] = None,
    ema: bool = False,
    keep_loss: bool = False,
    dtype: str = "fp32",
    notes: Optional[List[str]] = None,
) -> List[Written]:
    """Run the whole conversion; return what was written.  Raises ConvertError."""
    notes = [] if notes is None else notes
    if (output is None) == (split_dir is None):
        raise ConvertError("give exactly one of an output file or a split directory")
    if split_dir is not None and prefix is not None:
        raise ConvertError("--prefix cannot be combined with --split (split uses fixed prefixes)")
    if output is not None and os.path.exists(output) and os.path.exists(input_path) and os.path.samefile(output, input_path):
        raise ConvertError(f"{output}: output would overwrite the input")

    out_dir = os.path.dirname(os.path.abspath(output)) if output is not None else None
    if out_dir is not None and not os.path.isdir(out_dir):
        raise ConvertError(f"{output}: output directory {out_dir} does not exist")

    ckpt = load_checkpoint(input_path)
    state, dropped = select_weights(ckpt, ema, keep_loss, notes)

    if split_dir is not None:
        groups = []
        claimed = set()
        for filename, group_prefix, required in SPLIT_GROUPS:
            if not any(k.startswith(group_prefix) for k in state):
                if required:
                    raise ConvertError(
                        f"{input_path}: --split expects a full LDM checkpoint but found no "
                        f"'{group_prefix}*' tensors; available: {_prefix_groups(state) or 'none'}"
                    )
                continue
            part = apply_prefix(state, group_prefix, input_path)
            claimed.update(k for k in state if k.startswith(group_prefix))
            groups.append((os.path.join(split_dir, filename), part))
        rest = [k for k in state if k not in claimed]
        if rest:
            notes.append(f"ignored {len(rest)} tensors outside the split groups, e.g. {', '.join(rest[:3])}")
        os.makedirs(split_dir, exist_ok=True)
    else:
        if prefix is not None:
            state = apply_prefix(state, prefix, input_path, dropped)
        elif not state:
            raise ConvertError(f"{input_path}: no tensors left after dropping EMA/training-only entries")
        groups = [(output, state)]

    metadata = {"format": "pt", "source": os.path.basename(input_path), "converter": CONVERTER_NAME}
    jobs = [(path, convert_dtype(part, dtype, input_path, notes), metadata) for path, part in groups]
    sizes = write_safetensors_many(jobs)
    return [
        Written(path, len(part), sum(t.numel() for t in part.values()), size)
        for (path, part, _), size in zip(jobs, sizes)
    ]


# --------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------


def list_checkpoint(path: str, prefix: Optional[str] = None, out=None) -> int:
    """Print name, dtype and shape of every tensor; return how many were shown."""
    out = sys.stdout if out is None else out  # resolved late so redirection works
    rows: List[Tuple[str, str, List[int]]] = []
    extra = []
    if os.path.splitext(path)[1].lower() == ".safetensors":
        header = read_safetensors_header(path)  # header only: no need to load GBs
        rows = [(n, i["dtype"], i["shape"]) for n, i in header.entries.items()]
        if header.metadata:
            extra.append("metadata: " + json.dumps(header.metadata, sort_keys=True))
    else:
        ckpt = load_checkpoint(path)
        rows = [(n, TORCH_TO_ST.get(t.dtype, str(t.dtype)), list(t.shape)) for n, t in ckpt.state.items()]
        extra.append(f"format: {ckpt.fmt}" + (f", state dict at {ckpt.location}" if ckpt.location else ""))
        if ckpt.global_step is not None:
            extra.append(f"global_step: {ckpt.global_step}")
        if ckpt.ignored:
            extra.append("ignored entries: " + ", ".join(ckpt.ignored))
    if prefix is not None:
        rows = [r for r in rows if r[0].startswith(prefix)]
    width = min(max((len(r[0]) for r in rows), default=0), 90)
    for name, dt, shape in rows:
        print(f"{name:<{width}}  {dt:<5} {shape}", file=out)
    params = sum(int(np.prod(shape, dtype=np.int64)) for _, _, shape in rows)
    for line in extra:
        print(f"# {line}", file=out)
    print(f"# {len(rows)} tensors, {params:,} parameters", file=out)
    return len(rows)


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    def fill(text: str) -> str:
        return textwrap.fill(" ".join(text.split()), width=79)

    description = fill(
        """Convert SDM / LDM / IIDM checkpoints (PyTorch .pt/.pth, PyTorch-Lightning .ckpt,
        Jittor .pkl, or .safetensors) into safetensors files for the iidm C++ toolkit.
        Loading calls only an allowlist of torch/numpy reconstruction functions; every
        other class or function a pickle references becomes an inert placeholder, so
        jittor / pytorch_lightning need not be installed and pickled code is not run."""
    )
    epilog = "\n\n".join(
        [
            "examples:\n"
            "  %(prog)s sdm_ade20k.pt -o sdm.safetensors\n"
            "  %(prog)s ldm.ckpt --ema --prefix model.diffusion_model. -o unet.safetensors\n"
            "  %(prog)s ldm.ckpt --ema --split weights/ --dtype fp16\n"
            "  %(prog)s iidm.pkl -o iidm.safetensors\n"
            "  %(prog)s unet.safetensors --list",
            fill(
                """Always dropped: model_ema.decay and model_ema.num_updates; model_ema.* unless
                --ema; loss.* and first_stage_model.loss.* unless --keep-loss. Lightning
                extras such as optimizer_states, lr_schedulers and callbacks never reach the
                output. Output metadata: format=pt, source=<input file name>,
                converter=iidm convert_checkpoint."""
            ),
            "exit status: 0 on success, 1 on a conversion error, 2 on a usage error.",
        ]
    )
    parser = argparse.ArgumentParser(
        prog="convert_checkpoint.py",
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", help="checkpoint to read (.pt, .pth, .ckpt, .pkl or .safetensors)")
    parser.add_argument(
        "-o", "--output", metavar="OUT",
        help="safetensors file to write (default: INPUT with a .safetensors extension); written "
        "to OUT.tmp first and renamed, so a failure never leaves a partial file",
    )
    parser.add_argument(
        "--split", metavar="OUTDIR",
        help="split a full LDM checkpoint into OUTDIR/unet.safetensors (model.diffusion_model.*), "
        "OUTDIR/first_stage.safetensors (first_stage_model.*) and, if present, "
        "OUTDIR/cond_stage.safetensors (cond_stage_model.*), each with its prefix stripped",
    )
    parser.add_argument(
        "--prefix", metavar="P",
        help="keep only tensors whose name starts with P and strip P from their names, e.g. "
        "'model.diffusion_model.' or 'first_stage_model.' (with --list: only filter)",
    )
    parser.add_argument(
        "--ema", action="store_true",
        help="use the EMA copy (model_ema.*) in place of the raw weights it shadows; an error "
        "if the checkpoint has no EMA weights",
    )
    parser.add_argument(
        "--keep-loss", action="store_true",
        help="keep autoencoder training losses (loss.*: discriminator, LPIPS), dropped by default",
    )
    parser.add_argument(
        "--dtype", choices=list(DTYPE_CHOICES), default="fp32",
        help="floating-point type of the output: keep the stored types, or cast every floating "
        "tensor to fp32 (default), fp16 or bf16; integer tensors are never changed",
    )
    parser.add_argument(
        "--list", action="store_true",
        help="print name, dtype and shape of every tensor in INPUT (any supported format) and exit",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the summary, errors and warnings")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list and (args.output or args.split):
        parser.error("--list cannot be combined with --output or --split")
    if args.output and args.split:
        parser.error("--output and --split are mutually exclusive")
    if args.split and args.prefix is not None:
        parser.error("--prefix cannot be combined with --split")
    if args.prefix == "":
        parser.error("--prefix must not be empty")

    try:
        if args.list:
            list_checkpoint(args.input, args.prefix)
            return 0
        output = args.output
        if output is None and args.split is None:
            output = os.path.splitext(args.input)[0] + ".safetensors"
        notes: List[str] = []
        written = convert(
            args.input, output=output, split_dir=args.split, prefix=args.prefix,
            ema=args.ema, keep_loss=args.keep_loss, dtype=args.dtype, notes=notes,
        )
    except ConvertError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    for note in notes:
        if note.startswith("warning:"):
            print(note, file=sys.stderr)
        elif not args.quiet:
            print(f"note: {note}", file=sys.stderr)
    for w in written:
        print(f"wrote {w.path}: {w.tensors} tensors, {w.parameters:,} parameters, {w.nbytes:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
