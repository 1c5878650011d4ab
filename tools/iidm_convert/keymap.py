"""Which tensors of a checkpoint become output, under which names: the EMA copy in place of the
weights it shadows (--ema), training-only entries dropped, prefixes kept and stripped (--prefix,
--split)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from .checkpoint import TRAINING_ONLY_KEYS, Checkpoint
from .errors import ConvertError

EMA_PREFIX = "model_ema."

# (output file, key prefix, required) for --split of a full LDM checkpoint.
SPLIT_GROUPS = (
    ("unet.safetensors", "model.diffusion_model.", True),
    ("first_stage.safetensors", "first_stage_model.", True),
    ("cond_stage.safetensors", "cond_stage_model.", False),
)


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


def prefix_groups(keys: Iterable[str]) -> str:
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
        hint = f"; available: {prefix_groups(state)}" if state else ""
        n_dropped = sum(1 for k in dropped if k.startswith(prefix))
        if n_dropped:
            hint += f"; {n_dropped} matching entries were dropped as EMA/training-only (see --ema, --keep-loss)"
        raise ConvertError(f"{path}: prefix '{prefix}' matched nothing{hint}")
    return out
