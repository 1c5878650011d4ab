"""The command line: ``convert_checkpoint.py INPUT [-o OUT | --split DIR | --list] ...``."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from typing import List, Optional, Sequence

from .convert import DTYPE_CHOICES, convert, list_checkpoint
from .errors import ConvertError


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
