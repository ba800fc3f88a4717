"""Import pretrained weights of other toolkits into jaxse checkpoints (no torch needed).

    python -m jaxse.convert asteroid-dccrnet IN.pth OUT_DIR [--force]

``asteroid-dccrnet``: an asteroid (0.7.0) ``DCCRNet`` checkpoint, i.e. ``torch.save`` of ``model.serialize()`` (a dict
with ``model_name``, ``state_dict``, ``model_args``; the format of asteroid's published models) or of a bare
``state_dict``. It becomes the jaxse model ``dccrn-cl-asteroid`` (``jaxse.models.dccrn_asteroid.DCCRNAsteroid``; channel plan,
LSTM size and STFT size taken from the tensors, so smaller asteroid architectures such as "mini" work too), written
with ``jaxse.io.checkpoints.save_model`` so that enhance, evaluate, stream and export accept it.

Tensor mapping (torch layouts -> jaxse, ``W_re``/``W_im`` = the ``re_module``/``im_module`` weights):
  complex Conv2d ``[C_out, C_in, kF, kT]``       -> ``kernel[kt, kf, C_in, C_out] = W_re + i W_im`` (transposed)
  complex ConvTranspose2d ``[C_in, C_out, kF, kT]`` -> same, flipped along both kernel axes (jaxse's transposed
                                                     convolutions are input-dilated correlations)
  output layer biases ``b_re, b_im``              -> ``bias = (b_re - b_im) + i (b_re + b_im)``
  OnReIm BatchNorm (re, im)                       -> ``scale/bias/mean/var [2, C]`` (row 0 real, row 1 imaginary)
  OnReIm PReLU (re, im)                           -> ``alpha [2]``
  complex LSTM layer (two real ``nn.LSTM``)       -> ``w_i = W_ih_re.T + i W_ih_im.T``, ``w_h`` alike,
                                                     ``b = (b_ih + b_hh)_re + i (b_ih + b_hh)_im``
  complex Linear                                  -> ``kernel = W_re.T + i W_im.T``, bias as the output layer's
asteroid flattens the bottleneck ``[C, F]`` channel-major (index ``c * F + f``), jaxse frequency-major
(``f * C + c``): the first LSTM's input rows and the linear layer's output columns are permuted accordingly.
The STFT filter buffers are not parameters: they are checked against the filters ``DCCRNAsteroid``
computes (and used to confirm the hop). Every tensor must be used and every expected tensor present.
"""
from __future__ import annotations

from jaxse.errors import UsageError

import math
import os
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from jaxse.signal import SAMPLE_RATE

__all__ = ["ConversionError", "convert_asteroid_dccrnet"]

ASTEROID_MODEL = "dccrn-cl-asteroid"
# model_args keys of asteroid's DCCRNet that we understand, with the values we support where they matter.
_ASTEROID_ARGS = ("architecture", "stft_n_filters", "stft_kernel_size", "stft_stride", "sample_rate", "n_freqs",
                  "mask_bound", "n_src")


class ConversionError(UsageError):
    """A checkpoint that cannot be converted exactly (the message says which tensor or setting and why)."""


# ----------------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------------
def _as_numpy(v: Any) -> Any:
    if hasattr(v, "detach"):  # a torch tensor, when the caller has torch
        v = v.detach().cpu().numpy()
    return np.asarray(v) if not isinstance(v, np.ndarray) else v


def _unpack(src: Any) -> tuple[dict[str, np.ndarray], dict]:
    """``(state_dict, model_args)`` from a path, an asteroid package dict or a bare state dict."""
    if isinstance(src, (str, os.PathLike)):
        from jaxse.convert.torch_pickle import load_torch_file

        if not Path(src).is_file():
            raise ConversionError(f"{str(src)!r} is not a file")
        src = load_torch_file(src)
    if not isinstance(src, Mapping):
        raise ConversionError(f"expected a state dict or asteroid's serialized dict, got {type(src).__name__}")
    model_args: dict = {}
    if "state_dict" in src:
        name = src.get("model_name", "DCCRNet")
        if name != "DCCRNet":
            raise ConversionError(f"this is an asteroid {name!r} checkpoint; only 'DCCRNet' is supported")
        model_args = dict(src.get("model_args") or {})
        src = src["state_dict"]
        if not isinstance(src, Mapping):
            raise ConversionError(f"'state_dict' holds a {type(src).__name__}, not a dict of tensors")
    sd = {str(k): _as_numpy(v) for k, v in src.items()}
    return sd, model_args


