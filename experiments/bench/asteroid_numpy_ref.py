"""NumPy-only reference of asteroid 0.7.0 ``DCCRNet`` (the executable form of ASTEROID_DCCRN.md).

Written from the spec in ``experiments/bench/ASTEROID_DCCRN.md``; it is slow, float64 and
meant for checking, not for speed.  No torch import at module level: the forward pass takes
the model's state_dict as a ``dict[str, np.ndarray]`` (e.g. from ``jaxse.convert.torch_pickle``).

    >>> from experiments.bench.asteroid_numpy_ref import dccrnet_forward
    >>> y = dccrnet_forward(state, wav)          # wav [B, N] -> y [B, 1, N]

Also holds ``make_full_state_dict``: the seeded generator of the synthetic DCCRN-CL
parameters used for ``tests/data/asteroid/full_io.npz``.

Run in the peer venv to compare against asteroid itself:

    PEER_VENV/bin/python experiments/bench/asteroid_numpy_ref.py
"""

from __future__ import annotations

import re
from typing import Dict, Mapping, Tuple

import numpy as np

BN_EPS = 1e-5          # torch BatchNorm default
MAG_EPS = 1e-8         # asteroid_filterbanks.transforms.mag: sqrt(re^2 + im^2 + EPS)
ENC_STRIDE = (2, 1)    # every DCCRN architecture in asteroid 0.7.0 uses these
ENC_PAD = (2, 0)
DEC_OUT_PAD = (1, 0)


# --------------------------------------------------------------------------------------
# STFT filterbank (asteroid_filterbanks STFTFB, as described in the spec)
# --------------------------------------------------------------------------------------
def stft_window(kernel_size: int) -> np.ndarray:
    """Periodic Hann of length ``kernel_size``, square-rooted (float64)."""
    n = np.arange(kernel_size)
    return np.sqrt(0.5 - 0.5 * np.cos(2.0 * np.pi * n / kernel_size))


