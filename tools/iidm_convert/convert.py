"""The conversion itself (load, select, cast, write all-or-nothing) and the --list listing."""

from __future__ import annotations

import json
import os
import sys
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .errors import ConvertError
from .keymap import SPLIT_GROUPS, apply_prefix, prefix_groups, select_weights
from .safetensors_io import TORCH_TO_ST, read_safetensors_header, write_safetensors_many

CONVERTER_NAME = "iidm convert_checkpoint"

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
                        f"'{group_prefix}*' tensors; available: {prefix_groups(state) or 'none'}"
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
