"""Loading any supported checkpoint (torch zip or legacy, Lightning, Jittor pickle, safetensors)
into a flat name -> CPU tensor mapping, wherever the state dict sits inside the file."""

from __future__ import annotations

import hashlib
import io
import os
import struct
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from .errors import ConvertError
from .safetensors_io import read_safetensors
from .unpickle import SafeUnpickler, Stub, stub_array, torch_load, type_name, unstub

# Lightning/LDM bookkeeping that lives inside the state_dict but is not a weight.
TRAINING_ONLY_KEYS = frozenset({"model_ema.decay", "model_ema.num_updates"})

# Containers that wrap the actual state dict in the formats we know about.
WRAPPER_KEYS = ("state_dict", "model", "module")

# Jittor's jt.save appends sha1(payload) + this magic to the pickle.
JITTOR_TRAILER = b"HCAJSLHD"


@dataclass
class Checkpoint:
    path: str
    fmt: str  # "torch", "pickle" or "safetensors"
    state: "OrderedDict[str, torch.Tensor]"
    location: str = ""  # where the state dict was found, e.g. "['state_dict']"
    ignored: List[str] = field(default_factory=list)  # unused top-level entries
    global_step: Optional[int] = None
    metadata: Dict[str, str] = field(default_factory=dict)


def _is_tensor_like(value) -> bool:
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        return True
    return isinstance(value, Stub) and stub_array(value) is not None


def _to_tensor(key: str, value, path: str) -> torch.Tensor:
    if isinstance(value, Stub):
        array = stub_array(value)
        if array is None:
            raise ConvertError(
                f"{path}: value of '{key}' is an object of class {type_name(value)} "
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
        f"{path}: non-tensor value in state dict: '{key}' is {type_name(value)}, expected a tensor or array"
    )


def _find_state_dict(obj, path: str) -> Tuple[Mapping, str, List[str], Optional[int]]:
    """Locate the name -> tensor mapping inside a loaded checkpoint object."""
    obj = unstub(obj)
    if isinstance(obj, torch.jit.ScriptModule):
        return obj.state_dict(), ".state_dict()", [], None
    location, ignored, step = "", [], None
    for _ in range(3):
        if not isinstance(obj, Mapping):
            raise ConvertError(f"{path}: expected a dict of tensors{' at ' + location if location else ''}, found {type_name(obj)}")
        if isinstance(obj.get("global_step"), (int, np.integer)) and step is None:
            step = int(obj["global_step"])
        if all(_is_tensor_like(v) or k in TRAINING_ONLY_KEYS for k, v in obj.items()):
            break
        inner = next((k for k in WRAPPER_KEYS if isinstance(unstub(obj.get(k)), Mapping)), None)
        if inner is None:
            break
        ignored += [f"{location}[{k!r}]" if location else str(k) for k in obj if k != inner]
        location += f"[{inner!r}]"
        obj = unstub(obj[inner])
    if not isinstance(obj, Mapping):
        raise ConvertError(f"{path}: expected a dict of tensors at {location}, found {type_name(obj)}")
    if not any(_is_tensor_like(v) for v in obj.values()):
        keys = ", ".join(f"{k}: {type_name(v)}" for k, v in list(obj.items())[:8]) or "none"
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
    return SafeUnpickler(io.BytesIO(data), encoding="latin1").load()


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
    loaders: List[Tuple[str, Callable[[], object]]] = [("torch", lambda: torch_load(path)), ("pickle", load_pickle)]
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
