#!/usr/bin/env python3
"""Times the official SDM U-Net (github.com/WeilunWang/semantic-diffusion-model, the network IIDM
runs) at IIDM's size, for `tools/bench.sh` to set beside ours in the same run: fp32, bf16 autocast,
and the bf16 autocast guidance pair (batch 2). Needs a checkout of that repository (its code is
imported from there, never copied) and Debian's python3-torch.

    /usr/bin/python3 tools/bench_official.py SDM_REPO [--threads 2] [--runs 3]

Prints one JSON object per line: {"bench": "official_unet", "mode": ..., "median_s": ...}.
"""
import argparse
import json
import os
import statistics
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", help="checkout of WeilunWang/semantic-diffusion-model")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", default="fp32,bf16_autocast,bf16_autocast_pair",
                        help="comma-separated (bf16 only where the CPU has it: emulated it takes minutes)")
    args = parser.parse_args()
    if not os.path.isfile(os.path.join(args.repo, "guided_diffusion", "unet.py")):
        sys.exit(f"{args.repo}: not a checkout of semantic-diffusion-model (no guided_diffusion/unet.py)")
    sys.path.insert(0, args.repo)
    import torch
    from guided_diffusion.script_util import create_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # IIDM's flags (configs/models/iidm.json): a 29-class SDM U-Net on 3x96x128 VQ-f4 latents.
    model = create_model(image_size=128, num_classes=29, num_channels=256, num_res_blocks=2, channel_mult="",
                         learn_sigma=True, class_cond=True, attention_resolutions="32,16,8", num_head_channels=64,
                         resblock_updown=True, use_scale_shift_norm=True, no_instance=True).eval()

    def inputs(n):
        x = torch.randn(n, 3, 96, 128)
        labels = torch.randint(0, 29, (n, 6, 8)).repeat_interleave(16, 1).repeat_interleave(16, 2)
        y = torch.nn.functional.one_hot(labels, 29).permute(0, 3, 1, 2).float()
        return x, torch.full((n,), 500), y

    def timed(n, bf16):
        x, t, y = inputs(n)
        seconds = []
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(x, t, y)  # warm-up
            for _ in range(args.runs):
                start = time.perf_counter()
                model(x, t, y)
                seconds.append(time.perf_counter() - start)
        return statistics.median(seconds)

    modes = args.modes.split(",")
    for mode, n, bf16 in [("fp32", 1, False), ("bf16_autocast", 1, True), ("bf16_autocast_pair", 2, True)]:
        if mode not in modes:
            continue
        print(json.dumps({"bench": "official_unet", "mode": mode, "batch": n, "threads": args.threads,
                          "median_s": round(timed(n, bf16), 4)}), flush=True)


if __name__ == "__main__":
    main()