# ----------------------------------------------------------------------------------------------------------------
# asteroid DCCRNet
# ----------------------------------------------------------------------------------------------------------------
def _count(sd: Mapping[str, np.ndarray], pattern: str) -> int:
    rx = re.compile(pattern)
    idx = {int(m.group(1)) for k in sd for m in [rx.match(k)] if m}
    n = len(idx)
    if idx != set(range(n)):
        raise ConversionError(f"non-contiguous layer numbers for {pattern!r}: {sorted(idx)}")
    return n


def _infer_structure(sd: Mapping[str, np.ndarray], model_args: Mapping) -> dict:
    """Model fields (channels, rnn_units, rnn_layers, n_fft, win_length, hop) from tensor shapes and model_args."""
    # Longer than a screen: one pass over the state dict, one short branch per field read from a shape.
    def shape(key):
        if key not in sd:
            raise ConversionError(f"missing key {key!r}: not an asteroid DCCRNet state dict?")
        return tuple(sd[key].shape)

    n_enc = _count(sd, r"masker\.encoders\.(\d+)\.conv\.re_module\.weight$")
    if n_enc == 0:
        raise ConversionError("no 'masker.encoders.<i>.conv.re_module.weight' keys: not an asteroid DCCRNet "
                              f"state dict (first keys: {list(sd)[:5]})")
    channels = tuple(shape(f"masker.encoders.{i}.conv.re_module.weight")[0] for i in range(n_enc))
    rnn = f"masker.encoders.{n_enc}.rnn.rnns"
    rnn_layers = _count(sd, re.escape(rnn) + r"\.(\d+)\.re_module\.rnn\.weight_hh_l0$")
    if rnn_layers == 0:
        raise ConversionError(f"missing the complex LSTM keys '{rnn}.<i>.re_module.rnn.*'")
    rnn_units = shape(f"{rnn}.0.re_module.rnn.weight_hh_l0")[1]
    filt = shape("encoder.filterbank._filters")
    if len(filt) != 3 or filt[1] != 1 or filt[0] % 2:
        raise ConversionError(f"encoder.filterbank._filters has shape {filt}; expected [n_fft + 2, 1, win]")
    n_fft, win = filt[0] - 2, filt[2]
    out = dict(channels=channels, rnn_units=int(rnn_units), rnn_layers=rnn_layers, n_fft=int(n_fft),
               win_length=int(win))

    unknown = sorted(set(model_args) - set(_ASTEROID_ARGS))
    if unknown:
        raise ConversionError(f"unsupported DCCRNet model_args {unknown} (supported: {', '.join(_ASTEROID_ARGS)})")
    if model_args.get("mask_bound", "tanh") != "tanh":
        raise ConversionError(f"mask_bound={model_args['mask_bound']!r} is not supported (only asteroid's default "
                              f"'tanh')")
    if int(model_args.get("n_src", 1)) != 1:
        raise ConversionError(f"n_src={model_args['n_src']} is not supported (only 1: speech enhancement)")
    for key, have in (("stft_n_filters", n_fft), ("stft_kernel_size", win), ("n_freqs", n_fft // 2)):
        if key in model_args and int(model_args[key]) != have:
            raise ConversionError(f"model_args {key}={model_args[key]} disagrees with the state dict ({have})")
    sr = model_args.get("sample_rate", SAMPLE_RATE)
    if float(sr) != SAMPLE_RATE:
        raise ConversionError(f"sample_rate={sr}: jaxse models run at {SAMPLE_RATE} Hz")
    arch = model_args.get("architecture")
    if arch == "DCCRN-CL" and channels != (16, 32, 64, 128, 128, 128):
        raise ConversionError(f"architecture 'DCCRN-CL' but the encoders have {channels} channels")

    # The hop is a model argument, but it is also baked into the filters' scale: use both and check they agree.
    f = np.asarray(sd["encoder.filterbank._filters"], np.float64)[:, 0]
    unit = _asteroid_filters(n_fft, win, None)
    s_est = float((unit * unit).sum() / max((unit * f).sum(), 1e-30))  # filters = unit / s
    hop_est = win * n_fft / (4 * s_est * s_est)
    hop = int(model_args["stft_stride"]) if "stft_stride" in model_args else int(round(hop_est))
    if hop < 1 or not math.isclose(hop, hop_est, rel_tol=1e-3):
        raise ConversionError(f"the STFT filters' scale implies hop {hop_est:.4g}, not {hop} (stft_stride); not "
                              f"asteroid_filterbanks' STFT filters?")
    want = _asteroid_filters(n_fft, win, hop)
    for key in ("encoder.filterbank._filters", "decoder.filterbank._filters"):
        got = np.asarray(sd.get(key, np.zeros(0)), np.float64)
        if got.shape != (n_fft + 2, 1, win):
            raise ConversionError(f"{key} has shape {got.shape}, expected {(n_fft + 2, 1, win)}")
        err = float(np.abs(got[:, 0] - want).max())
        if err > 1e-5 * float(np.abs(want).max()):
            raise ConversionError(f"{key} differs from asteroid's sqrt-Hann STFT filters (n_fft {n_fft}, win {win}, "
                                  f"hop {hop}) by {err:.3g}: unsupported filterbank")
    out["hop"] = hop
    return out


def _asteroid_filters(n_fft: int, win: int, hop: int | None) -> np.ndarray:
    """asteroid_filterbanks STFTFB filters ``float64[n_fft + 2, win]`` (re rows, then im rows); ``hop=None``: unscaled
    (scale 1, but still 1/sqrt(2) on DC and Nyquist)."""
    from jaxse.signal import window

    k = np.arange(n_fft // 2 + 1)[:, None]
    n = (np.arange(win) + (n_fft - win) // 2)[None, :]
    ang = 2.0 * np.pi * ((k * n) % n_fft) / n_fft
    scale = np.ones(n_fft // 2 + 1)
    scale[[0, n_fft // 2]] = 1 / math.sqrt(2)
    if hop is not None:
        scale = scale / (0.5 * math.sqrt(win * n_fft / hop))
    w = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win))
    assert np.allclose(w, window("sqrt_hann", win), atol=1e-6)
    return np.concatenate([np.cos(ang) * scale[:, None], -np.sin(ang) * scale[:, None]], 0) * w[None]


class _Taker:
    """Pops tensors by key, checking shapes; remembers what was used."""

    def __init__(self, sd: Mapping[str, np.ndarray]):
        self.sd = dict(sd)
        self.used: set[str] = set()
        self.missing: list[str] = []

    def __call__(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        if key not in self.sd:
            self.missing.append(key)
            return np.zeros(shape, np.float32)
        self.used.add(key)
        v = np.asarray(self.sd[key])
        if tuple(v.shape) != tuple(shape):
            raise ConversionError(f"{key} has shape {tuple(v.shape)}, expected {tuple(shape)}")
        if v.dtype.kind != "f":
            raise ConversionError(f"{key} has dtype {v.dtype}, expected a floating-point tensor")
        return v.astype(np.float64)


def _cplx(re_: np.ndarray, im_: np.ndarray) -> np.ndarray:
    return (re_ + 1j * im_).astype(np.complex64)


def convert_asteroid_dccrnet(src: Any) -> tuple[str, dict, dict]:
    """asteroid ``DCCRNet`` weights -> ``(model_name, overrides, variables)`` for ``jaxse.models.get_model``.

    ``src``: a path to a ``torch.save`` file, asteroid's serialized dict (``state_dict`` + ``model_args``) or a bare
    state dict (``{key: array}``; numpy arrays or torch tensors). ``variables = {"params", "batch_stats"}`` of
    ``get_model(model_name, **overrides)`` (numpy arrays), so ``model.apply(variables, noisy)`` reproduces asteroid's
    eval-mode ``model(noisy)[:, 0]`` for ``noisy: float32[batch, samples]``.
    Raises ``ConversionError`` naming every missing or unused key, and any shape mismatch.
    """
    # Longer than a screen: the layer-by-layer mapping, in the network's order, reads as the table it is.
    import jax

    from jaxse.models import get_model, init_shapes
    from jaxse.models.dccrn_asteroid import VARIANTS

    sd, model_args = _unpack(src)
    fields = _infer_structure(sd, model_args)
    table = VARIANTS[ASTEROID_MODEL]
    overrides = {k: v for k, v in fields.items() if table.get(k, _default(k)) != v}
    model = get_model(ASTEROID_MODEL, **overrides)
    shapes = init_shapes(model, samples=model.min_samples)
    take = _Taker(sd)
    params: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    channels = fields["channels"]
    n = len(channels)
    kf, kt = 5, 2

    def bn_act(prefix, name_norm, name_act, c):
        parts = [take(f"{prefix}.norm.{p}_module.{t}", (c,)) for p in ("re", "im")
                 for t in ("weight", "bias", "running_mean", "running_var")]
        for p in ("re", "im"):  # an int counter; not needed for inference
            key = f"{prefix}.norm.{p}_module.num_batches_tracked"
            if key in take.sd:
                take.used.add(key)
        params[name_norm] = {"scale": np.stack([parts[0], parts[4]]).astype(np.float32),
                             "bias": np.stack([parts[1], parts[5]]).astype(np.float32)}
        stats[name_norm] = {"mean": np.stack([parts[2], parts[6]]).astype(np.float32),
                            "var": np.stack([parts[3], parts[7]]).astype(np.float32)}
        a = [take(f"{prefix}.activation.{p}_module.weight", (1,))[0] for p in ("re", "im")]
        params[name_act] = {"alpha": np.asarray(a, np.float32)}

    # encoders: Conv2d [C_out, C_in, kF, kT] -> [kT, kF, C_in, C_out]
    c_in = 1
    for i, c in enumerate(channels):
        p = f"masker.encoders.{i}"
        w = [take(f"{p}.conv.{m}_module.weight", (c, c_in, kf, kt)).transpose(3, 2, 1, 0) for m in ("re", "im")]
        params[f"encoders_{i}"] = {"kernel": _cplx(*w)}
        bn_act(p, f"enc_norms_{i}", f"enc_acts_{i}", c)
        c_in = c

    # bottleneck: complex LSTM stack and complex linear, with the flattening permutation
    c_last, f_last = channels[-1], model._freqs()[-1]
    width = c_last * f_last
    ours = np.arange(width)
    perm = (ours % c_last) * f_last + ours // c_last  # jaxse index f*C + c  <-  asteroid index c*F + f
    h = fields["rnn_units"]
    lstm: dict[str, Any] = {}
    d_in = width
    for layer in range(fields["rnn_layers"]):
        p = f"masker.encoders.{n}.rnn.rnns.{layer}"
        wi, wh, b = [], [], []
        for m in ("re", "im"):
            q = f"{p}.{m}_module.rnn"
            wi.append(take(f"{q}.weight_ih_l0", (4 * h, d_in)).T)
            wh.append(take(f"{q}.weight_hh_l0", (4 * h, h)).T)
            b.append(take(f"{q}.bias_ih_l0", (4 * h,)) + take(f"{q}.bias_hh_l0", (4 * h,)))
        if layer == 0:
            wi = [w[perm] for w in wi]
        lstm[f"layer{layer}"] = {"w_i": _cplx(*wi), "w_h": _cplx(*wh), "b": _cplx(*b)}
        d_in = h
    params["lstm"] = lstm
    p = f"masker.encoders.{n}.linear"
    k = [take(f"{p}.{m}_module.weight", (width, h)).T[:, perm] for m in ("re", "im")]
    bl = [take(f"{p}.{m}_module.bias", (width,))[perm] for m in ("re", "im")]
    params["proj"] = {"kernel": _cplx(*k), "bias": _cplx(bl[0] - bl[1], bl[0] + bl[1])}

    # decoders: ConvTranspose2d [C_in, C_out, kF, kT] -> flipped [kT, kF, C_in, C_out]
    outs = list(reversed(channels[:-1])) + [1]
    c_in = 2 * channels[-1]
    for i, c in enumerate(outs):
        last = i == n - 1
        p = "masker.output_layer.0" if last else f"masker.decoders.{i + 1}"
        sub = "" if last else ".deconv"
        w = [take(f"{p}{sub}.{m}_module.weight", (c_in, c, kf, kt))[:, :, ::-1, ::-1].transpose(3, 2, 0, 1)
             for m in ("re", "im")]
        params[f"decoders_{i}"] = {"kernel": _cplx(*w)}
        if last:
            bo = [take(f"{p}.{m}_module.bias", (c,)) for m in ("re", "im")]
            params[f"decoders_{i}"]["bias"] = _cplx(bo[0] - bo[1], bo[0] + bo[1])
        else:
            bn_act(p, f"dec_norms_{i}", f"dec_acts_{i}", c)
            c_in = 2 * c

    for key in ("encoder.filterbank._filters", "decoder.filterbank._filters", "encoder.filterbank.torch_window",
                "decoder.filterbank.torch_window"):
        if key in take.sd:
            take.used.add(key)
    unused = sorted(set(take.sd) - take.used)
    if take.missing or unused:
        msg = []
        if take.missing:
            msg.append(f"missing keys: {', '.join(take.missing)}")
        if unused:
            msg.append(f"unexpected (unmapped) keys: {', '.join(unused)}")
        raise ConversionError("asteroid DCCRNet state dict does not match the inferred model "
                              f"({ASTEROID_MODEL} {overrides}): " + "; ".join(msg))

    variables = {"params": params, "batch_stats": stats}
    want = jax.tree_util.tree_map(lambda s: (tuple(s.shape), np.dtype(s.dtype)), shapes)
    got = jax.tree_util.tree_map(lambda a: (tuple(a.shape), a.dtype), variables)
    if want != got:  # a bug here, not in the input
        raise ConversionError(f"internal error: converted tree does not match the model's: {got} vs {want}")
    return ASTEROID_MODEL, overrides, variables


def _default(field: str):
    from jaxse.models.dccrn_asteroid import DCCRNAsteroid

    return DCCRNAsteroid.__dataclass_fields__[field].default
