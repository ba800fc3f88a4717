"""Make the asteroid DCCRNet test vectors in tests/data/asteroid/ (run in the peer venv).

    PEER_VENV/bin/python experiments/bench/make_asteroid_vectors.py [--out tests/data/asteroid]

Writes small.pth, small_state.npz, small_io.npz, full_io.npz (described in tests/convert/test_convert.py).
Also importable: ``build_dccrnet`` and ``torch_forward`` are used by asteroid_numpy_ref.py and
peer_bench.py.  Peer-side workarounds applied here (site-packages is never patched):

- asteroid 0.7.0 passes a numpy int64 as an LSTM input_size, rejected by torch 2.13: we wrap
  ``asteroid.masknn.recurrent.DCCRMaskNetRNN.__init__`` to cast it with int().
- ``BaseModel.serialize`` imports pytorch_lightning only to read its version string, and
  pytorch_lightning 2.6.6 fails to import in the peer venv (torchmetrics needs pkg_resources).
  ``stub_pytorch_lightning`` puts a module object carrying only ``__version__`` (read from the
  installed distribution's metadata) into sys.modules so serialize() itself runs unchanged.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import sys
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# "tiny": the test-vector architecture, same block types as DCCRN-CL, fewer/smaller layers.
TINY_ARCH = (
    (   # encoders: (in_chan, out_chan, kernel_size, stride, padding)   [complex channels]
        (1, 4, (5, 2), (2, 1), (2, 0)),
        (4, 8, (5, 2), (2, 1), (2, 0)),
        (8, 8, (5, 2), (2, 1), (2, 0)),
    ),
    (   # decoders: (in_chan, out_chan, kernel_size, stride, padding, output_padding)
        (16, 8, (5, 2), (2, 1), (2, 0), (1, 0)),
        (16, 4, (5, 2), (2, 1), (2, 0), (1, 0)),
        (8, 1, (5, 2), (2, 1), (2, 0), (1, 0)),
    ),
)
TINY_STFT = dict(stft_n_filters=128, stft_kernel_size=100, stft_stride=50)   # n_freqs = 64
TINY_RNN_HIDDEN = 32          # DCCRMaskNetRNN hid_size (asteroid's default, fixed by DCCRMaskNet, is 128)

_RNN_HID = {"value": None}


def stub_pytorch_lightning():
    if "pytorch_lightning" not in sys.modules:
        try:
            import pytorch_lightning  # noqa: F401
        except Exception:
            mod = types.ModuleType("pytorch_lightning")
            mod.__version__ = md.version("pytorch_lightning")
            sys.modules["pytorch_lightning"] = mod


def patch_asteroid():
    """Apply the int() cast (and optional hidden-size override) to DCCRMaskNetRNN; idempotent."""
    import asteroid.masknn.recurrent as rec
    from asteroid.masknn._dccrn_architectures import DCCRN_ARCHITECTURES

    if not getattr(rec.DCCRMaskNetRNN.__init__, "_jaxse_patched", False):
        orig = rec.DCCRMaskNetRNN.__init__

        def __init__(self, in_size, *args, **kwargs):
            if _RNN_HID["value"] is not None and not args:
                kwargs.setdefault("hid_size", _RNN_HID["value"])
            orig(self, int(in_size), *args, **kwargs)

        __init__._jaxse_patched = True
        rec.DCCRMaskNetRNN.__init__ = __init__
    DCCRN_ARCHITECTURES.setdefault("tiny", TINY_ARCH)
    stub_pytorch_lightning()


def build_dccrnet(arch: str = "DCCRN-CL", synthetic: bool = False, seed: int = 0):
    """Returns (model in eval mode, stft_stride).

    arch "DCCRN-CL": DCCRNet("DCCRN-CL", sample_rate=16000), torch default init (torch.manual_seed(seed)),
      or with synthetic=True all parameters/buffers from asteroid_numpy_ref.make_full_state_dict.
    arch "tiny": DCCRNet("tiny", sample_rate=16000, **TINY_STFT) with RNN hidden 32, torch default init
      then BatchNorm stats/affine and PReLU slopes randomised with the seeded torch generator.
    """
    import torch

    patch_asteroid()
    from asteroid.models import DCCRNet

    torch.manual_seed(seed)
    if arch == "tiny":
        _RNN_HID["value"] = TINY_RNN_HIDDEN
        try:
            model = DCCRNet("tiny", sample_rate=16000, **TINY_STFT)
        finally:
            _RNN_HID["value"] = None
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for name, mod in model.named_modules():
                if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                    c = mod.num_features
                    mod.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                    mod.running_var.copy_(0.5 + torch.rand(c, generator=g))
                    mod.weight.copy_(1.0 + 0.1 * torch.randn(c, generator=g))
                    mod.bias.copy_(0.1 * torch.randn(c, generator=g))
                    mod.num_batches_tracked.fill_(7)
                elif isinstance(mod, torch.nn.PReLU):
                    mod.weight.copy_(0.25 + 0.05 * torch.randn(mod.weight.shape, generator=g))
        stride = TINY_STFT["stft_stride"]
    else:
        model = DCCRNet(arch, sample_rate=16000)
        stride = 100
        if synthetic:
            sys.path.insert(0, HERE)
            from asteroid_numpy_ref import make_full_state_dict

            shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
            sd = make_full_state_dict(shapes, stft_stride=stride)
            model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    model.eval()
    return model, stride


def torch_forward(model, wav: np.ndarray) -> np.ndarray:
    import torch

    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))).numpy()


def speechlike_noise(rng: np.random.Generator, shape, sr: int = 16000) -> np.ndarray:
    """Seeded 'speech-like' noise: AR(2)-coloured noise with a ~4 Hz syllabic envelope, 0.1 std."""
    b, n = shape
    w = rng.standard_normal((b, n + 200))
    x = np.zeros_like(w)
    a1, a2 = 1.3, -0.6                     # resonant low-pass colouring
    for i in range(2, w.shape[1]):
        x[:, i] = w[:, i] + a1 * x[:, i - 1] + a2 * x[:, i - 2]
    x = x[:, 200:]
    t = np.arange(n) / sr
    env = 0.3 + 0.7 * np.abs(np.sin(2 * np.pi * 4.0 * t[None, :] + rng.uniform(0, np.pi, (b, 1))))
    x = x * env
    x = x / x.std(axis=1, keepdims=True) * 0.1
    return x.astype(np.float32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "data", "asteroid"))
    args = ap.parse_args(argv)
    import torch

    sys.path.insert(0, HERE)
    from asteroid_numpy_ref import dccrnet_forward, make_full_state_dict

    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(2)

    # ---- small ------------------------------------------------------------------------
    model, stride = build_dccrnet("tiny", seed=0)
    conf = model.serialize()
    torch.save(conf, os.path.join(args.out, "small.pth"))
    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    np.savez(os.path.join(args.out, "small_state.npz"), **state)
    rng = np.random.default_rng(20240501)
    wav = speechlike_noise(rng, (2, 8000))
    out = torch_forward(model, wav)
    with torch.no_grad():
        tf_rep = model.forward_encoder(torch.from_numpy(wav)[:, None])          # complex [B, F, T]
        mask = model.forward_masker(tf_rep)                                      # complex [B, 1, F, T]
    spec = np.stack([tf_rep.real.numpy(), tf_rep.imag.numpy()], axis=-1)
    mask = np.stack([mask.real.numpy(), mask.imag.numpy()], axis=-1)
    np.savez(os.path.join(args.out, "small_io.npz"), input=wav, output=out,
             spec=spec.astype(np.float32), mask=mask.astype(np.float32),
             model_args=json.dumps(conf["model_args"]), stft_stride=np.int64(stride),
             rnn_hidden=np.int64(TINY_RNN_HIDDEN))
    ref = dccrnet_forward(state, wav, stft_stride=stride)
    print("small: params", sum(p.numel() for p in model.parameters()), "output", out.shape,
          "numpy-ref max abs err", float(np.abs(ref - out).max()))

    # ---- full (synthetic weights, regenerated from the seed by make_full_state_dict) ---
    model, stride = build_dccrnet("DCCRN-CL", synthetic=True)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    keys = sorted(shapes)
    wav = speechlike_noise(np.random.default_rng(20240502), (1, 16000))
    out = torch_forward(model, wav)
    np.savez(os.path.join(args.out, "full_io.npz"), input=wav, output=out,
             keys=np.array(keys), shapes=json.dumps({k: list(shapes[k]) for k in keys}),
             seed=np.int64(1234), stft_stride=np.int64(stride),
             model_args=json.dumps(model.get_model_args()))
    sd = make_full_state_dict({k: shapes[k] for k in keys}, stft_stride=stride)
    ref = dccrnet_forward(sd, wav, stft_stride=stride)
    print("full: params", sum(p.numel() for p in model.parameters()), "output", out.shape,
          "max|out|", float(np.abs(out).max()), "numpy-ref max abs err", float(np.abs(ref - out).max()))
    for f in sorted(os.listdir(args.out)):
        print(f, os.path.getsize(os.path.join(args.out, f)))


if __name__ == "__main__":
    main()
