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

Modules, each using only the ones before it:
  errors          ConvertError
  safetensors_io  the safetensors writer (atomic) and validating reader
  unpickle        the restricted unpickler (allowlisted globals, inert stubs)
  checkpoint      loading any supported file into a flat name -> tensor mapping
  keymap          --ema key mapping, training-only entries, --prefix / --split
  convert         the conversion and --list
  cli             the command line (``python3 -m iidm_convert`` or tools/convert_checkpoint.py)

Run with /usr/bin/python3 (the Debian interpreter that has torch).
"""

from .checkpoint import Checkpoint, load_checkpoint
from .cli import build_parser, main
from .convert import Written, convert, convert_dtype, list_checkpoint
from .errors import ConvertError
from .keymap import apply_prefix, map_ema_keys, select_weights
from .safetensors_io import read_safetensors, read_safetensors_header, write_safetensors, write_safetensors_many

__all__ = [
    "Checkpoint", "ConvertError", "Written", "apply_prefix", "build_parser", "convert", "convert_dtype",
    "list_checkpoint", "load_checkpoint", "main", "map_ema_keys", "read_safetensors", "read_safetensors_header",
    "select_weights", "write_safetensors", "write_safetensors_many",
]