def stft_filters(n_filters: int = 512, kernel_size: int = 400, stride: int = 100) -> np.ndarray:
    """The [n_filters + 2, kernel_size] analysis (= synthesis) matrix, float32.

    Rows 0..n/2 are cos, rows n/2+1..n+1 are -sin of the DFT of size n_filters, evaluated at
    the centred taps (offset lpad = (n_filters - kernel_size) // 2), scaled by
    1 / (0.5 * sqrt(kernel_size * n_filters / stride)), times the window; the real DC and
    real Nyquist rows are further divided by sqrt(2).
    """
    cutoff = n_filters // 2 + 1
    lpad = (n_filters - kernel_size) // 2
    k = np.arange(cutoff)[:, None]
    n = (np.arange(kernel_size) + lpad)[None, :]
    # exact integer phase index keeps it identical to the DFT matrix entries
    ang = 2.0 * np.pi * ((k * n) % n_filters) / n_filters
    scale = 1.0 / (0.5 * np.sqrt(kernel_size * n_filters / stride))
    re = np.cos(ang) * scale
    im = -np.sin(ang) * scale
    re[0] /= np.sqrt(2.0)
    re[n_filters // 2] /= np.sqrt(2.0)
    return (np.concatenate([re, im], 0) * stft_window(kernel_size)[None, :]).astype(np.float32)


def stft(wav: np.ndarray, filters: np.ndarray, stride: int) -> np.ndarray:
    """wav [B, N] -> asteroid-style spectrum [B, 2*(n/2+1), frames] (re rows then im rows).

    No padding: frames = (N - kernel) // stride + 1.
    """
    k = filters.shape[-1]
    n_frames = (wav.shape[-1] - k) // stride + 1
    idx = np.arange(n_frames)[:, None] * stride + np.arange(k)[None, :]
    frames = wav[:, idx]                                   # [B, T, k]
    return np.einsum("ck,btk->bct", filters, frames)


def istft(spec: np.ndarray, filters: np.ndarray, stride: int) -> np.ndarray:
    """Transposed conv1d (overlap-add) with the same filters: [B, C, T] -> [B, (T-1)*stride + k]."""
    k = filters.shape[-1]
    b, _, t = spec.shape
    frames = np.einsum("ck,bct->btk", filters, spec)       # [B, T, k]
    out = np.zeros((b, (t - 1) * stride + k), dtype=frames.dtype)
    for i in range(t):
        out[:, i * stride:i * stride + k] += frames[:, i]
    return out


# --------------------------------------------------------------------------------------
# Real building blocks (torch conventions: NCHW, weights OIHW / IOHW for transposed)
# --------------------------------------------------------------------------------------
def conv2d(x: np.ndarray, w: np.ndarray, stride, pad, bias=None) -> np.ndarray:
    """Cross-correlation; x [B, Ci, F, T], w [Co, Ci, kF, kT] -> [B, Co, F', T']."""
    sf, st = stride
    pf, pt = pad
    co, ci, kf, kt = w.shape
    x = np.pad(x, ((0, 0), (0, 0), (pf, pf), (pt, pt)))
    fo = (x.shape[2] - kf) // sf + 1
    to = (x.shape[3] - kt) // st + 1
    out = np.zeros((x.shape[0], co, fo, to), dtype=np.result_type(x, w))
    for a in range(kf):
        for c in range(kt):
            patch = x[:, :, a:a + sf * (fo - 1) + 1:sf, c:c + st * (to - 1) + 1:st]
            out += np.einsum("bift,oi->boft", patch, w[:, :, a, c])
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def conv_transpose2d(x: np.ndarray, w: np.ndarray, stride, pad, out_pad, bias=None) -> np.ndarray:
    """x [B, Ci, F, T], w [Ci, Co, kF, kT]; out[s*i + k - p] += x[i] * w[k]."""
    sf, st = stride
    pf, pt = pad
    of, ot = out_pad
    ci, co, kf, kt = w.shape
    b, _, fi, ti = x.shape
    full_f = (fi - 1) * sf + kf + of
    full_t = (ti - 1) * st + kt + ot
    full = np.zeros((b, co, full_f, full_t), dtype=np.result_type(x, w))
    for a in range(kf):
        for c in range(kt):
            contrib = np.einsum("bift,io->boft", x, w[:, :, a, c])
            full[:, :, a:a + sf * (fi - 1) + 1:sf, c:c + st * (ti - 1) + 1:st] += contrib
    fo = (fi - 1) * sf - 2 * pf + kf + of
    to = (ti - 1) * st - 2 * pt + kt + ot
    out = full[:, :, pf:pf + fo, pt:pt + to]
    if bias is not None:
        out = out + bias[None, :, None, None]
    return out


def batchnorm_eval(x, p: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per-channel (dim 1) eval-mode BatchNorm with running statistics."""
    sh = (1, -1) + (1,) * (x.ndim - 2)
    inv = 1.0 / np.sqrt(p["running_var"].astype(np.float64) + BN_EPS)
    return (x - p["running_mean"].reshape(sh)) * (inv * p["weight"]).reshape(sh) + p["bias"].reshape(sh)


def prelu(x, a):
    return np.where(x >= 0, x, a.reshape(()) * x)


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def lstm(x: np.ndarray, w_ih, w_hh, b_ih, b_hh) -> np.ndarray:
    """Single-layer unidirectional torch LSTM, zero initial state, batch-first x [B, T, I]."""
    h_size = w_hh.shape[1]
    b, t, _ = x.shape
    xi = x @ w_ih.T + b_ih + b_hh                          # [B, T, 4H], gate order i, f, g, o
    h = np.zeros((b, h_size))
    c = np.zeros((b, h_size))
    out = np.empty((b, t, h_size))
    for s in range(t):
        g = xi[:, s] + h @ w_hh.T
        i_g = sigmoid(g[:, :h_size])
        f_g = sigmoid(g[:, h_size:2 * h_size])
        g_g = np.tanh(g[:, 2 * h_size:3 * h_size])
        o_g = sigmoid(g[:, 3 * h_size:])
        c = f_g * c + i_g * g_g
        h = o_g * np.tanh(c)
        out[:, s] = h
    return out


# --------------------------------------------------------------------------------------
# Complex wrappers: asteroid's ComplexMultiplicationWrapper / OnReIm on (re, im) pairs
# --------------------------------------------------------------------------------------
def cmul_wrap(f_re, f_im, xr, xi):
    """F(a + ib) = f_re(a) - f_im(b) + i (f_re(b) + f_im(a)); each f includes its own bias."""
    return f_re(xr) - f_im(xi), f_re(xi) + f_im(xr)


def _sub(state: Mapping[str, np.ndarray], prefix: str) -> Dict[str, np.ndarray]:
    n = len(prefix)
    return {k[n:]: np.asarray(v, dtype=np.float64) if np.asarray(v).dtype.kind == "f" else np.asarray(v)
            for k, v in state.items() if k.startswith(prefix)}


def _count(state, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in state for m in [rx.match(k)] if m})


def masker_forward(state: Mapping[str, np.ndarray], spec_re: np.ndarray, spec_im: np.ndarray,
                   return_intermediates: bool = False):
    """DCCRMaskNet on a complex spectrum [B, F, T] (F divisible by 2**n_enc) -> mask [B, 1, F, T]."""
    n_enc = _count(state, r"masker\.encoders\.(\d+)\.conv\.")
    inter = {}
    xr, xi = spec_re[:, None], spec_im[:, None]            # [B, 1, F, T]
    skips = []
    for i in range(n_enc):
        p = _sub(state, f"masker.encoders.{i}.")
        xr, xi = cmul_wrap(lambda z: conv2d(z, p["conv.re_module.weight"], ENC_STRIDE, ENC_PAD),
                           lambda z: conv2d(z, p["conv.im_module.weight"], ENC_STRIDE, ENC_PAD), xr, xi)
        xr = batchnorm_eval(xr, _sub(p, "norm.re_module."))
        xi = batchnorm_eval(xi, _sub(p, "norm.im_module."))
        xr = prelu(xr, p["activation.re_module.weight"])
        xi = prelu(xi, p["activation.im_module.weight"])
        skips.append((xr, xi))
        inter[f"enc{i}"] = (xr, xi)

    # ---- complex LSTM bottleneck -------------------------------------------------------
    p = _sub(state, f"masker.encoders.{n_enc}.")
    b, ch, fr, t = xr.shape
    zr = xr.transpose(0, 3, 1, 2).reshape(b, t, ch * fr)   # feature index = c * F + f
    zi = xi.transpose(0, 3, 1, 2).reshape(b, t, ch * fr)
    n_rnn = _count(p, r"rnn\.rnns\.(\d+)\.")
    for layer in range(n_rnn):
        q = _sub(p, f"rnn.rnns.{layer}.")

        def run(which, z, q=q):
            return lstm(z, q[f"{which}.rnn.weight_ih_l0"], q[f"{which}.rnn.weight_hh_l0"],
                        q[f"{which}.rnn.bias_ih_l0"], q[f"{which}.rnn.bias_hh_l0"])
        zr, zi = cmul_wrap(lambda z: run("re_module", z), lambda z: run("im_module", z), zr, zi)
    zr, zi = cmul_wrap(lambda z: z @ p["linear.re_module.weight"].T + p["linear.re_module.bias"],
                       lambda z: z @ p["linear.im_module.weight"].T + p["linear.im_module.bias"], zr, zi)
    xr = zr.reshape(b, t, ch, fr).transpose(0, 2, 3, 1)
    xi = zi.reshape(b, t, ch, fr).transpose(0, 2, 3, 1)
    inter["rnn"] = (xr, xi)

    # ---- decoders: decoders[0] is Identity, then n_enc - 1 deconv blocks ---------------
    for j in range(n_enc):
        skr, ski = skips[n_enc - 1 - j]
        if j > 0:
            p = _sub(state, f"masker.decoders.{j}.")
            xr, xi = cmul_wrap(
                lambda z: conv_transpose2d(z, p["deconv.re_module.weight"], ENC_STRIDE, ENC_PAD, DEC_OUT_PAD),
                lambda z: conv_transpose2d(z, p["deconv.im_module.weight"], ENC_STRIDE, ENC_PAD, DEC_OUT_PAD),
                xr, xi)
            xr = batchnorm_eval(xr, _sub(p, "norm.re_module."))
            xi = batchnorm_eval(xi, _sub(p, "norm.im_module."))
            xr = prelu(xr, p["activation.re_module.weight"])
            xi = prelu(xi, p["activation.im_module.weight"])
            inter[f"dec{j}"] = (xr, xi)
        # skip: decoder output channels first, then the encoder output (complex channels)
        xr = np.concatenate([xr, skr], axis=1)
        xi = np.concatenate([xi, ski], axis=1)

    p = _sub(state, "masker.output_layer.0.")
    mr, mi = cmul_wrap(
        lambda z: conv_transpose2d(z, p["re_module.weight"], ENC_STRIDE, ENC_PAD, DEC_OUT_PAD, p["re_module.bias"]),
        lambda z: conv_transpose2d(z, p["im_module.weight"], ENC_STRIDE, ENC_PAD, DEC_OUT_PAD, p["im_module.bias"]),
        xr, xi)
    inter["mask_raw"] = (mr, mi)
    # BDT bound: tanh(|M|) e^{i angle(M)}, |M| = sqrt(re^2 + im^2 + 1e-8)
    mag = np.sqrt(mr * mr + mi * mi + MAG_EPS)
    phase = np.arctan2(mi, mr)
    mr, mi = np.tanh(mag) * np.cos(phase), np.tanh(mag) * np.sin(phase)
    if return_intermediates:
        return (mr, mi), inter
    return mr, mi


def dccrnet_forward(state: Mapping[str, np.ndarray], wav: np.ndarray, stft_stride: int = 100,
                    return_intermediates: bool = False):
    """asteroid DCCRNet.forward in eval mode. wav [B, N] -> [B, 1, N] float32."""
    wav = np.asarray(wav, dtype=np.float64)
    if wav.ndim == 1:
        wav = wav[None]
    filters = np.asarray(state["encoder.filterbank._filters"], dtype=np.float64)[:, 0]   # [2*(n/2+1), k]
    dec_filters = np.asarray(state["decoder.filterbank._filters"], dtype=np.float64)[:, 0]
    spec = stft(wav, filters, stft_stride)                 # [B, 2*(n/2+1), T]
    nb = spec.shape[1] // 2
    sr, si = spec[:, :nb - 1], spec[:, nb:2 * nb - 1]      # drop the Nyquist bin
    (mr, mi), inter = masker_forward(state, sr, si, return_intermediates=True)
    # mask [B, 1, F, T] times the spectrum, complex product
    yr = mr * sr[:, None] - mi * si[:, None]
    yi = mr * si[:, None] + mi * sr[:, None]
    b, _, f, t = yr.shape
    zero = np.zeros((b, 1, 1, t))
    y = np.concatenate([yr, zero, yi, zero], axis=2)       # Nyquist re/im = 0, [B, 1, 2*(F+1), T]
    out = istft(y.reshape(b, 2 * (f + 1), t), dec_filters, stft_stride)
    n = wav.shape[-1]
    if out.shape[-1] >= n:
        out = out[:, :n]
    else:
        out = np.pad(out, ((0, 0), (0, n - out.shape[-1])))
    out = out[:, None].astype(np.float32)
    if return_intermediates:
        inter.update(spec=spec, mask=(mr, mi))
        return out, inter
    return out


# --------------------------------------------------------------------------------------
# Synthetic, seeded DCCRN-CL parameters (for tests/data/asteroid/full_io.npz)
# --------------------------------------------------------------------------------------
def make_full_state_dict(shapes: Mapping[str, Tuple[int, ...]], seed: int = 1234,
                         stft_stride: int = 100) -> Dict[str, np.ndarray]:
    """Deterministic state dict for the given {key: shape}, without torch.

    STFT buffers (``*filterbank._filters``, ``*filterbank.torch_window``) are the real ones
    (from n_filters = rows - 2, kernel = taps, ``stft_stride``) and draw nothing from the
    generator.  Every other key, in sorted order, draws from ``np.random.default_rng(seed)``:

    - ``num_batches_tracked``: int64 0, no draw
    - BatchNorm ``running_var``: uniform(0.5, 1.5); ``running_mean``: 0.1 N(0,1)
    - BatchNorm ``weight`` (key contains ``.norm.``): 1 + 0.1 N(0,1); its ``bias``: 0.1 N(0,1)
    - PReLU ``activation.*.weight``: 0.25 + 0.05 N(0,1)
    - any other ``bias``: 0.1 N(0,1)
    - 4-D conv weights: N(0,1)/sqrt(fan_in), fan_in = shape[1]*kF*kT for Conv2d (``.conv.``)
      and shape[0]*kF*kT/2 for ConvTranspose2d (``deconv`` / ``output_layer``; freq stride 2)
    - 2-D (LSTM / linear) weights: N(0,1)/sqrt(shape[1])
    All float arrays are float32.
    """
    rng = np.random.default_rng(seed)
    out: Dict[str, np.ndarray] = {}
    for key in sorted(shapes):
        shape = tuple(int(s) for s in shapes[key])
        if key.endswith("filterbank._filters"):
            out[key] = stft_filters(shape[0] - 2, shape[-1], stft_stride)[:, None, :]
            continue
        if key.endswith("filterbank.torch_window"):
            out[key] = stft_window(shape[0]).astype(np.float32)
            continue
        if key.endswith("num_batches_tracked"):
            out[key] = np.zeros(shape, dtype=np.int64)
            continue
        if key.endswith("running_var"):
            v = rng.uniform(0.5, 1.5, size=shape)
        elif key.endswith("running_mean"):
            v = 0.1 * rng.standard_normal(shape)
        elif ".norm." in key and key.endswith("weight"):
            v = 1.0 + 0.1 * rng.standard_normal(shape)
        elif ".activation." in key:
            v = 0.25 + 0.05 * rng.standard_normal(shape)
        elif key.endswith("bias") or "bias_" in key.rsplit(".", 1)[-1]:
            v = 0.1 * rng.standard_normal(shape)
        elif len(shape) == 4:
            k = shape[2] * shape[3]
            fan = shape[1] * k if ".conv." in key else shape[0] * k / 2.0
            v = rng.standard_normal(shape) / np.sqrt(fan)
        elif len(shape) == 2:
            v = rng.standard_normal(shape) / np.sqrt(shape[1])
        else:
            v = 0.1 * rng.standard_normal(shape)
        out[key] = np.asarray(v, dtype=np.float32)
    return out


if __name__ == "__main__":  # numerical check against asteroid (peer venv only)
    import sys

    sys.path.insert(0, __import__("os").path.dirname(__file__))
    from make_asteroid_vectors import build_dccrnet, torch_forward  # noqa: E402  (imports torch)

    rng = np.random.default_rng(0)
    worst = 0.0
    for name, kwargs in [("DCCRN-CL torch init", dict(arch="DCCRN-CL")),
                         ("DCCRN-CL synthetic", dict(arch="DCCRN-CL", synthetic=True)),
                         ("tiny (test vector model)", dict(arch="tiny"))]:
        model, stride = build_dccrnet(**kwargs)
        state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
        n = 16000 if kwargs["arch"] != "tiny" else 8000
        wav = (0.1 * rng.standard_normal((2, n))).astype(np.float32)
        ref = torch_forward(model, wav)
        ours = dccrnet_forward(state, wav, stft_stride=stride)
        err = float(np.max(np.abs(ours - ref)))
        worst = max(worst, err)
        print(f"{name}: output {ours.shape}, max|ref| {np.max(np.abs(ref)):.4g}, max abs err {err:.3g}")
    print("PASS" if worst < 1e-4 else "FAIL", f"worst {worst:.3g}")
    sys.exit(0 if worst < 1e-4 else 1)
