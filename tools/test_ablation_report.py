#!/usr/bin/python3
"""Self-check for tools/ablation_report.py.

Run: /usr/bin/python3 tools/test_ablation_report.py   (exits non-zero when a check fails)

Writes a synthetic results.json and a tiny grid PNG into a temporary directory, runs the report
script on it as a separate process and checks its outputs; then checks that a results.json
without "variants", or no results.json at all, fails with a one-line error naming the problem.
"""

import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "ablation_report.py")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

sys.path.insert(0, HERE)
import ablation_report  # noqa: E402  (for the formatting unit test)


def tiny_png(width=4, height=3):
    """A valid RGB PNG of the given size (a colour ramp), built from raw bytes."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 60 % 256, y * 80 % 256, 128)) for x in range(width))
        for y in range(height))  # each row: filter type 0, then RGB triples
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def variant(name, description, nfe, seconds, score, **metrics):
    values = {"mask_accuracy": 0.80, "miou": 0.41, "style_similarity": 0.77,
              "style_closest_share": 0.9, "fid": 55.1, "kid": 0.012, "kid_std": 0.003,
              "diversity": 0.11, "score": score}
    values.update(metrics)
    return {
        "name": name,
        "description": description,
        "flags": ["--sampler", "ddim"],
        "metrics": values,
        "cost": {"nfe": nfe, "seconds_per_image": seconds,
                 "images_per_hour": None if seconds is None else round(3600 / seconds),
                 "peak_rss_mib": 812},
    }


def synthetic_results():
    columns = [
        ("mask_accuracy", "mask acc", "metrics", 3), ("miou", "mIoU", "metrics", 3),
        ("style_similarity", "style sim", "metrics", 3),
        ("style_closest_share", "closest share", "metrics", 2), ("fid", "FID", "metrics", 1),
        ("kid", "KID", "metrics", 4), ("kid_std", "KID std", "metrics", 4),
        ("diversity", "diversity", "metrics", 3), ("score", "score", "metrics", 3),
        ("nfe", "NFE", "cost", 0), ("seconds_per_image", "s / image", "cost", 2),
        ("images_per_hour", "images / h", "cost", 0), ("peak_rss_mib", "peak RSS MiB", "cost", 0),
    ]
    return {
        "title": "iidm ablation",
        "machine": "AMD EPYC, 2 threads, bf16",
        "date": "2026-12-02T08:00:00Z",
        "data": "data/ablation (24 items, 256x192)",
        "items": 24,
        "primary_metric": "score",
        "primary_metric_label": "competition score without the aesthetic term (higher is better)",
        "grid": "grid.png",
        "columns": [{"key": k, "label": l, "group": g, "digits": d} for k, l, g, d in columns],
        "variants": [
            variant("base", "ddim25 s=3", 50, 3.2, 0.520),
            variant("base_seed2", "base, seed 2", 50, 3.25, 0.512),
            variant("base_seed3", "base, seed 3", 50, 3.18, 0.527),
            variant("ddim10", "10 DDIM steps", 20, 1.3, 0.47),
            variant("ddim50", "50 DDIM steps", 100, 6.4, 0.531),
            variant("dpm20", "DPM-Solver++ 20 steps", 40, 2.6, 0.525),
            variant("no_cfg", "guidance off", 25, 1.6, 0.43, fid=None, kid=None, kid_std=None),
            variant("distilled4", "4-step student <b>", 4, 0.3, 0.40),
            variant("unmeasured", "cost not measured", None, None, 0.50),
        ],
        "notes": ["FID and KID use the bundled segmenter's features: not comparable to "
                  "published FIDs", "Seconds are wall-clock on a loaded machine & may vary."],
    }


def run_report(out_dir):
    return subprocess.run([sys.executable, SCRIPT, out_dir], capture_output=True, text=True,
                          timeout=300)


class AblationReportTest(unittest.TestCase):
    def test_writes_report_and_charts(self):
        with tempfile.TemporaryDirectory() as out_dir:
            results = synthetic_results()
            with open(os.path.join(out_dir, "results.json"), "w", encoding="utf-8") as f:
                json.dump(results, f)
            with open(os.path.join(out_dir, "grid.png"), "wb") as f:
                f.write(tiny_png())

            proc = run_report(out_dir)
            self.assertEqual(proc.returncode, 0, proc.stderr)

            names = ("chart_nfe.png", "chart_seconds.png", "report.html")
            for name in names:
                path = os.path.join(out_dir, name)
                self.assertTrue(os.path.isfile(path), name)
                self.assertIn(path, proc.stdout)
            for name in names[:2]:
                with open(os.path.join(out_dir, name), "rb") as f:
                    self.assertEqual(f.read(8), PNG_SIGNATURE, name)
            leftovers = [n for n in os.listdir(out_dir) if n.endswith(".tmp")]
            self.assertEqual(leftovers, [])

            with open(os.path.join(out_dir, "report.html"), encoding="utf-8") as f:
                page = f.read()
            for v in results["variants"]:
                self.assertIn(v["name"], page)
            self.assertEqual(page.count("data:image/png;base64,"), 3)
            self.assertIn("4-step student &lt;b&gt;", page)  # text is escaped
            self.assertIn(">1,125<", page)  # images per hour of "base", thousands separated
            self.assertIn("\u2014", page)  # null values
            for note in results["notes"]:
                self.assertIn(note.replace("&", "&amp;").replace("'", "&#x27;"), page)
            self.assertNotIn("http://", page)
            self.assertNotIn("https://", page)

    def test_null_grid_leaves_the_samples_out(self):
        with tempfile.TemporaryDirectory() as out_dir:
            results = synthetic_results()
            results["grid"] = None  # `iidm ablate` writes null when no variant made images
            with open(os.path.join(out_dir, "results.json"), "w", encoding="utf-8") as f:
                json.dump(results, f)
            proc = run_report(out_dir)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            with open(os.path.join(out_dir, "report.html"), encoding="utf-8") as f:
                self.assertEqual(f.read().count("data:image/png;base64,"), 2)

    def test_missing_variants_names_the_key(self):
        with tempfile.TemporaryDirectory() as out_dir:
            results = synthetic_results()
            del results["variants"]
            with open(os.path.join(out_dir, "results.json"), "w", encoding="utf-8") as f:
                json.dump(results, f)
            proc = run_report(out_dir)
            self.assertNotEqual(proc.returncode, 0)
            self.assertIn("variants", proc.stderr)
            self.assertIn("results.json", proc.stderr)
            self.assertEqual(len(proc.stderr.strip().splitlines()), 1, proc.stderr)
            self.assertFalse(os.path.exists(os.path.join(out_dir, "report.html")))

    def test_missing_results_names_the_file(self):
        with tempfile.TemporaryDirectory() as out_dir:
            proc = run_report(out_dir)
            self.assertNotEqual(proc.returncode, 0)
            self.assertIn(os.path.join(out_dir, "results.json"), proc.stderr)
            self.assertEqual(len(proc.stderr.strip().splitlines()), 1, proc.stderr)

    def test_format_value(self):
        fmt = ablation_report.format_value
        self.assertEqual(fmt(None, 3), "\u2014")
        self.assertEqual(fmt(float("nan"), 3), "\u2014")
        self.assertEqual(fmt(0.81234, 3), "0.812")
        self.assertEqual(fmt(1125, 0), "1,125")
        self.assertEqual(fmt(1125.4, 0), "1,125")
        self.assertEqual(fmt(0.0123456, None), "0.0123")


if __name__ == "__main__":
    unittest.main()
