"""The jaxse tour: one HTML page that shows, part by part, what CRN and DCCRN are made of.

    python experiments/tour.py out=DIR [seconds=2.0] [small=false] [seed=0]

Writes ``DIR/index.html`` with its PNG figures and WAV files beside it; open it in a browser. One section per
topic: dilated causal convolution, activations (ELU, ReLU, PReLU), the STFT, the complex convolution, complex batch
normalisation, the complex LSTM, the training target (masks), the SI-SNR loss, and what the shipped model does.
Each section gives the equation, the lines of jaxse that compute it (quoted from the library when the page is
built, with ``inspect.getsource``, so they never go stale), a figure computed by running that code, and checks
(numeric assertions shown as PASS/FAIL with their values). ``DIR/checks.json`` holds the same checks; the command
exits with status 1 if one fails.

Uses the demo corpus (``jaxse/data/demo``) and the shipped model (``Enhancer.from_checkpoint()``) only: no
download. ``seconds``: length of the demo clip; ``small=true``: the reduced build of the test (a 1 s clip, shorter
sequences). Runs on CPU in well under two minutes.
"""
from __future__ import annotations

import html
import inspect
import json
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from jaxse import cli  # noqa: E402

PROG = "experiments/tour.py"
KEYS = [
    cli.Key("out", required=True, help="folder for index.html, its figures and audio"),
    cli.Key("seconds", float, 2.0, min=0.5, help="length of the demo clip (s)"),
    cli.Key("small", bool, False, help="reduced build (the test's): a 1 s clip, shorter sequences"),
    cli.Key("seed", int, 0, help="seed of the random inputs and weights"),
]
#: The demo clip: a test-split utterance and a test-split noise, mixed at ``SNR_DB``.
CLEAN_FILE, NOISE_FILE, SNR_DB = "festival-cmu-us-slt-arctic-hts_0000.flac", "opensfx-11-mining-machinery.flac", 5.0
#: DCCRN's STFT (jaxse.models.dccrn).
N_FFT, WIN, HOP = 512, 400, 100


# ----------------------------------------------------------------------------------------------------------------
# Page model
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Check:
    """A numeric assertion: ``what`` (the claim), ``value`` (what was measured, as text), ``passed``."""

    what: str
    value: str
    passed: bool


@dataclass
class Section:
    key: str
    title: str
    equation: str  # one or two lines, HTML (Unicode maths)
    text: str  # a short paragraph, HTML
    sources: list[Any]  # library objects whose source is quoted
    figure: str  # PNG file name, relative to the page
    checks: list[Check] = field(default_factory=list)
    extra: str = ""  # more HTML after the checks (tables, matrices, audio players)


def check(what: str, value: float, ok: bool, fmt: str = "{:.3g}") -> Check:
    return Check(what, fmt.format(value), bool(ok))


def quote(obj) -> tuple[str, str]:
    """``(label "path:line name", source)`` of a library object, read now from the installed code."""
    obj = inspect.unwrap(obj)
    lines, start = inspect.getsourcelines(obj)
    path = Path(inspect.getsourcefile(obj)).resolve()
    root = Path(__file__).resolve().parent.parent
    try:
        path = path.relative_to(root)
    except ValueError:
        pass
    return f"{path}:{start} {obj.__qualname__}", textwrap.dedent("".join(lines))


# ----------------------------------------------------------------------------------------------------------------
# Shared inputs and plotting
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Context:
    out: Path
    small: bool
    rng: np.random.Generator
    clean: np.ndarray  # float32[samples], 16 kHz
    noise: np.ndarray
    noisy: np.ndarray
    plt: Any

    def save(self, fig, name: str) -> str:
        fig.savefig(self.out / name, dpi=80, bbox_inches="tight")
        self.plt.close(fig)
        return name


