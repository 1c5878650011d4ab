#!/usr/bin/python3
r"""Export pytorch-fid's FID Inception network (2048-d pool3 features) as TorchScript.

Usage:
  pip install pytorch-fid      # on a machine with internet; brings torchvision along
  python3 tools/export_inception.py \
      --weights pt_inception-2015-12-05-6726825d.pth --out inception.pt
  iidm score --features inception.pt ...

The weights file is pytorch-fid's own port of TensorFlow's FID Inception, published at
https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/ as the file above.
pytorch-fid normally downloads it when the network is built; this script makes pytorch-fid load
the local file instead (it replaces pytorch_fid.inception.load_state_dict_from_url, and
torch.hub's, for the duration of the build), so nothing is downloaded.

The exported module (traced with an example [1, 3, 299, 299]) maps float32 [N, 3, H, W] RGB in
[0, 1], any H and W, to float32 [N, 2048]: pytorch-fid's InceptionV3 with resize_input=True
(bilinear resize to 299x299) and normalize_input=True (scaling to [-1, 1]), i.e. the features
pytorch-fid's FID uses.  After saving, the file is loaded back and checked: output shape, the
same values as the eager network, and a non-299 input size.

LibTorch reads files written by the same or an older PyTorch; if the C++ side's LibTorch cannot
load the result, export with a PyTorch close to its version.
"""

import argparse
import contextlib
import hashlib
import os
import sys

import torch

WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
               + WEIGHTS_NAME)
WEIGHTS_SHA256_PREFIX = "6726825d"  # the hash part of the published file name
FEATURE_DIM = 2048
EXAMPLE_SIZE = 299


def fail(message):
    raise SystemExit(f"export_inception: error: {message}")


def check_weights_file(path):
    if not os.path.isfile(path):
        fail(f"weights file not found: {path} (download {WEIGHTS_URL})")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(WEIGHTS_SHA256_PREFIX):
        print(f"export_inception: warning: the SHA-256 of {path} starts with "
              f"{digest.hexdigest()[:8]}, not {WEIGHTS_SHA256_PREFIX} like {WEIGHTS_NAME}; "
              "is it pytorch-fid's FID Inception weights file?", file=sys.stderr)


def import_pytorch_fid_inception():
    """pytorch_fid.inception, or a clear error saying how to install it."""
    try:
        import pytorch_fid.inception as fid_inception
    except ModuleNotFoundError as e:
        if e.name == "pytorch_fid":
            fail("the Python package pytorch_fid is not installed: run `pip install pytorch-fid`")
        fail(f"importing pytorch_fid failed: {e} (`pip install pytorch-fid` installs what it "
             "needs)")
    except ImportError as e:
        fail(f"importing pytorch_fid failed: {e}")
    return fid_inception


@contextlib.contextmanager
def weights_from_file(fid_inception, weights_path):
    """While active, pytorch-fid's download function returns the state dict in weights_path.

    pytorch_fid.inception binds load_state_dict_from_url at import time, so that name is the one
    fid_inception_v3() calls; torch.hub's is replaced too in case a version looks it up there.
    Yields the list of URLs that were requested (to prove the replacement was used)."""
    requested = []

    def load_local(url, *args, **kwargs):
        requested.append(url)
        return torch.load(weights_path, map_location="cpu")

    targets = [(torch.hub, "load_state_dict_from_url")]
    if hasattr(fid_inception, "load_state_dict_from_url"):
        targets.append((fid_inception, "load_state_dict_from_url"))
    originals = [(owner, name, getattr(owner, name)) for owner, name in targets]
    for owner, name in targets:
        setattr(owner, name, load_local)
    try:
        yield requested
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


class FidInceptionFeatures(torch.nn.Module):
    """[N, 3, H, W] in [0, 1] -> [N, 2048] pool3 features of pytorch-fid's InceptionV3."""

    def __init__(self, inception):
        super().__init__()
        self.inception = inception

    def forward(self, x):
        # pytorch-fid returns a list with one feature map per requested block: [N, 2048, 1, 1].
        return self.inception(x)[0].flatten(1)


def build_network(fid_inception, weights_path):
    InceptionV3 = fid_inception.InceptionV3
    with weights_from_file(fid_inception, weights_path) as requested:
        inception = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIM]], resize_input=True,
                                normalize_input=True, use_fid_inception=True)
    if not requested:
        fail("pytorch-fid built the network without asking load_state_dict_from_url for its "
             "weights; this pytorch-fid version is not supported by this script")
    return FidInceptionFeatures(inception).eval()


def save_atomic(module, path):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, "." + os.path.basename(path) + ".tmp")
    try:
        torch.jit.save(module, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def export(weights_path, out_path):
    fid_inception = import_pytorch_fid_inception()
    check_weights_file(weights_path)
    model = build_network(fid_inception, weights_path)
    generator = torch.Generator().manual_seed(0)
    example = torch.rand(1, 3, EXAMPLE_SIZE, EXAMPLE_SIZE, generator=generator)
    with torch.no_grad():
        expected = model(example)
        traced = torch.jit.trace(model, example)
    save_atomic(traced, out_path)

    loaded = torch.jit.load(out_path, map_location="cpu")
    with torch.no_grad():
        got = loaded(example)
        other = loaded(torch.rand(2, 3, 192, 256, generator=generator))
    if tuple(got.shape) != (1, FEATURE_DIM) or tuple(other.shape) != (2, FEATURE_DIM):
        fail(f"{out_path}: unexpected output shapes {tuple(got.shape)}, {tuple(other.shape)}")
    if not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
        fail(f"{out_path}: the reloaded module's features differ from pytorch-fid's")
    print(f"wrote {out_path} ({os.path.getsize(out_path) / 2**20:.1f} MiB, torch "
          f"{torch.__version__}): [N,3,H,W] in [0,1] -> [N,{FEATURE_DIM}], checked")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Export pytorch-fid's FID Inception (2048-d pool3 features) as TorchScript.")
    parser.add_argument("--weights", default=WEIGHTS_NAME,
                        help=f"pytorch-fid's FID Inception weights (default: {WEIGHTS_NAME})")
    parser.add_argument("--out", default="inception.pt",
                        help="TorchScript file to write (default: inception.pt)")
    args = parser.parse_args(argv)
    export(args.weights, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
