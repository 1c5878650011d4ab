#!/usr/bin/python3
"""Write three tiny, deterministic TorchScript modules that the C++ tests load.

Usage: /usr/bin/python3 tools/make_torchscript_fixtures.py OUT_DIR [--check]

Both modules are pure functions of their input (no weights, no randomness), so the expected
outputs can be worked out by hand:

  segmenter.pt  input  float32 [N, 3, H, W], RGB in [0, 1]
                output float32 [N, 3, H/2, W/2] logits: 10 * avg_pool2d(x, 2), i.e. each channel
                       averaged over 2x2 blocks (H and W rounded down when odd).
                Class rule: argmax over the logits is class 0 where red is the largest channel,
                1 where green is and 2 where blue is (ties go to the lower index).  The output is
                half the input size on purpose: the C++ side must upsample the logits to the
                label size.  Regions that are uniform over aligned 2x2 blocks (e.g. blocks of
                even size at even coordinates) give exact, unambiguous classes.

  features.pt   input  float32 [N, 3, S, S] in [0, 1], any S
                output float32 [N, 6]: the per-channel mean over the pixels (R, G, B), then the
                       per-channel population standard deviation (divide by S*S, not S*S - 1).
                E.g. an image that is half 0 and half 1 in every channel gives
                [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]; a constant image c gives [c, c, c, 0, 0, 0].

  distance.pt   input  two float32 [N, 3, H, W] images in [-1, 1] (LPIPS' convention)
                output float32 [N, 1, 1, 1]: the mean absolute difference of each pair, shaped as
                       LPIPS returns its distances (a stand-in with LPIPS' interface, not LPIPS).

With --check the script loads both files back and runs them on a random input, asserting the
output shapes (and the values against the rules above).  Run with /usr/bin/python3 (torch).
"""

import argparse
import os
import sys

import torch
import torch.nn.functional as F

MAX_BYTES = 50 * 1024


class ChannelArgmaxSegmenter(torch.nn.Module):
    """Logits = 10 * avg_pool2d(x, 2): the dominant colour channel of each 2x2 block wins
    (class 0 = red, 1 = green, 2 = blue), at half the input resolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Class rule: argmax(logits, dim=1) is the index of the largest of R, G, B after 2x2
        # averaging; the scale of 10 only makes the logits confident.
        return 10.0 * F.avg_pool2d(x, kernel_size=2, stride=2)


class ChannelStatsFeatures(torch.nn.Module):
    """Features = per-channel mean, then per-channel population std, over all pixels: [N, 6]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=[2, 3])
        centred = x - mean[:, :, None, None]
        std = torch.sqrt((centred * centred).mean(dim=[2, 3]))  # population std (divide by S*S)
        return torch.cat([mean, std], dim=1)


class MeanAbsoluteDistance(torch.nn.Module):
    """distance(x, y) = mean |x - y| per pair, as [N, 1, 1, 1] like LPIPS."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x - y).abs().mean(dim=[1, 2, 3]).reshape(-1, 1, 1, 1)


FIXTURES = {
    "segmenter.pt": ChannelArgmaxSegmenter,
    "features.pt": ChannelStatsFeatures,
    "distance.pt": MeanAbsoluteDistance,
}


def save_atomic(module, path):
    """torch.jit.save into a temporary file next to `path`, then rename it into place."""
    tmp = path + ".tmp"
    try:
        torch.jit.save(module, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_fixtures(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for name, cls in FIXTURES.items():
        path = os.path.join(out_dir, name)
        save_atomic(torch.jit.script(cls().eval()), path)
        size = os.path.getsize(path)
        if size > MAX_BYTES:
            raise SystemExit(f"make_torchscript_fixtures: error: {path} is {size} bytes, "
                             f"over the {MAX_BYTES}-byte budget")
        print(f"wrote {path} ({size} bytes)")


def expect(condition, message):
    if not condition:
        raise SystemExit(f"make_torchscript_fixtures: check failed: {message}")


def check_fixtures(out_dir):
    """Loads both modules back and checks shapes and values on random input."""
    generator = torch.Generator().manual_seed(0)

    segmenter = torch.jit.load(os.path.join(out_dir, "segmenter.pt"))
    x = torch.rand(2, 3, 24, 32, generator=generator)
    logits = segmenter(x)
    expect(logits.shape == (2, 3, 12, 16), f"segmenter output shape {tuple(logits.shape)}")
    expected = F.avg_pool2d(x, 2).argmax(dim=1)
    expect(torch.equal(logits.argmax(dim=1), expected), "segmenter classes differ from the rule")
    odd = segmenter(torch.rand(1, 3, 7, 9, generator=generator))
    expect(odd.shape == (1, 3, 3, 4), f"segmenter output shape on 7x9 input {tuple(odd.shape)}")

    features = torch.jit.load(os.path.join(out_dir, "features.pt"))
    for size in (16, 299):
        x = torch.rand(2, 3, size, size, generator=generator)
        out = features(x)
        expect(out.shape == (2, 6), f"features output shape {tuple(out.shape)} for S={size}")
        flat = x.flatten(2)
        reference = torch.cat([flat.mean(2), flat.std(2, unbiased=False)], dim=1)
        expect(torch.allclose(out, reference, atol=1e-5), "features differ from mean/std")
    half = torch.zeros(1, 3, 4, 4)
    half[:, :, :2] = 1.0
    expect(torch.allclose(features(half), torch.full((1, 6), 0.5)), "half 0 / half 1 example")
    distance = torch.jit.load(os.path.join(out_dir, "distance.pt"))
    a, b = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    expect(torch.equal(distance(a, b), torch.ones(2, 1, 1, 1)), "distance of 0 and 1 images")
    print(f"check passed: {out_dir}/segmenter.pt -> [N,3,H/2,W/2], "
          f"{out_dir}/features.pt -> [N,6], {out_dir}/distance.pt -> [N,1,1,1]")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Write the TorchScript test fixtures segmenter.pt, features.pt and distance.pt.")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="directory to write them into")
    parser.add_argument("--check", action="store_true",
                        help="load both back and check output shapes on random input")
    args = parser.parse_args(argv)
    write_fixtures(args.out_dir)
    if args.check:
        check_fixtures(args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
