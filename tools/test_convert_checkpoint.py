#!/usr/bin/python3
"""Tests for tools/convert_checkpoint.py and its package tools/iidm_convert/.

Run with:  /usr/bin/python3 tools/test_convert_checkpoint.py
Every input file is generated here, in a temporary directory.
"""

import contextlib
import hashlib
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import types
import unittest
from collections import OrderedDict
from unittest import mock

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import iidm_convert as cc  # noqa: E402
from iidm_convert import safetensors_io  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "convert_checkpoint.py")

ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def bits(t: torch.Tensor) -> torch.Tensor:
    """Reinterpret floats as same-width integers so comparisons are bit-exact (NaN-safe)."""
    int_of = {8: torch.int64, 4: torch.int32, 2: torch.int16}
    return t.view(int_of[t.element_size()]) if t.is_floating_point() else t


def assert_bit_equal(tc: unittest.TestCase, got: torch.Tensor, want: torch.Tensor, name=""):
    tc.assertEqual(got.dtype, want.dtype, name)
    tc.assertEqual(tuple(got.shape), tuple(want.shape), name)
    tc.assertTrue(torch.equal(bits(got), bits(want)), f"values differ for {name}")


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def parse_raw(path):
    """Independent minimal safetensors parser, so the test does not trust the reader under test."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    return header, 8 + n, blob


@contextlib.contextmanager
def fake_modules(**modules):
    """Temporarily make classes importable under foreign module names (e.g. jittor)
    so pickle can write references to them; afterwards they are unimportable again."""
    saved = {}
    try:
        for modname, classes in modules.items():
            parts = modname.split(".")
            for i in range(1, len(parts) + 1):
                name = ".".join(parts[:i])
                if name not in saved:
                    saved[name] = sys.modules.get(name)
                    sys.modules[name] = types.ModuleType(name)
            for cls in classes:
                cls.__module__ = modname
                setattr(sys.modules[modname], cls.__qualname__, cls)
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


class Var:
    """Mimics jittor.Var, which pickles as (jittor.Var, (ndarray,))."""

    def __init__(self, data):
        self.data = data

    def __reduce__(self):
        return (type(self), (self.data,))


class Holder:
    """Pickled by the default protocol (NEWOBJ + BUILD with __dict__)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


class ModelCheckpoint(Holder):
    """Stands in for pytorch_lightning's callback stored in real .ckpt files."""