def demo_clip(seconds: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(clean, scaled noise, noisy)`` float32[samples] of the demo corpus's test split at ``SNR_DB``."""
    import soundfile as sf

    from jaxse.data import demo

    def read(kind, name):
        path = next(p for p in demo.paths(kind, "test") if Path(p).name == name)
        return sf.read(path, dtype="float32")[0]

    clean, noise = read("clean", CLEAN_FILE), read("noise", NOISE_FILE)
    n = min(len(clean), int(seconds * 16000))
    clean = clean[:n]
    noise = np.tile(noise, -(-n // len(noise)))[:n]
    noise = noise * np.sqrt(np.mean(clean ** 2) / (np.mean(noise ** 2) * 10 ** (SNR_DB / 10)))
    noisy = clean + noise
    g = min(1.0, 0.99 / np.abs(noisy).max())
    return (clean * g).astype(np.float32), (noise * g).astype(np.float32), (noisy * g).astype(np.float32)


def db(spec) -> np.ndarray:
    return 20 * np.log10(np.abs(np.asarray(spec)) + 1e-8)


def spectrogram(ax, spec, title, fig, *, vmin=-60, vmax=None, cmap="magma", label="magnitude (dB)", values=None):
    """Draw ``spec: [frames, bins]`` (complex: in dB; or ``values`` as given) against time (s) and frequency (kHz)."""
    v = db(spec) if values is None else np.asarray(values)
    if vmax is None:
        vmax = float(np.max(v))
    frames, bins = v.shape
    im = ax.imshow(v.T, origin="lower", aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax,
                   extent=[0, frames * HOP / 16000, 0, (bins - 1) * 16000 / N_FFT / 1000])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (kHz)")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label=label)


def stft(x):
    from jaxse import signal
    return np.asarray(signal.stft(np.asarray(x)[None], n_fft=N_FFT, hop=HOP, win_length=WIN)[0])


def istft(spec, length):
    from jaxse import signal
    return np.asarray(signal.istft(np.asarray(spec)[None], n_fft=N_FFT, hop=HOP, win_length=WIN, length=length)[0])


def si_snr(est, ref) -> float:
    from jaxse.losses import si_snr as f
    return float(f(np.asarray(est, np.float32)[None], np.asarray(ref, np.float32)[None])[0])


# ----------------------------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------------------------
def sec_causal(ctx: Context) -> Section:
    import jax
    import jax.numpy as jnp

    from jaxse.nn import TCN, causal_conv1d, conv2d, receptive_field

    t, t0, k, layers = 40, 30, 3, 3
    x = jnp.zeros((1, t, 1), jnp.float32)
    ones = jnp.ones((k, 1, 1), jnp.float32)

    def non_causal(x, n):  # k = 3, one frame of look-back and one of look-ahead per layer
        y = x[..., None]
        for _ in range(n):
            y = conv2d(y, ones[:, None], time_pad=(1, 1), lowering="xla")
        return y[..., 0]

    def causal(x, n, dilations):
        for d in dilations[:n]:
            x = causal_conv1d(x, ones, d)[0]
        return x

    stacks = {"non-causal (k=3, centred)": lambda x, n: non_causal(x, n),
              "causal (k=3, d=1)": lambda x, n: causal(x, n, (1, 1, 1)),
              "dilated causal (k=3, d=1, 2, 4)": lambda x, n: causal(x, n, (1, 2, 4))}
    deps = {}
    for name, f in stacks.items():
        deps[name] = np.stack([np.asarray(jax.grad(lambda x: f(x, n)[0, t0, 0])(x))[0, :, 0]
                               for n in range(1, layers + 1)])
    fig, axes = ctx.plt.subplots(3, 1, figsize=(9, 6.2), sharex=True)
    for ax, (name, d) in zip(axes, deps.items()):
        im = ax.imshow(d / d.max(axis=1, keepdims=True), aspect="auto", cmap="Blues", vmin=0, vmax=1,
                       extent=[-t0 - 0.5, t - t0 - 0.5, layers + 0.5, 0.5])
        ax.axvline(0, color="crimson", lw=1.5)
        ax.set_ylabel("layers")
        ax.set_yticks(range(1, layers + 1))
        ax.set_title(f"{name}: output frame t (red line) depends on input frames t'", fontsize=10)
        fig.colorbar(im, ax=ax, label="∂y_t/∂x_t' (norm.)")
    axes[-1].set_xlabel("input frame offset t' − t (frames; 1 frame = 6.25 ms at DCCRN's hop)")
    axes[-1].set_xlim(-18, 6)
    fig.tight_layout()

    dil = deps["dilated causal (k=3, d=1, 2, 4)"][-1]
    seen = np.flatnonzero(dil > 0) - t0
    formula = receptive_field(k, (1, 2, 4))
    future = max(float(np.abs(d[:, t0 + 1:]).max()) for n, d in deps.items() if n.startswith(("causal", "dilated")))
    lookahead = int(np.flatnonzero(deps["non-causal (k=3, centred)"][-1] > 0).max() - t0)

    model = TCN(4, 3, (1, 2, 4))
    xs = jnp.asarray(ctx.rng.standard_normal((1, 12 if ctx.small else 24, 2)), jnp.float32)
    v = model.init(jax.random.PRNGKey(0), xs)
    offline, _ = model.apply(v, xs)
    step = jax.jit(lambda v, x_t, s: model.apply(v, x_t, s, method=TCN.step))
    state, frames = model.initial_state(1), []
    for i in range(xs.shape[1]):
        y_t, state = step(v, xs[:, i], state)
        frames.append(y_t)
    stream_err = float(jnp.abs(jnp.stack(frames, 1) - offline).max())
    return Section(
        "causal", "Causal convolution and dilation",
        "y[t] = b + Σ<sub>j=0..k−1</sub> w[j] · x[t − (k−1−j)·d]<br>"
        "receptive field of a stack: R = 1 + Σ<sub>i</sub> (k−1)·d<sub>i</sub> frames",
        "A causal convolution pads only the past, so frame <i>t</i> never sees a later frame: a streaming model can "
        "emit it as soon as it arrives. Each causal layer of kernel <i>k</i> adds (k−1)·d frames of history; "
        "doubling the dilation per layer (1, 2, 4, ...) makes that history grow exponentially with depth at the "
        "same cost per layer. The CRN and DCCRN encoders use causal (k=2 in time) convolutions; "
        "<code>jaxse.nn.TCN</code> stacks dilated residual blocks whose streaming state is the last (k−1)·d "
        "frames of each layer. The figure is the gradient of one output frame with respect to every input frame.",
        [causal_conv1d, receptive_field],
        ctx.save(fig, "causal.png"),
        [check(f"measured receptive field of k=3, d=(1,2,4) = formula {formula} frames", len(seen),
               len(seen) == formula and seen.min() == -(formula - 1), "{:.0f} frames"),
         check("causal stacks: largest |gradient| on a future frame = 0", future, future == 0.0),
         check("non-causal stack of 3 layers looks 3 frames ahead", lookahead, lookahead == 3, "{:.0f} frames"),
         check("TCN streaming step (state = last (k−1)d frames) = offline, max |error| < 1e-5", stream_err,
               stream_err < 1e-5)])


def sec_activations(ctx: Context) -> Section:
    import jax
    import jax.numpy as jnp

    from jaxse.models.crn import CRN
    from jaxse.nn.activation import _prelu

    x = jnp.linspace(-4.0, 3.0, 701)
    a = jnp.float32(0.25)
    fns = {"ReLU": jax.nn.relu, "ELU (α=1)": jax.nn.elu, "PReLU (a=0.25)": lambda v: _prelu(v, a)}
    fig, axes = ctx.plt.subplots(1, 2, figsize=(10, 3.6))
    for name, f in fns.items():
        axes[0].plot(x, f(x), label=name)
        axes[1].plot(x, jax.vmap(jax.grad(f))(x), label=name)
    axes[0].set_ylabel("f(x) (a.u.)")
    axes[1].set_ylabel("df/dx (1)")
    for ax, title in zip(axes, ("activation", "its derivative")):
        ax.set_xlabel("pre-activation x (a.u.)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    h = 1e-4
    elu_jump = abs(float(jax.grad(jax.nn.elu)(-h) - jax.grad(jax.nn.elu)(h)))
    relu_dead = float(jnp.abs(jax.vmap(jax.grad(jax.nn.relu))(x[x < 0])).max())
    z = jnp.asarray(ctx.rng.standard_normal(64) + 1j * ctx.rng.standard_normal(64), jnp.complex64)
    split = jnp.abs(_prelu(z, a) - (_prelu(z.real, a) + 1j * _prelu(z.imag, a))).max()
    elu_mean = float(jax.nn.elu(jnp.asarray(ctx.rng.standard_normal(100000), jnp.float32)).mean())
    relu_mean = float(jax.nn.relu(jnp.asarray(ctx.rng.standard_normal(100000), jnp.float32)).mean())
    return Section(
        "activations", "Activations: ELU, ReLU, PReLU",
        "ReLU(x) = max(0, x) &nbsp;&nbsp; ELU(x) = x if x &gt; 0 else α(e<sup>x</sup> − 1) &nbsp;&nbsp; "
        "PReLU(x) = x if x ≥ 0 else a·x (a learned)<br>complex input: applied to Re and Im separately",
        "CRN uses ELU (Tan &amp; Wang, 2018): unlike ReLU its gradient for negative inputs is not zero (no dead "
        "units), its derivative is continuous at 0, and its negative outputs pull the mean activation towards "
        "zero, which helps the next layer's BatchNorm and speeds up training. DCCRN uses PReLU, whose negative slope "
        "is learned; on a complex feature map it acts on the real and imaginary parts separately.",
        [CRN.encode_layer, _prelu],
        ctx.save(fig, "activations.png"),
        [check("ELU: derivative continuous at 0, |f'(−1e-4) − f'(1e-4)| < 1e-3", elu_jump, elu_jump < 1e-3),
         check("ReLU: gradient for x < 0 is exactly 0 (a 'dead' input)", relu_dead, relu_dead == 0.0),
         check("mean output on N(0, 1) input: ELU closer to 0 than ReLU", elu_mean,
               abs(elu_mean) < abs(relu_mean), "ELU {:.3f}" + f", ReLU {relu_mean:.3f}"),
         check("complex PReLU = PReLU(Re) + i PReLU(Im), max |difference|", float(split), float(split) == 0.0)])


def sec_stft(ctx: Context) -> Section:
    from jaxse import signal

    spec = stft(ctx.noisy)
    rec = istft(spec, len(ctx.noisy))
    err = rec - ctx.noisy
    w = signal.window("sqrt_hann", WIN)
    frames = 8
    ola = np.zeros((frames - 1) * HOP + WIN)
    for t in range(frames):
        ola[t * HOP:t * HOP + WIN] += w ** 2
    interior = ola[WIN - HOP:(frames - 1) * HOP + HOP]
    ripple = float((interior.max() - interior.min()) / interior.mean())

    fig, axes = ctx.plt.subplots(2, 2, figsize=(11, 7))
    spectrogram(axes[0, 0], spec, "|X[t, f]| of the noisy demo clip", fig)
    loud = db(spec) > db(spec).max() - 45  # the phase of a near-silent bin is noise: left blank
    spectrogram(axes[0, 1], spec, "phase ∠X[t, f] (bins within 45 dB of the peak)", fig,
                values=np.where(loud, np.angle(spec), np.nan), vmin=-np.pi, vmax=np.pi, cmap="twilight",
                label="phase (rad)")
    ms = np.arange(len(ola)) / 16.0
    ax = axes[1, 0]
    for t in range(frames):
        ax.plot(ms[t * HOP:t * HOP + WIN], w ** 2, color="0.7", lw=0.8)
    ax.plot(np.arange(WIN) / 16.0, w, label="w (sqrt-Hann, analysis = synthesis)")
    ax.plot(np.arange(WIN) / 16.0, w ** 2, label="w² (Hann)")
    ax.plot(ms, ola, color="k", label="Σ_t w²[n − t·hop] (hop 6.25 ms)")
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("window value (1)")
    ax.set_title("the window pair and its overlap-add")
    ax.set_ylim(0, 2.8)
    ax.legend(fontsize=8, loc="upper right")
    ax = axes[1, 1]
    ax.plot(np.arange(len(err)) / 16000, err)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("x̂ − x (full scale)")
    ax.set_title("reconstruction error of istft(stft(x))")
    fig.tight_layout()
    max_err = float(np.abs(err).max())
    return Section(
        "stft", "The STFT: magnitude and phase",
        "X[t, f] = Σ<sub>n</sub> w[n] · x[t·H − (W−H) + n] · e<sup>−2πi f n / N</sup> &nbsp;&nbsp; "
        "(W = 400, H = 100, N = 512: 25 ms windows every 6.25 ms)<br>"
        "x̂[n] = Σ<sub>t</sub> w[n − tH] · IDFT(X[t])[n − tH] / Σ<sub>t</sub> w²[n − tH]",
        "The STFT cuts the signal into overlapping windowed frames and takes the DFT of each: a complex number per "
        "frame and frequency bin, whose <i>magnitude</i> |X| says how much energy is there and whose <i>phase</i> "
        "∠X where in its cycle the wave is. CRN predicts a magnitude and reuses the noisy phase; DCCRN works on "
        "the complex spectrum, so it can correct the phase too. With the sqrt-Hann window for analysis and "
        "synthesis, the squares overlap-add to a constant and istft(stft(x)) = x.",
        [signal.window, signal.stft],
        ctx.save(fig, "stft.png"),
        [check("perfect reconstruction: max |istft(stft(x)) − x| < 1e-5", max_err, max_err < 1e-5),
         check("Σ w² overlap-adds to a constant: (max − min) / mean < 1e-6", ripple, ripple < 1e-6)])


def sec_complex_conv(ctx: Context) -> Section:
    import jax.numpy as jnp

    from jaxse.nn import conv2d
    from jaxse.nn.products import complex_bilinear, complex_parts

    spec = stft(ctx.noisy)[: 60 if ctx.small else 200, 1:]  # DCCRN's input: the DC bin dropped
    x = jnp.asarray(spec / np.abs(spec).std(), jnp.complex64)[None, :, :, None]
    rng = ctx.rng
    w = jnp.asarray((rng.standard_normal((2, 5, 1, 4)) + 1j * rng.standard_normal((2, 5, 1, 4))) / 4, jnp.complex64)
    conv = dict(stride_f=2, pad_f=(2, 2), lowering="xla", time_pad=(1, 0))  # DCCRN's first encoder layer
    y = np.asarray(conv2d(x, w, impl="native", **conv))
    real = lambda a, b: np.asarray(conv2d(a, b, impl="native", **conv))  # noqa: E731  (real operands: real conv)
    two = (real(x.real, w.real) - real(x.imag, w.imag)) + 1j * (real(x.imag, w.real) + real(x.real, w.imag))
    gauss = np.asarray(conv2d(x, w, impl="gauss", **conv))
    ref = _conv_float64(np.asarray(x), np.asarray(w))
    scale = np.abs(ref).max()
    e_two = np.abs(two - y) / scale
    errs = {"XLA complex64 convolution": y, "W_r, W_i on X_r, X_i (4 real products)": two,
            "Gauss form (3 real products)": gauss}
    errs = {k: np.abs(v - ref) / scale for k, v in errs.items()}
    e_gauss = errs["Gauss form (3 real products)"]

    fig, axes = ctx.plt.subplots(1, 2, figsize=(11, 3.8))
    spectrogram(axes[0], two[0, :, :, 0], "|output channel 0| from two real kernels", fig,
                vmin=-40, values=db(two[0, :, :, 0] / scale), label="magnitude (dB re max)")
    axes[0].set_ylabel("frequency (kHz, stride-2 bins)")
    axes[0].images[0].set_extent([0, two.shape[1] * HOP / 16000, 0, 8])
    bins = np.logspace(-12, -5, 50)
    for name, e in errs.items():
        axes[1].hist(e.ravel() + 1e-12, bins=bins, histtype="step", lw=1.5, label=name)
    axes[1].set_xscale("log")
    axes[1].set_xlabel("|y − y_float64| / max|y| (1)")
    axes[1].set_ylabel("output values (count)")
    axes[1].set_title("float32 rounding error against a float64 reference")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return Section(
        "complex-conv", "The complex convolution",
        "(W<sub>r</sub> + iW<sub>i</sub>) ∗ (X<sub>r</sub> + iX<sub>i</sub>) = (W<sub>r</sub>∗X<sub>r</sub> − "
        "W<sub>i</sub>∗X<sub>i</sub>) + i(W<sub>r</sub>∗X<sub>i</sub> + W<sub>i</sub>∗X<sub>r</sub>)<br>"
        "Gauss: k1 = (X<sub>r</sub>+X<sub>i</sub>)∗W<sub>r</sub>, k2 = X<sub>r</sub>∗(W<sub>i</sub>−W<sub>r</sub>), "
        "k3 = X<sub>i</sub>∗(W<sub>r</sub>+W<sub>i</sub>); Re = k1 − k3, Im = k1 + k2",
        "A complex convolution is two real kernels, W<sub>r</sub> and W<sub>i</sub>, each convolved with the real "
        "and the imaginary part of the input and combined like the product (a+ib)(c+id). The complex structure "
        "ties the four products together, which is what makes DCCRN's layers rotate and scale phases consistently. "
        "jaxse splits every complex product in one place (<code>complex_parts</code>); the default "
        "<code>impl=\"gauss\"</code> needs three real products instead of four. Here: DCCRN's first encoder layer "
        "(kernel 2 × 5, stride 2 in frequency) on the noisy spectrum.",
        [complex_parts, complex_bilinear],
        ctx.save(fig, "complex_conv.png"),
        [check("two real kernels = complex convolution: max relative error < 1e-6", float(e_two.max()),
               e_two.max() < 1e-6),
         check("Gauss 3-product form = float64 complex convolution: max relative error < 1e-5",
               float(e_gauss.max()), e_gauss.max() < 1e-5)])


def _conv_float64(x, w) -> np.ndarray:
    """DCCRN's first encoder convolution (causal 2 x 5 kernel, stride 2 and padding 2 in frequency) as a float64 sum
    of shifted products: ``x: [1, time, freq, 1]``, ``w: [2, 5, 1, c]`` -> ``[1, time, freq_out, c]``."""
    xp = np.pad(x.astype(np.complex128), [(0, 0), (1, 0), (2, 2), (0, 0)])
    t, f_out = x.shape[1], (x.shape[2] + 4 - 5) // 2 + 1
    y = np.zeros((1, t, f_out, w.shape[-1]), np.complex128)
    for dt in range(w.shape[0]):
        for k in range(w.shape[1]):
            y += xp[:, dt:dt + t, k:k + 2 * f_out - 1:2] @ w[dt, k].astype(np.complex128)
    return y


def _cov(z) -> np.ndarray:
    z = np.asarray(z).ravel()
    return np.cov(np.stack([z.real, z.imag]), bias=True)


def sec_complex_bn(ctx: Context) -> Section:
    import jax
    import jax.numpy as jnp

    from jaxse.nn import ComplexBatchNorm, SplitBatchNorm
    from jaxse.nn.norm import _complex_whiten

    n = 1500 if ctx.small else 4000
    a, b = ctx.rng.standard_normal((2, n))
    z = (1.5 + 1.2 * a) + 1j * (-0.5 + 0.9 * a + 0.35 * b)  # correlated re/im, offset mean
    x = jnp.asarray(z, jnp.complex64)[:, None]  # [batch, channels = 1]
    outs = {}
    for name, bn in (("SplitBatchNorm (Re, Im separately)", SplitBatchNorm()),
                     ("ComplexBatchNorm (whitened)", ComplexBatchNorm())):
        v = bn.init(jax.random.PRNGKey(0), x, True)
        outs[name], _ = bn.apply(v, x, True, mutable=["batch_stats"])
    covs = {"input": _cov(z)} | {k: _cov(v) for k, v in outs.items()}

    fig, axes = ctx.plt.subplots(1, 3, figsize=(12, 4.2))
    t = np.linspace(0, 2 * np.pi, 200)
    for ax, (name, data) in zip(axes, [("input", z)] + [(k, np.asarray(v)[:, 0]) for k, v in outs.items()]):
        data = np.asarray(data)
        ax.scatter(data.real, data.imag, s=2, alpha=0.3)
        c = _cov(data)
        vals, vecs = np.linalg.eigh(c)
        ell = vecs @ (2 * np.sqrt(vals)[:, None] * np.stack([np.cos(t), np.sin(t)]))
        ax.plot(ell[0] + data.real.mean(), ell[1] + data.imag.mean(), color="crimson", label="2σ ellipse")
        ax.set_aspect("equal", "datalim")
        ax.set_xlabel("Re (a.u.)")
        ax.set_ylabel("Im (a.u.)")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    out_c = covs["ComplexBatchNorm (whitened)"]
    out_s = covs["SplitBatchNorm (Re, Im separately)"]
    target = 0.5 * np.eye(2)  # Γ Γᵀ with the initial Γ = I / √2
    dev = float(np.abs(out_c - target).max())
    mean = float(np.abs(np.asarray(outs["ComplexBatchNorm (whitened)"]).mean()))
    rho = out_s[0, 1] / np.sqrt(out_s[0, 0] * out_s[1, 1])
    mats = "\n\n".join(f"{k}:\n{np.array2string(v, precision=4, suppress_small=True)}" for k, v in covs.items())
    return Section(
        "complex-bn", "Complex batch normalisation",
        "x̃ = V<sup>−1/2</sup>(x − E[x]), V = [[V<sub>rr</sub>, V<sub>ri</sub>], [V<sub>ri</sub>, V<sub>ii</sub>]] "
        "(the 2 × 2 covariance of Re x, Im x)<br>y = Γ x̃ + β, Γ = [[γ<sub>rr</sub>, γ<sub>ri</sub>], "
        "[γ<sub>ri</sub>, γ<sub>ii</sub>]] (learned, initially I/√2)",
        "Normalising the real and imaginary parts separately (what the DCCRN authors' default does) gives each unit "
        "variance but keeps their correlation: the cloud stays an ellipse. Complex BatchNorm (Trabelsi et al., "
        "2018) whitens the pair with the inverse square root of its covariance: the ellipse becomes a circle, "
        "so no phase direction is preferred; Γ and β then scale and shift it.",
        [_complex_whiten],
        ctx.save(fig, "complex_bn.png"),
        [check("ComplexBatchNorm output covariance = Γ Γᵀ = I/2: max |deviation| < 1e-3", dev, dev < 1e-3),
         check("ComplexBatchNorm output mean = 0: |mean| < 1e-4", mean, mean < 1e-4),
         check("SplitBatchNorm keeps the Re-Im correlation ρ (|ρ| > 0.5)", float(rho), abs(rho) > 0.5)],
        f"<pre class='mats'>covariance matrices [[rr, ri], [ri, ii]]\n\n{html.escape(mats)}</pre>")


def sec_complex_lstm(ctx: Context) -> Section:
    import jax
    import jax.numpy as jnp

    from jaxse.nn import LSTM

    t, hidden = (40 if ctx.small else 120), 8
    spec = stft(ctx.noisy)[:t, 10:16]
    x = jnp.asarray(spec / np.abs(spec).std(), jnp.complex64)[None]  # [batch, time, 6 bins]
    lstm = LSTM(hidden, jnp.complex64)
    v = lstm.init(jax.random.PRNGKey(1), x)
    p = dict(v["params"])
    p["b"] = jnp.asarray(ctx.rng.standard_normal(p["b"].shape) * 0.3 * (1 + 1j), jnp.complex64)
    y, _ = lstm.apply({"params": p}, x)
    real_lstm = jax.jit(LSTM(hidden, jnp.float32).apply)  # one compiled program for the four runs
    part = lambda f: {"params": {k: f(q) for k, q in p.items()}}  # noqa: E731
    l_r = lambda u: real_lstm(part(jnp.real), u)[0]  # noqa: E731
    l_i = lambda u: real_lstm(part(jnp.imag), u)[0]  # noqa: E731
    ref = (l_r(x.real) - l_i(x.imag)) + 1j * (l_r(x.imag) + l_i(x.real))
    err = float(jnp.abs(y - ref).max())

    fig, ax = ctx.plt.subplots(1, 1, figsize=(10, 3.6))
    frames = np.arange(t)
    ax.plot(frames, np.asarray(y[0, :, 0].real), label="Re F(X), complex LSTM")
    ax.plot(frames, np.asarray(y[0, :, 0].imag), label="Im F(X), complex LSTM")
    ax.plot(frames, np.asarray(ref[0, :, 0].real), "k.", ms=3, label="from the four real LSTM runs")
    ax.plot(frames, np.asarray(ref[0, :, 0].imag), "k.", ms=3)
    ax.set_xlabel("frame (index; 6.25 ms each)")
    ax.set_ylabel("hidden unit 0 (a.u.)")
    ax.set_title("a complex LSTM on 6 noisy STFT bins (0.3-0.5 kHz)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return Section(
        "complex-lstm", "The complex LSTM",
        "F(X) = (L<sub>r</sub>(X<sub>r</sub>) − L<sub>i</sub>(X<sub>i</sub>)) + i (L<sub>r</sub>(X<sub>i</sub>) + "
        "L<sub>i</sub>(X<sub>r</sub>))<br>L<sub>r</sub>, L<sub>i</sub>: real LSTMs with the real and imaginary "
        "parts of the complex weights (Hu et al. 2020, eq. 4)",
        "DCCRN-CL's bottleneck is a complex LSTM: not a real LSTM on the stacked [Re, Im] features (DCCRN-E/C/R), "
        "but two real LSTMs combined like a complex product, four recurrences in all. jaxse runs the four as one "
        "batched scan. The dots recompute it from four separate real LSTM runs.",
        [LSTM.__call__],
        ctx.save(fig, "complex_lstm.png"),
        [check("complex LSTM = (L_r(X_r) − L_i(X_i)) + i(L_r(X_i) + L_i(X_r)): max |error| < 1e-5", err,
               err < 1e-5)])


def sec_masks(ctx: Context) -> Section:
    import jax.numpy as jnp

    from jaxse.models.dccrn import apply_mask, safe_abs

    y, s = stft(ctx.noisy), stft(ctx.clean)
    cirm = s / np.where(np.abs(y) > 1e-6, y, 1e-6)  # ideal complex ratio mask: S = M · Y
    c_rec = np.asarray(apply_mask(jnp.asarray(cirm), jnp.asarray(y), "C"))
    c_err = float(np.linalg.norm(c_rec - s) / np.linalg.norm(s))
    # The network output that makes DCCRN-E's bounded mask tanh|M| e^{i∠M} the cIRM clipped below 1:
    m_e = np.arctanh(np.minimum(np.abs(cirm), 0.999)) * np.exp(1j * np.angle(cirm))
    e_spec = np.asarray(apply_mask(jnp.asarray(m_e, jnp.complex64), jnp.asarray(y), "E"))
    bounded = np.abs(e_spec) / np.maximum(np.abs(y), 1e-12)
    enhanced = istft(e_spec, len(ctx.noisy))
    si_noisy, si_e = si_snr(ctx.noisy, ctx.clean), si_snr(enhanced, ctx.clean)
    above = float(np.mean(np.abs(cirm) > 1))

    fig, axes = ctx.plt.subplots(2, 3, figsize=(15, 7))
    vmax = float(db(y).max())
    spectrogram(axes[0, 0], y, "noisy |Y|", fig, vmax=vmax)
    spectrogram(axes[0, 1], s, "clean |S|", fig, vmax=vmax)
    spectrogram(axes[0, 2], e_spec, "enhanced with the ideal bounded E mask", fig, vmax=vmax)
    spectrogram(axes[1, 0], None, "cIRM magnitude |M|", fig, values=np.abs(cirm)[:, :], vmin=0, vmax=2,
                cmap="viridis", label="|M| (1)")
    spectrogram(axes[1, 1], None, "cIRM phase ∠M", fig, values=np.angle(cirm), vmin=-np.pi, vmax=np.pi,
                cmap="twilight", label="phase (rad)")
    spectrogram(axes[1, 2], None, "bounded mask tanh|M_E| (DCCRN-E)", fig, values=np.minimum(bounded, 1.5),
                vmin=0, vmax=1, cmap="viridis", label="gain (1)")
    fig.tight_layout()
    return Section(
        "masks", "The training target: masks",
        "cIRM: M = S / Y = (Y<sub>r</sub>S<sub>r</sub> + Y<sub>i</sub>S<sub>i</sub> + i(Y<sub>r</sub>S<sub>i</sub> − "
        "Y<sub>i</sub>S<sub>r</sub>)) / |Y|² &nbsp;&nbsp; Ŝ = M · Y<br>"
        "DCCRN-E: Ŝ = tanh(|M|) e<sup>i∠M</sup> · Y &nbsp;&nbsp; DCCRN-C: Ŝ = M · Y &nbsp;&nbsp; "
        "DCCRN-R: Ŝ = Re M · Re Y + i Im M · Im Y",
        "DCCRN does not predict the clean spectrum; it predicts a complex <i>mask</i> that multiplies the noisy one "
        "bin by bin. The ideal complex ratio mask (cIRM) S/Y recovers the clean speech exactly, but it is unbounded "
        f"(|M| &gt; 1 in {100 * above:.0f} % of this clip's bins, where noise cancels speech) and its phase is "
        "noise-like where the noise dominates. DCCRN-E bounds the magnitude with tanh and keeps the phase "
        "rotation; the network is trained end to end on the waveform (SI-SNR), so the mask is learned, not given. "
        "Below: the best that a bounded E mask can do on the demo clip.",
        [apply_mask, safe_abs],
        ctx.save(fig, "masks.png"),
        [check("cIRM applied (C) recovers the clean spectrum: ‖Ŝ − S‖/‖S‖ < 1e-4", c_err, c_err < 1e-4),
         check("E mask magnitude tanh|M| ≤ 1", float(bounded[np.abs(y) > 1e-6].max()),
               bounded[np.abs(y) > 1e-6].max() <= 1 + 1e-5),
         check("ideal bounded E mask improves SI-SNR over the noisy input", si_e - si_noisy, si_e > si_noisy + 3,
               "{:+.1f} dB" + f" ({si_noisy:.1f} → {si_e:.1f} dB)")])


def sec_si_snr(ctx: Context) -> Section:
    from jaxse.losses import si_snr as si_snr_fn

    s, y, noise = ctx.clean, ctx.noisy, ctx.noise
    rng = ctx.rng
    white = rng.standard_normal(len(s)).astype(np.float32) * np.sqrt(np.mean(s ** 2))

    def shift(x, n):
        return np.concatenate([np.zeros(n, np.float32), x[:len(x) - n]])

    def snr(est):
        return 10 * np.log10(np.sum(s ** 2) / np.sum((est - s) ** 2))

    cases = [("clean × 0.5", 0.5 * s), ("clean × 2", 2 * s), ("clean + white noise at 20 dB", s + 0.1 * white),
             ("noisy (5 dB)", y), ("noisy × 0.1", 0.1 * y), ("noisy × 10", 10 * y),
             ("noisier: clean + 2 × noise", s + 2 * noise), ("clean delayed 0.0625 ms (1 sample)", shift(s, 1)),
             ("clean delayed 1 ms", shift(s, 16)), ("clean delayed 10 ms", shift(s, 160))]
    rows = [(name, si_snr(est, s), snr(est)) for name, est in cases]
    table = "".join(f"<tr><td>{html.escape(n)}</td><td>{v:.2f}</td><td>{p:.2f}</td></tr>" for n, v, p in rows)
    table = ("<table class='vals'><tr><th>estimate ŝ</th><th>SI-SNR (dB)</th><th>plain SNR (dB)</th></tr>"
             f"{table}</table>")

    fig, axes = ctx.plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw=dict(width_ratios=[1, 1.3]))
    ax = axes[0]
    sc, ec = s - s.mean(), y - y.mean()
    ns = np.linalg.norm(sc)
    along = float(ec @ sc / ns)
    perp = float(np.linalg.norm(ec - (ec @ sc) / ns ** 2 * sc))
    arrow = dict(width=0.012 * ns, head_width=0.05 * ns, length_includes_head=True)
    ax.arrow(0, 0, along, perp, color="tab:blue", **arrow)
    ax.arrow(0, 0, along, 0, color="tab:orange", **dict(arrow, width=0.03 * ns, head_width=0.07 * ns))
    ax.arrow(0, 0, ns, 0, color="tab:green", zorder=3, **dict(arrow, width=0.008 * ns))  # s_t lies along s
    ax.plot([along, along], [0, perp], "r--")
    ax.text(ns, -0.08 * ns, "s (clean)", color="tab:green", ha="right")
    ax.text(along * 0.45, perp * 0.55, "ŝ (noisy)", color="tab:blue", ha="right")
    ax.text(along * 0.5, 0.04 * ns, "s_t", color="tab:orange")
    ax.text(along + 0.02 * ns, perp / 2, "e = ŝ − s_t", color="r")
    ax.set_xlabel("component along s (signal norm, full scale)")
    ax.set_ylabel("component orthogonal to s (norm)")
    ax.set_title(f"ŝ projected onto s:\nSI-SNR = 20 log10(‖s_t‖/‖e‖) = {si_snr(y, s):.2f} dB", fontsize=10)
    ax.set_aspect("equal")
    ax.set_xlim(-0.05 * ns, max(ns, along) * 1.45)
    ax.set_ylim(-0.15 * ns, perp + 0.1 * ns)
    ax.grid(alpha=0.3)
    ax = axes[1]
    names = [r[0] for r in rows]
    pos = np.arange(len(rows))
    ax.barh(pos - 0.2, [min(r[1], 60) for r in rows], 0.4, label="SI-SNR")
    ax.barh(pos + 0.2, [min(r[2], 60) for r in rows], 0.4, label="plain SNR")
    ax.set_yticks(pos, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("dB (bars cut at 60)")
    ax.set_title("SI-SNR ignores the scale; plain SNR does not")
    ax.legend(fontsize=8)
    fig.tight_layout()
    v = {n: val for n, val, _ in rows}
    inv = max(abs(v["noisy × 0.1"] - v["noisy (5 dB)"]), abs(v["noisy × 10"] - v["noisy (5 dB)"]))
    return Section(
        "si-snr", "The SI-SNR loss",
        "s<sub>t</sub> = (⟨ŝ, s⟩ / ‖s‖²) · s, &nbsp; e = ŝ − s<sub>t</sub> &nbsp;&nbsp; (both made zero-mean first)<br>"
        "SI-SNR = 10 log<sub>10</sub>(‖s<sub>t</sub>‖² / ‖e‖²) dB; DCCRN is trained on −SI-SNR",
        "SI-SNR projects the estimate onto the clean target: the part along it counts as signal, whatever its "
        "scale, and everything orthogonal to it as error. So a louder or quieter estimate scores the same, while "
        "noise, distortion and misalignment lower it: one sample (62.5 µs) of delay caps it near 12 dB, and 1 ms "
        "(16 samples) turns most of the speech into 'error'. Plain SNR, by contrast, punishes a wrong level.",
        [si_snr_fn],
        ctx.save(fig, "si_snr.png"),
        [check("scale invariance: |SI-SNR(a·ŝ) − SI-SNR(ŝ)| < 1e-3 dB for a = 0.1, 10", inv, inv < 1e-3,
               "{:.2g} dB"),
         check("more noise, lower SI-SNR", v["noisier: clean + 2 × noise"] - v["noisy (5 dB)"],
               v["noisier: clean + 2 × noise"] < v["noisy (5 dB)"], "{:+.1f} dB"),
         check("clean delayed 1 ms scores below 0 dB (misaligned speech counts as error)", v["clean delayed 1 ms"],
               v["clean delayed 1 ms"] < 0, "{:.1f} dB")],
        table)


def sec_model(ctx: Context) -> Section:
    import soundfile as sf

    from jaxse.inference import Enhancer
    from jaxse.models.dccrn import DCCRN

    enhancer = Enhancer.from_checkpoint(max_batch=1)  # no path: the shipped pretrained DCCRN-CL
    enhanced = enhancer.enhance([ctx.noisy])[0]
    name = str(enhancer.meta.get("model", {}).get("name", "the shipped model"))
    about = enhancer.meta.get("description", "")
    for fname, wave in (("noisy.wav", ctx.noisy), ("enhanced.wav", enhanced), ("clean.wav", ctx.clean)):
        sf.write(ctx.out / fname, wave, 16000, subtype="PCM_16")
    si_noisy, si_enh = si_snr(ctx.noisy, ctx.clean), si_snr(enhanced, ctx.clean)
    fig, axes = ctx.plt.subplots(1, 3, figsize=(15, 3.8))
    specs = [stft(ctx.noisy), stft(enhanced), stft(ctx.clean)]
    vmax = float(max(db(s).max() for s in specs))
    for ax, s, title in zip(axes, specs, (f"noisy ({si_noisy:.1f} dB SI-SNR)",
                                          f"enhanced by {name} ({si_enh:.1f} dB)", "clean")):
        spectrogram(ax, s, title, fig, vmax=vmax)
    fig.tight_layout()
    players = "".join(f"<figure class='audio'><figcaption>{t}</figcaption><audio controls preload='none' "
                      f"src='{f}'></audio></figure>" for t, f in (("noisy", "noisy.wav"), ("enhanced", "enhanced.wav"),
                                                                   ("clean", "clean.wav")))
    return Section(
        "model", "What the trained model does",
        "ŝ = iSTFT( tanh(|M|) e<sup>i∠M</sup> · Y ), &nbsp; M = DCCRN-CL(Y) (encoder → complex LSTM → decoder)",
        f"The shipped pretrained model ({html.escape(name)}, <code>Enhancer.from_checkpoint()</code>) on the demo "
        f"clip: <i>{CLEAN_FILE}</i> plus <i>{NOISE_FILE}</i> at {SNR_DB:.0f} dB SNR, both from the demo corpus's "
        f"test split (synthetic voices), which the model never saw: {html.escape(str(about))}. "
        "Its output is level-matched to the input.",
        [DCCRN.to_features, DCCRN.from_mask],
        ctx.save(fig, "model.png"),
        [check("enhanced SI-SNR above the noisy input's", si_enh - si_noisy, si_enh > si_noisy,
               "{:+.1f} dB" + f" ({si_noisy:.1f} → {si_enh:.1f} dB)"),
         check("output finite, same length as the input", float(len(enhanced)),
               bool(np.all(np.isfinite(enhanced))) and len(enhanced) == len(ctx.noisy), "{:.0f} samples")],
        players)


SECTIONS: list[Callable[[Context], Section]] = [sec_causal, sec_activations, sec_stft, sec_complex_conv,
                                                sec_complex_bn, sec_complex_lstm, sec_masks, sec_si_snr, sec_model]


# ----------------------------------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------------------------------
CSS = """
body { font-family: system-ui, sans-serif; max-width: 1150px; margin: 2em auto; padding: 0 1em; color: #222; }
section { border-top: 1px solid #ccc; padding-top: 0.5em; margin-top: 2em; }
.eq { font-family: 'STIX Two Math', 'Cambria Math', serif; font-size: 1.15em; background: #f6f6fa;
      padding: 0.6em 1em; border-left: 4px solid #557; margin: 0.8em 0; }
pre { background: #f4f4f4; padding: 0.6em; overflow: auto; font-size: 0.8em; max-height: 18em; }
.src summary { cursor: pointer; color: #335; }
.row { display: flex; gap: 1.2em; align-items: flex-start; }
.row img { max-width: 800px; width: 100%; }
.checks { min-width: 280px; font-size: 0.9em; }
.checks li { margin-bottom: 0.6em; list-style: none; }
.pass { color: #fff; background: #2a7a2a; padding: 0 0.4em; border-radius: 3px; font-weight: bold; }
.fail { color: #fff; background: #b22; padding: 0 0.4em; border-radius: 3px; font-weight: bold; }
table.vals { border-collapse: collapse; margin: 0.6em 0; }
table.vals td, table.vals th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
table.vals td:first-child { text-align: left; }
figure.audio { display: inline-block; margin: 0.5em 1em 0 0; }
"""


def render(sections: list[Section], meta: dict) -> str:
    toc = "".join(f"<li><a href='#{s.key}'>{html.escape(s.title)}</a></li>" for s in sections)
    parts = []
    for s in sections:
        srcs = []
        for obj in s.sources:
            label, code = quote(obj)
            srcs.append(f"<details class='src' open><summary>{html.escape(label)}</summary>"
                        f"<pre><code>{html.escape(code)}</code></pre></details>")
        checks = "".join(f"<li><span class='{'pass' if c.passed else 'fail'}'>{'PASS' if c.passed else 'FAIL'}"
                         f"</span> {html.escape(c.what)}: <b>{html.escape(c.value)}</b></li>" for c in s.checks)
        parts.append(
            f"<section id='{s.key}'><h2>{html.escape(s.title)}</h2><div class='eq'>{s.equation}</div>"
            f"<p>{s.text}</p>{''.join(srcs)}<div class='row'><img src='{s.figure}' alt='{html.escape(s.title)}'>"
            f"<ul class='checks'>{checks}</ul></div>{s.extra}</section>")
    n_pass = sum(c.passed for s in sections for c in s.checks)
    n_all = sum(len(s.checks) for s in sections)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>The jaxse tour</title><style>{CSS}</style>"
            f"</head><body><h1>The jaxse tour: the parts of CRN and DCCRN</h1>"
            f"<p>Built {html.escape(meta['built'])} in {meta['seconds']:.1f} s by <code>python experiments/tour.py"
            f"</code> from the library as it is now: every code block is quoted from jaxse with "
            f"<code>inspect.getsource</code>, every figure and check is computed by running that code. "
            f"Checks: {n_pass} of {n_all} pass.</p><ol>{toc}</ol>{''.join(parts)}</body></html>")


def build_tour(out: str | Path, *, seconds: float = 2.0, small: bool = False, seed: int = 0,
               log: Callable[[str], None] = print) -> list[Section]:
    """Write ``out/index.html``, its figures, WAVs and ``checks.json``; returns the sections (with their checks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clean, noise, noisy = demo_clip(1.0 if small else seconds)
    ctx = Context(out, small, np.random.default_rng(seed), clean, noise, noisy, plt)
    sections = []
    for make in SECTIONS:
        t0 = time.perf_counter()
        sec = make(ctx)
        sections.append(sec)
        for c in sec.checks:
            log(f"{'PASS' if c.passed else 'FAIL'}  {sec.key}: {c.what}: {c.value}")
        log(f"      {sec.key}: {time.perf_counter() - t0:.1f} s")
    meta = {"built": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds": time.perf_counter() - t_start}
    (out / "index.html").write_text(render(sections, meta), encoding="utf-8")
    (out / "checks.json").write_text(json.dumps(
        [{"section": s.key, "figure": s.figure, "checks": [c.__dict__ for c in s.checks]} for s in sections],
        indent=1), encoding="utf-8")
    log(f"wrote {out / 'index.html'} in {meta['seconds']:.1f} s")
    return sections


def main(argv=None) -> int:
    def body(args: list[str]) -> int:
        a = cli.parse(args, KEYS)
        sections = build_tour(a["out"], seconds=a["seconds"], small=a["small"], seed=a["seed"])
        return cli.EXIT_OK if all(c.passed for s in sections for c in s.checks) else cli.EXIT_FAILED

    return cli.run(PROG, body, argv, doc=__doc__, keys=KEYS)


if __name__ == "__main__":
    sys.exit(main())
