"""Restricted unpickling: load torch / Jittor pickles without running their code.

Only an allowlist of torch / numpy reconstruction functions is ever called.  Every other class or
function a pickle references becomes an inert ``Stub`` that records how pickle built it, so
checkpoints that mention absent packages (jittor, pytorch_lightning, omegaconf) still load and the
arrays wrapped inside them can be recovered.
"""

from __future__ import annotations

import inspect
import io
import pickle
import types
from collections import OrderedDict
from collections.abc import Mapping
from typing import Dict, Iterable, Optional, Tuple

import numpy as np
import torch


class Stub:
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
    elif isinstance(obj, Stub):
        for child in obj._stub_children():
            yield from _array_leaves(child, depth + 1)
    elif isinstance(obj, Mapping):
        for child in obj.values():
            yield from _array_leaves(child, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for child in obj:
            yield from _array_leaves(child, depth + 1)


def stub_array(stub: Stub):
    """The single array wrapped by a stub (e.g. jittor.Var(ndarray)), or None."""
    leaves = list(_array_leaves(stub))
    return leaves[0] if len(leaves) == 1 else None


_STUB_CLASSES: Dict[Tuple[str, str], type] = {}


def _stub_class(module: str, name: str) -> type:
    key = (module, name)
    if key not in _STUB_CLASSES:
        _STUB_CLASSES[key] = type(name, (Stub,), {"_stub_qualname": f"{module}.{name}"})
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


class SafeUnpickler(pickle.Unpickler):
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
    return SafeUnpickler(file, **kwargs).load()


# torch.load takes a "pickle module"; start from a copy of pickle so that the
# exception types and constants torch may look up are all still there.
_SAFE_PICKLE = types.ModuleType("iidm_safe_pickle")
_SAFE_PICKLE.__dict__.update({k: v for k, v in vars(pickle).items() if not k.startswith("__")})
_SAFE_PICKLE.Unpickler = SafeUnpickler
_SAFE_PICKLE.load = _safe_pickle_load


def torch_load(source):
    """torch.load on the CPU through the restricted unpickler (source: a path or a file object)."""
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
    return torch_load(io.BytesIO(b))


def type_name(obj) -> str:
    """The class name to show in messages; a stub's is the class the pickle asked for."""
    if isinstance(obj, Stub):
        return obj._stub_qualname
    return f"{type(obj).__module__}.{type(obj).__qualname__}".replace("builtins.", "")


def unstub(obj):
    """A stub's recorded mapping (its dict state or items) if it has one, else obj itself."""
    if isinstance(obj, Stub):
        mapping = obj._stub_mapping()
        if mapping is not None:
            return mapping
    return obj