def run_main(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cc.main(list(argv))
    return code, out.getvalue(), err.getvalue()


# Parameters of a tiny "UNet" with LDM-style names; LitEma shadows these.
UNET_PARAMS = [
    ("input_blocks.0.0.weight", (4, 3, 3, 3)),
    ("input_blocks.0.0.bias", (4,)),
    ("time_embed.0.weight", (8, 4)),
    ("out.2.weight", (3, 4, 3, 3)),
]


class ConvertCheckpointTest(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="convert_ckpt_test_")
        self.dir = self._tmp.name
        torch.manual_seed(0)

    def tearDown(self):
        self._tmp.cleanup()

    def p(self, name):
        return os.path.join(self.dir, name)

    def check_header(self, path, expect_metadata_source=None):
        header, data_start, blob = parse_raw(path)
        self.assertEqual(data_start % 8, 0, "data section must start 8-byte aligned")
        meta = header.pop("__metadata__", None)
        if expect_metadata_source is not None:
            self.assertEqual(
                meta, {"format": "pt", "source": expect_metadata_source, "converter": "iidm convert_checkpoint"}
            )
        pos = 0
        for name, info in header.items():  # header order == data order
            begin, end = info["data_offsets"]
            self.assertEqual(begin, pos, f"{name} not contiguous")
            numel = int(np.prod(info["shape"], dtype=np.int64))
            self.assertEqual(end - begin, numel * ITEMSIZE[info["dtype"]], name)
            self.assertEqual((data_start + begin) % ITEMSIZE[info["dtype"]], 0, f"{name} misaligned")
            pos = end
        self.assertEqual(len(blob), data_start + pos, "trailing or missing bytes")
        return header

    # ------------------------------------------------------------------ .pt

    def make_pt(self, name="model.pt"):
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
        sd = net.state_dict()
        sd["extra.half"] = torch.randn(3, 5).half()
        sd["extra.double"] = torch.randn(7, dtype=torch.float64)
        sd["extra.bf16"] = torch.randn(2, 2).bfloat16()
        sd["extra.index"] = torch.arange(6, dtype=torch.int64).reshape(2, 3)
        sd["extra.scalar"] = torch.tensor(1.5)
        sd["extra.empty"] = torch.zeros(0, 3)
        torch.save(sd, self.p(name))
        return sd

    def test_pt_roundtrip_default_fp32(self):
        sd = self.make_pt()
        code, out, err = run_main(self.p("model.pt"), "-o", self.p("out.safetensors"))
        self.assertEqual(code, 0, err)
        self.assertIn("wrote", out)
        self.assertIn(f"{len(sd)} tensors", out)
        self.check_header(self.p("out.safetensors"), "model.pt")
        got, meta = cc.read_safetensors(self.p("out.safetensors"))
        self.assertEqual(set(got), set(sd))
        self.assertEqual(meta["source"], "model.pt")
        for k, v in sd.items():
            want = v.float() if v.is_floating_point() else v
            assert_bit_equal(self, got[k], want, k)
        self.assertFalse(os.path.exists(self.p("out.safetensors.tmp")))

    def test_dtype_modes(self):
        sd = self.make_pt()
        for mode, target in [("keep", None), ("fp16", torch.float16), ("bf16", torch.bfloat16), ("fp32", torch.float32)]:
            out = self.p(f"{mode}.safetensors")
            code, _, err = run_main(self.p("model.pt"), "-o", out, "--dtype", mode)
            self.assertEqual(code, 0, err)
            header = self.check_header(out)
            got, _ = cc.read_safetensors(out)
            for k, v in sd.items():
                want = v.to(target) if target is not None and v.is_floating_point() else v
                assert_bit_equal(self, got[k], want, f"{mode}:{k}")
            self.assertEqual(header["extra.index"]["dtype"], "I64")
            self.assertEqual(header["1.num_batches_tracked"]["dtype"], "I64")
        self.assertEqual(parse_raw(self.p("bf16.safetensors"))[0]["0.weight"]["dtype"], "BF16")
        self.assertEqual(parse_raw(self.p("keep.safetensors"))[0]["extra.double"]["dtype"], "F64")

    def test_legacy_torch_format_and_default_output_name(self):
        sd = {"w": torch.randn(3, 3), "n": torch.tensor([1, 2], dtype=torch.int32)}
        torch.save(sd, self.p("old.pth"), _use_new_zipfile_serialization=False)
        code, _, err = run_main(self.p("old.pth"))
        self.assertEqual(code, 0, err)
        got, _ = cc.read_safetensors(self.p("old.safetensors"))
        assert_bit_equal(self, got["w"], sd["w"])
        assert_bit_equal(self, got["n"], sd["n"])

    def test_prefix_and_duplicate_after_strip(self):
        sd = OrderedDict(
            [("net.a.weight", torch.randn(2)), ("net.b", torch.randn(3)), ("other.c", torch.randn(1))]
        )
        torch.save(sd, self.p("pre.pt"))
        code, _, err = run_main(self.p("pre.pt"), "--prefix", "net.", "-o", self.p("pre.safetensors"))
        self.assertEqual(code, 0, err)
        got, _ = cc.read_safetensors(self.p("pre.safetensors"))
        self.assertEqual(set(got), {"a.weight", "b"})
        assert_bit_equal(self, got["a.weight"], sd["net.a.weight"])
        # Without the trailing dot the separating dot is stripped as well.
        code, _, err = run_main(self.p("pre.pt"), "--prefix", "net", "-o", self.p("pre2.safetensors"))
        self.assertEqual(code, 0, err)
        self.assertEqual(set(cc.read_safetensors(self.p("pre2.safetensors"))[0]), {"a.weight", "b"})

        torch.save({"m.x": torch.ones(1), "mx": torch.ones(1)}, self.p("dup.pt"))
        code, _, err = run_main(self.p("dup.pt"), "--prefix", "m", "-o", self.p("dup.safetensors"))
        self.assertEqual(code, 1)
        self.assertIn("duplicate key 'x'", err)
        self.assertIn("dup.pt", err)
        self.assertFalse(os.path.exists(self.p("dup.safetensors")))

    # ------------------------------------------------------------------ .ckpt

    def make_ckpt(self, name="ldm.ckpt"):
        state = OrderedDict()
        ema = OrderedDict()
        for pname, shape in UNET_PARAMS:
            state["model.diffusion_model." + pname] = torch.randn(shape)
            ema["model_ema.diffusion_model" + pname.replace(".", "")] = torch.randn(shape)
        # Buffers are not shadowed by LitEma and must keep their raw value.
        state["model.diffusion_model.label_emb.buffer"] = torch.arange(3, dtype=torch.int64)
        state["first_stage_model.encoder.conv_in.weight"] = torch.randn(8, 3, 3, 3)
        state["first_stage_model.decoder.conv_out.bias"] = torch.randn(3).half()
        state["first_stage_model.loss.discriminator.main.0.weight"] = torch.randn(4, 3, 4, 4)
        state["first_stage_model.loss.perceptual_loss.net.lin0.weight"] = torch.randn(1, 4, 1, 1)
        state["cond_stage_model.embedding.weight"] = torch.randn(10, 4)
        state["betas"] = torch.linspace(1e-4, 2e-2, 10, dtype=torch.float64)
        state.update(ema)
        state["model_ema.decay"] = torch.tensor(0.9999)
        state["model_ema.num_updates"] = torch.tensor(1234, dtype=torch.int32)
        with fake_modules(**{"pytorch_lightning.callbacks.model_checkpoint": [ModelCheckpoint]}):
            torch.save(
                {
                    "epoch": 3,
                    "global_step": 42,
                    "pytorch-lightning_version": "1.4.2",
                    "state_dict": state,
                    "callbacks": {ModelCheckpoint: ModelCheckpoint(best_model_score=torch.tensor(0.5), monitor="val")},
                    "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-4}]}],
                    "lr_schedulers": [],
                },
                self.p(name),
            )
        return state, ema

    def test_ckpt_prefix_without_and_with_ema(self):
        state, ema = self.make_ckpt()
        code, _, err = run_main(self.p("ldm.ckpt"), "--prefix", "model.diffusion_model.", "-o", self.p("raw.safetensors"))
        self.assertEqual(code, 0, err)
        self.assertIn("pass --ema", err)
        raw, _ = cc.read_safetensors(self.p("raw.safetensors"))
        self.assertEqual(set(raw), {p for p, _ in UNET_PARAMS} | {"label_emb.buffer"})
        for pname, _ in UNET_PARAMS:
            assert_bit_equal(self, raw[pname], state["model.diffusion_model." + pname], pname)

        code, _, err = run_main(
            self.p("ldm.ckpt"), "--ema", "--prefix", "model.diffusion_model.", "-o", self.p("ema.safetensors")
        )
        self.assertEqual(code, 0, err)
        got, _ = cc.read_safetensors(self.p("ema.safetensors"))
        self.assertEqual(set(got), set(raw))
        for pname, _ in UNET_PARAMS:
            assert_bit_equal(self, got[pname], ema["model_ema.diffusion_model" + pname.replace(".", "")], pname)
        assert_bit_equal(self, got["label_emb.buffer"], state["model.diffusion_model.label_emb.buffer"])

    def test_ckpt_full_conversion_drops_training_entries(self):
        state, _ = self.make_ckpt()
        code, _, err = run_main(self.p("ldm.ckpt"), "-o", self.p("full.safetensors"), "--dtype", "keep")
        self.assertEqual(code, 0, err)
        got, _ = cc.read_safetensors(self.p("full.safetensors"))
        self.assertFalse([k for k in got if k.startswith("model_ema.") or ".loss." in k])
        self.assertIn("betas", got)
        self.assertIn("first_stage_model.encoder.conv_in.weight", got)
        assert_bit_equal(self, got["first_stage_model.decoder.conv_out.bias"], state["first_stage_model.decoder.conv_out.bias"])

    def test_ckpt_split(self):
        state, ema = self.make_ckpt()
        outdir = self.p("split")
        code, out, err = run_main(self.p("ldm.ckpt"), "--ema", "--split", outdir)
        self.assertEqual(code, 0, err)
        self.assertEqual(sorted(os.listdir(outdir)), ["cond_stage.safetensors", "first_stage.safetensors", "unet.safetensors"])
        self.assertEqual(out.count("wrote"), 3)
        for f in os.listdir(outdir):
            self.check_header(os.path.join(outdir, f), "ldm.ckpt")
        unet, _ = cc.read_safetensors(os.path.join(outdir, "unet.safetensors"))
        for pname, _ in UNET_PARAMS:
            assert_bit_equal(self, unet[pname], ema["model_ema.diffusion_model" + pname.replace(".", "")], pname)
        first, _ = cc.read_safetensors(os.path.join(outdir, "first_stage.safetensors"))
        self.assertEqual(set(first), {"encoder.conv_in.weight", "decoder.conv_out.bias"})
        # default fp32: the fp16 tensor is widened exactly
        assert_bit_equal(self, first["decoder.conv_out.bias"], state["first_stage_model.decoder.conv_out.bias"].float())
        cond, _ = cc.read_safetensors(os.path.join(outdir, "cond_stage.safetensors"))
        self.assertEqual(list(cond), ["embedding.weight"])

        code, _, err = run_main(self.p("ldm.ckpt"), "--split", self.p("split2"), "--keep-loss")
        self.assertEqual(code, 0, err)
        first, _ = cc.read_safetensors(self.p("split2/first_stage.safetensors"))
        self.assertIn("loss.discriminator.main.0.weight", first)
        self.assertIn("loss.perceptual_loss.net.lin0.weight", first)

        torch.save({"w": torch.ones(2)}, self.p("plain.pt"))
        code, _, err = run_main(self.p("plain.pt"), "--split", self.p("split3"))
        self.assertEqual(code, 1)
        self.assertIn("model.diffusion_model.", err)

    def test_ema_mapping_autoencoder_style_and_mismatch(self):
        # An autoencoder trained with use_ema shadows its own top-level keys.
        state = OrderedDict(
            [("encoder.conv_in.weight", torch.zeros(2)), ("model_ema.encoderconv_inweight", torch.ones(2))]
        )
        ckpt = cc.Checkpoint("ae.ckpt", "torch", state)
        out, dropped = cc.select_weights(ckpt, ema=True, keep_loss=False, notes=[])
        self.assertEqual(list(out), ["encoder.conv_in.weight"])
        assert_bit_equal(self, out["encoder.conv_in.weight"], torch.ones(2))
        self.assertEqual(dropped, ["model_ema.encoderconv_inweight"])

        state["model_ema.nosuchweight"] = torch.ones(1)
        with self.assertRaisesRegex(cc.ConvertError, "ae.ckpt: 1 EMA entries match no model weight"):
            cc.select_weights(ckpt, ema=True, keep_loss=False, notes=[])

    def test_list(self):
        self.make_ckpt()
        code, out, err = run_main(self.p("ldm.ckpt"), "--list")
        self.assertEqual(code, 0, err)
        self.assertIn("model_ema.diffusion_modelinput_blocks00weight", out)
        self.assertRegex(out, r"first_stage_model\.encoder\.conv_in\.weight +F32 +\[8, 3, 3, 3\]")
        self.assertIn("global_step: 42", out)
        self.assertIn("optimizer_states", out)
        run_main(self.p("ldm.ckpt"), "--split", self.p("s"))
        code, out, err = run_main(self.p("s/first_stage.safetensors"), "--list")
        self.assertEqual(code, 0, err)
        self.assertIn("encoder.conv_in.weight", out)
        self.assertIn('"source": "ldm.ckpt"', out)
        self.assertIn("# 2 tensors", out)

    # ------------------------------------------------------------------ .pkl

    def write_jittor_pkl(self, name, obj, trailer=True):
        s = pickle.dumps(obj, 4)
        if trailer:  # what jittor's safepickle appends
            s += hashlib.sha1(s).digest() + b"HCAJSLHD"
        with open(self.p(name), "wb") as f:
            f.write(s)

    def test_jittor_pkl_plain_numpy(self):
        arrays = OrderedDict(
            [
                ("conv.weight", np.random.randn(4, 3, 3, 3).astype(np.float32)),
                ("conv.bias", np.random.randn(4).astype(np.float16)),
                ("steps", np.array([1, 2, 3], dtype=np.int64)),
                ("scale", np.float32(0.25)),
            ]
        )
        self.write_jittor_pkl("iidm.pkl", {"state_dict": arrays, "epoch": 7})
        self.write_jittor_pkl("iidm_model.pkl", {"model": arrays}, trailer=False)
        for name in ("iidm.pkl", "iidm_model.pkl"):
            out = self.p(name + ".safetensors")
            code, _, err = run_main(self.p(name), "-o", out, "--dtype", "keep")
            self.assertEqual(code, 0, err)
            got, _ = cc.read_safetensors(out)
            self.assertEqual(set(got), set(arrays))
            for k, a in arrays.items():
                assert_bit_equal(self, got[k], torch.from_numpy(np.array(a)), k)

        data = bytearray(read_bytes(self.p("iidm.pkl")))
        data[40] ^= 0xFF
        with open(self.p("flipped.pkl"), "wb") as f:
            f.write(bytes(data))
        code, _, err = run_main(self.p("flipped.pkl"), "-o", self.p("flipped.safetensors"))
        self.assertEqual(code, 1)
        self.assertIn("checksum", err)
        self.assertIn("flipped.pkl", err)

    def test_jittor_pkl_with_unimportable_classes(self):
        w = np.random.randn(2, 3).astype(np.float32)
        b = np.random.randn(2).astype(np.float32)
        g = np.random.randn(5).astype(np.float64)
        Var.__qualname__ = Var.__name__ = "Var"
        Holder.__qualname__ = Holder.__name__ = "Holder"
        with fake_modules(jittor=[Var], **{"jittor.nn": [Holder]}):
            obj = {
                "state_dict": {"fc.weight": Var(w), "fc.bias": Var(b), "norm.gamma": Holder(value=g, name="gamma")},
                "optimizer": Holder(lr=0.1, momentum=Holder(m=g)),
            }
            self.write_jittor_pkl("jt.pkl", obj)
            self.write_jittor_pkl("two.pkl", {"ok": w, "x": Holder(a=w, b=b)})
        self.assertNotIn("jittor", sys.modules)
        code, _, err = run_main(self.p("jt.pkl"), "-o", self.p("jt.safetensors"), "--dtype", "keep")
        self.assertEqual(code, 0, err)
        got, _ = cc.read_safetensors(self.p("jt.safetensors"))
        self.assertEqual(set(got), {"fc.weight", "fc.bias", "norm.gamma"})
        assert_bit_equal(self, got["fc.weight"], torch.from_numpy(w))
        assert_bit_equal(self, got["fc.bias"], torch.from_numpy(b))
        assert_bit_equal(self, got["norm.gamma"], torch.from_numpy(g))

        code, _, err = run_main(self.p("two.pkl"), "-o", self.p("two.safetensors"))
        self.assertEqual(code, 1)
        self.assertIn("jittor.nn.Holder", err)
        self.assertIn("exactly one array", err)

    def test_pickle_cannot_execute_code(self):
        # A malicious pickle calling os.system must be neutralised, not run.
        marker = self.p("pwned")

        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {marker}",))

        self.write_jittor_pkl("evil.pkl", {"w": np.ones(2, np.float32), "x": Evil()}, trailer=False)
        torch.save({"w": torch.ones(2), "x": Evil()}, self.p("evil.pt"))
        for name in ("evil.pkl", "evil.pt"):
            code, _, err = run_main(self.p(name), "-o", self.p(name + ".safetensors"))
            self.assertEqual(code, 1, name)
            self.assertIn("'x'", err)
            self.assertFalse(os.path.exists(marker), f"{name} executed code while loading")

    # ------------------------------------------------------------------ errors

    def test_errors(self):
        with open(self.p("corrupt.pt"), "wb") as f:
            f.write(os.urandom(256))
        self.make_ckpt("good.ckpt")
        blob = read_bytes(self.p("good.ckpt"))
        with open(self.p("truncated.ckpt"), "wb") as f:
            f.write(blob[: len(blob) // 2])
        open(self.p("empty.pt"), "wb").close()
        torch.save({"w": torch.ones(2), "name": "not a tensor"}, self.p("mixed.pt"))
        torch.save({"epoch": 1, "note": "hi"}, self.p("notensor.pt"))
        self.make_pt("plain.pt")

        cases = [
            (["corrupt.pt"], ["corrupt.pt", "cannot read checkpoint"]),
            (["truncated.ckpt"], ["truncated.ckpt", "cannot read checkpoint"]),
            (["empty.pt"], ["empty.pt", "empty"]),
            (["missing.pt"], ["missing.pt", "cannot read file"]),
            (["mixed.pt"], ["mixed.pt", "non-tensor value", "'name'"]),
            (["notensor.pt"], ["notensor.pt", "no tensors found"]),
            (["plain.pt", "--prefix", "model.diffusion_model."], ["plain.pt", "matched nothing", "available"]),
            (["plain.pt", "--ema"], ["plain.pt", "no EMA"]),
            (["good.ckpt", "--prefix", "model_ema."], ["matched nothing", "--ema"]),
        ]
        for argv, needles in cases:
            out = self.p("err.safetensors")
            code, stdout, err = run_main(self.p(argv[0]), *argv[1:], "-o", out)
            self.assertEqual(code, 1, f"{argv}: {err}")
            self.assertTrue(err.startswith("error: "), err)
            self.assertEqual(len(err.strip().splitlines()), 1, f"{argv}: expected a one-line error: {err}")
            for needle in needles:
                self.assertIn(needle, err, argv)
            self.assertFalse(os.path.exists(out), argv)
            self.assertFalse(os.path.exists(out + ".tmp"), argv)

    def test_reader_rejects_bad_headers(self):
        def write(name, header, data):
            raw = json.dumps(header).encode()
            with open(self.p(name), "wb") as f:
                f.write(struct.pack("<Q", len(raw)) + raw + data)

        write("overlap.safetensors", {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                      "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8))
        write("short.safetensors", {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8))
        write("badlen.safetensors", {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8))
        with open(self.p("huge.safetensors"), "wb") as f:
            f.write(struct.pack("<Q", 1 << 40) + b"{}")
        for name in ("overlap", "short", "badlen", "huge"):
            with self.assertRaises(cc.ConvertError, msg=name) as ctx:
                cc.read_safetensors(self.p(name + ".safetensors"))
            self.assertIn(name + ".safetensors", str(ctx.exception))

    # ------------------------------------------------------------------ atomicity

    def test_atomic_write_on_failure(self):
        self.make_pt()
        out = self.p("atomic.safetensors")
        real = safetensors_io._tensor_to_bytes

        def fail_on_call(n):
            """A _tensor_to_bytes that raises on its n-th call, mid-file."""
            calls = []

            def wrapper(t):
                calls.append(t)
                if len(calls) == n:
                    raise OSError(28, "No space left on device (injected)")
                return real(t)

            return mock.patch.object(safetensors_io, "_tensor_to_bytes", wrapper)

        with fail_on_call(3):
            code, _, err = run_main(self.p("model.pt"), "-o", out)
        self.assertEqual(code, 1)
        self.assertIn("injected", err)
        self.assertFalse(os.path.exists(out))
        self.assertFalse(os.path.exists(out + ".tmp"))

        # An existing good output must survive a failed re-conversion untouched.
        with open(out, "wb") as f:
            f.write(b"previous")
        with fail_on_call(3), self.assertRaises(OSError):
            cc.convert(self.p("model.pt"), output=out)
        self.assertEqual(read_bytes(out), b"previous")
        self.assertFalse(os.path.exists(out + ".tmp"))

        # --split is all-or-nothing: failing inside the second file (unet has
        # len(UNET_PARAMS) + 1 tensors) must not leave the first one behind.
        self.make_ckpt()
        with fail_on_call(len(UNET_PARAMS) + 2):
            code, _, err = run_main(self.p("ldm.ckpt"), "--split", self.p("split"))
        self.assertEqual(code, 1, err)
        self.assertEqual(os.listdir(self.p("split")), [])

    # ------------------------------------------------------------------ CLI

    def test_cli_subprocess(self):
        exe = sys.executable
        r = subprocess.run([exe, SCRIPT, "--help"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0)
        for opt in ("--ema", "--prefix", "--split", "--dtype", "--list", "--keep-loss", "--output"):
            self.assertIn(opt, r.stdout)
        torch.save({"w": torch.randn(3)}, self.p("cli.pt"))
        r = subprocess.run([exe, SCRIPT, self.p("cli.pt"), "-o", self.p("cli.safetensors")], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout.strip(), r"^wrote .*cli\.safetensors: 1 tensors, 3 parameters, \d+ bytes$")
        r = subprocess.run([exe, SCRIPT, self.p("cli.pt"), "--ema", "-o", self.p("x.safetensors")], capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no EMA", r.stderr)
        r = subprocess.run([exe, SCRIPT, self.p("cli.pt"), "--list", "--split", "d"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
