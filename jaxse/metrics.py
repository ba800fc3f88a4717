"""Objective speech-enhancement metrics on numpy signals (no JAX, no TensorFlow).

Every function takes the **reference (clean) signal first, then the estimate** (noisy or enhanced
signal), as PESQ and STOI do, except ``si_snr(estimate, target)``, whose order is the training loss's
(``jaxse.losses.si_snr``): the package has one SI-SNR convention. Signals are 1-D float arrays ``[samples]`` of the
same length, in the usual float audio range (about [-1, 1]), at ``sr`` Hz (default 16 kHz). Computation is in
float64.

=============  ==========================================================================  =========
function       measure                                                                     unit
=============  ==========================================================================  =========
``pesq_wb``    PESQ wide-band (ITU-T P.862.2, MOS-LQO), ``pesq`` package mode ``'wb'``     MOS 1-4.64
``pesq_nb``    PESQ narrow-band (ITU-T P.862 + P.862.1 mapping), mode ``'nb'``              MOS 1-4.55
``stoi``       STOI (Taal et al. 2011), ``pystoi``                                          0-1
``estoi``      extended STOI (Jensen & Taal 2016), ``pystoi`` ``extended=True``            0-1
``si_snr``     scale-invariant SNR (zero-mean)                                              dB
``snr``        plain SNR ``10 log10(|ref|^2 / |ref - est|^2)``                            dB
``composite``  CSIG, CBAK, COVL of Hu & Loizou (2008)                                       1-5
=============  ==========================================================================  =========

PESQ-WB and PESQ-NB are different scales; they are named separately everywhere (``pesq_wb`` /
``pesq_nb``). PESQ needs 8 or 16 kHz; other rates are resampled to 16 kHz first.

A metric that cannot be computed raises :class:`MetricError` (too short, silent reference,
PESQ's "no utterances detected", ...). :func:`compute_all` never raises for such problems: it
returns NaN for that metric and records the reason in its ``errors`` entry.
"""
from __future__ import annotations

from jaxse.errors import InputError

import math
import warnings
from typing import Any

import numpy as np

__all__ = [
    "METRICS",
    "MetricError",
    "pesq_wb",
    "pesq_nb",
    "stoi",
    "estoi",
    "si_snr",
    "snr",
    "seg_snr",
    "llr",
    "wss",
    "composite",
    "compute_all",
]

#: Keys of :func:`compute_all`, in display order.
METRICS = ("pesq_wb", "pesq_nb", "stoi", "estoi", "si_snr", "snr", "csig", "cbak", "covl")
#: No-reference measures (no clean signal needed): DNSMOS P.835 SIG / BAK / OVRL and P.808 MOS.
DNSMOS = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")

#: A reference with an RMS below this (about -120 dBFS) counts as silent.
SILENT_RMS = 1e-6
#: SNR-type measures are capped at this many dB (an exact copy has no error at all).
MAX_DB = 200.0
#: PESQ needs at least this many seconds of audio (shorter signals raise MetricError).
PESQ_MIN_SECONDS = 0.25


class MetricError(InputError):
    """A metric that cannot be computed for these signals; the message says why."""


# ----------------------------------------------------------------------------------------- checks
def _prep(ref: Any, est: Any, *, need_ref: bool = True) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(ref, dtype=np.float64)
    est = np.asarray(est, dtype=np.float64)
    if ref.ndim != 1 or est.ndim != 1:
        raise MetricError(f"expected 1-D signals [samples], got shapes {ref.shape} and {est.shape}")
    if ref.shape != est.shape:
        raise MetricError(f"reference and estimate lengths differ ({ref.shape[0]} vs {est.shape[0]} samples)")
    if ref.size == 0:
        raise MetricError("empty signals (0 samples)")
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(est))):
        raise MetricError("signal contains NaN/Inf samples")
    if need_ref and _rms(ref) < SILENT_RMS:
        raise MetricError(f"silent reference (RMS {_rms(ref):.3g} < {SILENT_RMS:g})")
    return ref, est


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0


def _ratio_db(num: float, den: float) -> float:
    """``10 log10(num / den)`` with ``den`` floored so that the result is at most ``MAX_DB``."""
    den = max(den, num * 10.0 ** (-MAX_DB / 10.0), np.finfo(np.float64).tiny)
    return float(10.0 * math.log10(max(num, np.finfo(np.float64).tiny) / den))


# ------------------------------------------------------------------------------------ SNR family
def si_snr(estimate: np.ndarray, target: np.ndarray) -> float:
    """Scale-invariant SNR in dB of ``estimate`` w.r.t. the reference ``target`` (both ``[samples]``); the argument
    order of ``jaxse.losses.si_snr``.

    Both signals are made zero-mean; the target is the projection of ``est`` on ``ref``
    (``s_t = <est, ref> ref / |ref|^2``), the error ``e = est - s_t``;
    ``SI-SNR = 10 log10(|s_t|^2 / |e|^2)``. Capped at ``MAX_DB`` (200 dB) for an exact
    (scaled) copy. Raises ``MetricError`` for a silent reference or a silent estimate.
    """
    ref, est = _prep(target, estimate)
    ref = ref - ref.mean()
    est = est - est.mean()
    if _rms(est) < SILENT_RMS * 1e-3:
        raise MetricError("silent estimate (SI-SNR undefined)")
    target = (np.dot(est, ref) / np.dot(ref, ref)) * ref
    err = est - target
    return _ratio_db(float(np.dot(target, target)), float(np.dot(err, err)))


def snr(ref: np.ndarray, est: np.ndarray) -> float:
    """SNR in dB: ``10 log10(|ref|^2 / |ref - est|^2)`` (no mean removal, no rescaling).

    ``ref``/``est``: ``[samples]``. Capped at ``MAX_DB`` (200 dB) when ``est == ref``.
    """
    ref, est = _prep(ref, est)
    err = ref - est
    return _ratio_db(float(np.dot(ref, ref)), float(np.dot(err, err)))


# --------------------------------------------------------------------------------- PESQ / STOI
def _pesq(ref: np.ndarray, est: np.ndarray, sr: int, mode: str) -> float:
    import pesq as _pesq_lib

    ref, est = _prep(ref, est)
    if ref.shape[0] < PESQ_MIN_SECONDS * sr:
        raise MetricError(f"too short for PESQ ({ref.shape[0] / sr:.3f} s < {PESQ_MIN_SECONDS} s)")
    if sr not in (8000, 16000):
        from scipy.signal import resample_poly

        g = math.gcd(int(sr), 16000)
        ref = resample_poly(ref, 16000 // g, int(sr) // g)
        est = resample_poly(est, 16000 // g, int(sr) // g)
        sr = 16000
    if mode == "wb" and sr != 16000:
        raise MetricError("PESQ-WB needs 16 kHz audio (got 8 kHz)")
    try:
        return float(_pesq_lib.pesq(int(sr), ref, est, mode))
    except _pesq_lib.NoUtterancesError as e:
        raise MetricError(f"PESQ found no utterances ({e})") from e
    except _pesq_lib.BufferTooShortError as e:
        raise MetricError(f"too short for PESQ ({e})") from e
    except _pesq_lib.PesqError as e:  # other failures of the C library
        raise MetricError(f"PESQ failed: {type(e).__name__}: {e}") from e


def pesq_wb(ref: np.ndarray, est: np.ndarray, sr: int = 16000) -> float:
    """Wide-band PESQ (ITU-T P.862.2), MOS-LQO in about [1.04, 4.64]; ``[samples]`` at ``sr`` Hz.

    Needs 16 kHz (other rates except 8 kHz are resampled to 16 kHz; 8 kHz raises) and at least
    ``PESQ_MIN_SECONDS`` of audio.
    """
    return _pesq(ref, est, sr, "wb")


def pesq_nb(ref: np.ndarray, est: np.ndarray, sr: int = 16000) -> float:
    """Narrow-band PESQ (ITU-T P.862 with the P.862.1 MOS-LQO mapping), about [1.02, 4.55].

    ``[samples]`` at ``sr`` Hz (8 or 16 kHz; other rates are resampled to 16 kHz). Not comparable
    with :func:`pesq_wb`.
    """
    return _pesq(ref, est, sr, "nb")


def _stoi(ref: np.ndarray, est: np.ndarray, sr: int, extended: bool) -> float:
    from pystoi import stoi as _stoi_lib

    ref, est = _prep(ref, est)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(_stoi_lib(ref, est, int(sr), extended=extended))
    for w in caught:
        if "Not enough STFT frames" in str(w.message):
            raise MetricError("too short for STOI (not enough 25.6 ms frames with speech after silence removal)")
    return value


def stoi(ref: np.ndarray, est: np.ndarray, sr: int = 16000) -> float:
    """Short-time objective intelligibility (Taal et al. 2011), in [0, 1] (``pystoi``).

    ``[samples]`` at ``sr`` Hz (pystoi resamples to 10 kHz internally).
    """
    return _stoi(ref, est, sr, False)


def estoi(ref: np.ndarray, est: np.ndarray, sr: int = 16000) -> float:
    """Extended STOI (Jensen & Taal 2016), about [0, 1] (``pystoi``, ``extended=True``)."""
    return _stoi(ref, est, sr, True)


# ------------------------------------------------------------------ composite measure internals
# Framing of Hu & Loizou (2008): 30 ms frames, 75 % overlap (hop = frame / 4), Hann window
# w[n] = 0.5 (1 - cos(2 pi n / (N + 1))), n = 1..N (no zero end points).
FRAME_MS = 30.0
LLR_CLIP = (0.0, 2.0)
SEGSNR_CLIP = (-10.0, 35.0)
TRIM_FRACTION = 0.95  # LLR and WSS: mean of the lowest 95 % of the frame values

# Klatt (1982) weighted-spectral-slope filter bank: 25 critical bands, centre frequencies and
# bandwidths in Hz (the table used with the composite measures; the same at 8 and 16 kHz).
_WSS_CENTRE_HZ = np.array([
    50.0, 120.0, 190.0, 260.0, 330.0, 400.0, 470.0, 540.0, 617.372, 703.378, 798.717, 904.128,
    1020.38, 1148.30, 1288.72, 1442.54, 1610.70, 1794.16, 1993.93, 2211.08, 2446.71, 2701.97,
    2978.04, 3276.17, 3597.63])
_WSS_BANDWIDTH_HZ = np.array([
    70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 77.3724, 86.0056, 95.3398, 105.411, 116.256,
    127.914, 140.423, 153.823, 168.154, 183.457, 199.776, 217.153, 235.631, 255.255, 276.072,
    298.126, 321.465, 346.136])
_WSS_KMAX = 20.0  # Klatt's global-peak weight constant (dB)
_WSS_KLOCMAX = 1.0  # Klatt's local-peak weight constant (dB)


def _frame_params(sr: int) -> tuple[int, int]:
    n = int(round(FRAME_MS * sr / 1000.0))
    return n, n // 4


def _frames(x: np.ndarray, sr: int) -> np.ndarray:
    """Hann-windowed frames ``[frames, frame_len]`` (30 ms, hop 7.5 ms) of ``x`` ``[samples]``."""
    n, hop = _frame_params(sr)
    if x.shape[0] < n:
        raise MetricError(f"too short for framing ({x.shape[0]} samples < one {FRAME_MS:g} ms frame)")
    count = 1 + (x.shape[0] - n) // hop
    idx = np.arange(n)[None, :] + hop * np.arange(count)[:, None]
    window = 0.5 * (1.0 - np.cos(2.0 * np.pi * np.arange(1, n + 1) / (n + 1)))
    return x[idx] * window


def _trimmed_mean(values: np.ndarray) -> float:
    """Mean of the lowest ``TRIM_FRACTION`` of ``values`` (at least one)."""
    v = np.sort(values[np.isfinite(values)])
    if v.size == 0:
        raise MetricError("no finite frame values")
    keep = max(1, int(round(v.size * TRIM_FRACTION)))
    return float(v[:keep].mean())


def _lpc(frames: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Autocorrelation LPC of every frame: ``(r [frames, order+1], a [frames, order+1])``.

    ``a`` holds the prediction-error filter ``A(z) = 1 + a_1 z^-1 + ... + a_p z^-p`` (a[:, 0] = 1),
    solved by the Levinson-Durbin recursion on the (slightly regularised) autocorrelation ``r``.
    """
    n = frames.shape[1]
    r = np.stack([np.einsum("fn,fn->f", frames[:, : n - k], frames[:, k:]) for k in range(order + 1)], axis=1)
    r[:, 0] = r[:, 0] * (1.0 + 1e-9) + 1e-20  # keeps silent frames well defined
    a = np.zeros_like(r)
    a[:, 0] = 1.0
    err = r[:, 0].copy()
    for i in range(1, order + 1):
        acc = np.einsum("fj,fj->f", a[:, :i], r[:, i:0:-1])
        k = -acc / err
        a[:, 1 : i + 1] = a[:, 1 : i + 1] + k[:, None] * a[:, i - 1 :: -1][:, :i]
        err = err * (1.0 - k * k)
    return r, a


def _toeplitz_quadratic(a: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``a^T R a`` per frame for the symmetric Toeplitz matrix ``R[i, j] = r[|i - j|]``."""
    p1 = a.shape[1]
    lag = np.abs(np.arange(p1)[:, None] - np.arange(p1)[None, :])
    return np.einsum("fi,fij,fj->f", a, r[:, lag], a)


def llr_frames(ref: np.ndarray, est: np.ndarray, sr: int = 16000, order: int | None = None) -> np.ndarray:
    """Per-frame log-likelihood ratio ``[frames]`` (dimensionless, >= 0).

    ``d = log((a_e^T R_r a_e) / (a_r^T R_r a_r))`` with ``a_r``/``a_e`` the LPC polynomials of the
    reference/estimate frame and ``R_r`` the autocorrelation (Toeplitz) matrix of the reference
    frame. ``order``: LPC order, default 10 below 10 kHz and 16 otherwise (the order of the
    authors' reference implementation, with which published CSIG/COVL values are computed).
    """
    ref, est = _prep(ref, est)
    if order is None:
        order = 10 if sr < 10000 else 16
    r_ref, a_ref = _lpc(_frames(ref, sr), order)
    _, a_est = _lpc(_frames(est, sr), order)
    num = _toeplitz_quadratic(a_est, r_ref)
    den = _toeplitz_quadratic(a_ref, r_ref)
    return np.log(np.maximum(num, 1e-300) / np.maximum(den, 1e-300))


def llr(ref: np.ndarray, est: np.ndarray, sr: int = 16000, order: int | None = None) -> float:
    """LLR of the composite measures: mean of the lowest 95 % of :func:`llr_frames`, clipped to [0, 2]."""
    return float(np.clip(_trimmed_mean(llr_frames(ref, est, sr, order)), *LLR_CLIP))


def _wss_filterbank(sr: int, n_half: int) -> np.ndarray:
    """Gaussian-shaped critical-band filters ``[25, n_half]`` on FFT bins ``0 .. n_half-1``.

    Band ``i`` peaks at the bin below its centre frequency, has a bandwidth-scaled Gaussian shape
    ``exp(-11 ((bin - centre) / bandwidth)^2)``, an amplitude that makes all bands carry the same
    total weight (scaled by ``70 Hz / bandwidth``), and is set to zero below -30 dB.
    """
    nyq = sr / 2.0
    bins = np.arange(n_half)[None, :]
    centre = np.floor(_WSS_CENTRE_HZ / nyq * n_half)[:, None]
    bw = (_WSS_BANDWIDTH_HZ / nyq * n_half)[:, None]
    gain = (_WSS_BANDWIDTH_HZ.min() / _WSS_BANDWIDTH_HZ)[:, None]
    filt = gain * np.exp(-11.0 * ((bins - centre) / bw) ** 2)
    floor = math.exp(-30.0 / (2.0 * 2.303))  # the -30 dB point
    return np.where(filt > floor, filt, 0.0)


def _wss_weights(energy_db: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """Klatt's weights ``[frames, 24]`` from band energies ``[frames, 25]`` (dB) and slopes ``[frames, 24]``.

    ``W = Kmax / (Kmax + E_max - E_i) * Klocmax / (Klocmax + E_peak(i) - E_i)``: emphasis on the
    global spectral maximum and on the nearest spectral peak. The nearest peak of band ``i`` is
    searched upwards along a rising slope and downwards otherwise; as in the authors' reference
    implementation, the upward search stops one band below the local maximum.
    """
    nb = slope.shape[1]
    idx = np.arange(nb)
    # first j >= i with slope <= 0 (nb if none), last j <= i with slope > 0 (-1 if none)
    next_fall = np.minimum.accumulate(np.where(slope <= 0, idx, nb)[:, ::-1], axis=1)[:, ::-1]
    prev_rise = np.maximum.accumulate(np.where(slope > 0, idx, -1), axis=1)
    peak_idx = np.where(slope > 0, next_fall - 1, prev_rise + 1)
    peak = np.take_along_axis(energy_db, peak_idx, axis=1)
    e = energy_db[:, :nb]
    w_max = _WSS_KMAX / (_WSS_KMAX + energy_db.max(axis=1, keepdims=True) - e)
    w_loc = _WSS_KLOCMAX / (_WSS_KLOCMAX + peak - e)
    return w_max * w_loc


def wss_frames(ref: np.ndarray, est: np.ndarray, sr: int = 16000) -> np.ndarray:
    """Per-frame weighted spectral slope distance (Klatt 1982) ``[frames]`` (dB^2, >= 0).

    Power spectra (FFT of ``2^ceil(log2(2 frame_len))`` points) of each Hann-windowed 30 ms frame are
    summed in 25 critical bands, band energies ``E`` in dB, slopes ``S_i = E_{i+1} - E_i``;
    ``d = sum_i W_i (S_ref,i - S_est,i)^2 / sum_i W_i`` with ``W`` the mean of the reference's and
    the estimate's Klatt weights (:func:`_wss_weights`).
    """
    ref, est = _prep(ref, est)
    n, _ = _frame_params(sr)
    n_fft = 1 << int(math.ceil(math.log2(2 * n)))
    n_half = n_fft // 2
    filt = _wss_filterbank(sr, n_half)
    out = []
    for x in (ref, est):
        spec = np.abs(np.fft.rfft(_frames(x, sr), n_fft, axis=1)[:, :n_half]) ** 2
        energy = 10.0 * np.log10(np.maximum(spec @ filt.T, 1e-10))
        slope = np.diff(energy, axis=1)
        out.append((energy, slope, _wss_weights(energy, slope)))
    (_, s_ref, w_ref), (_, s_est, w_est) = out
    w = 0.5 * (w_ref + w_est)
    return np.sum(w * (s_ref - s_est) ** 2, axis=1) / np.sum(w, axis=1)


def wss(ref: np.ndarray, est: np.ndarray, sr: int = 16000) -> float:
    """WSS of the composite measures: mean of the lowest 95 % of :func:`wss_frames` (dB^2)."""
    return _trimmed_mean(wss_frames(ref, est, sr))


def seg_snr(ref: np.ndarray, est: np.ndarray, sr: int = 16000) -> float:
    """Segmental SNR in dB: mean over all Hann-windowed 30 ms frames of the frame SNR clipped to [-10, 35]."""
    ref, est = _prep(ref, est)
    fr, fe = _frames(ref, sr), _frames(est, sr)
    sig = np.sum(fr**2, axis=1)
    noise = np.sum((fr - fe) ** 2, axis=1)
    eps = np.finfo(np.float64).eps
    frame_snr = 10.0 * np.log10(sig / (noise + eps) + eps)
    return float(np.mean(np.clip(frame_snr, *SEGSNR_CLIP)))


def composite(ref: np.ndarray, est: np.ndarray, sr: int = 16000, *,
              pesq_score: float | None = None) -> tuple[float, float, float]:
    """Composite measures ``(CSIG, CBAK, COVL)`` of Hu & Loizou (IEEE TASLP 2008), each in [1, 5].

    ``ref``/``est``: ``[samples]`` at ``sr`` Hz. Regressions (clipped to [1, 5])::

        CSIG = 3.093 - 1.029 LLR + 0.603 PESQ - 0.009 WSS
        CBAK = 1.634 + 0.478 PESQ - 0.007 WSS + 0.063 segSNR
        COVL = 1.594 + 0.805 PESQ - 0.512 LLR - 0.007 WSS

    with :func:`llr`, :func:`wss` and :func:`seg_snr` (30 ms Hann frames, 75 % overlap). **PESQ is
    PESQ-WB** (:func:`pesq_wb`), the VoiceBank+DEMAND convention of the speech-enhancement
    literature (the original paper used narrow-band P.862 on 8 kHz speech). ``pesq_score``: a
    PESQ-WB value already computed for the same pair (saves the PESQ run).
    """
    ref, est = _prep(ref, est)
    p = pesq_wb(ref, est, sr) if pesq_score is None else float(pesq_score)
    if not math.isfinite(p):
        raise MetricError("PESQ-WB is not available")
    l_ = llr(ref, est, sr)
    w_ = wss(ref, est, sr)
    s_ = seg_snr(ref, est, sr)
    csig = 3.093 - 1.029 * l_ + 0.603 * p - 0.009 * w_
    cbak = 1.634 + 0.478 * p - 0.007 * w_ + 0.063 * s_
    covl = 1.594 + 0.805 * p - 0.512 * l_ - 0.007 * w_
    return tuple(float(np.clip(v, 1.0, 5.0)) for v in (csig, cbak, covl))


# --------------------------------------------------------------------------------------- all
def _reason(e: BaseException) -> str:
    return str(e) if isinstance(e, MetricError) else f"{type(e).__name__}: {e}"


def dnsmos(x: np.ndarray, sr: int = 16000) -> dict[str, float]:
    """DNSMOS (Reddy et al., ICASSP 2021/2022) of ``x: float[samples]`` at 16 kHz, no reference needed:
    ``{"dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"}`` (P.835: speech, background, overall, 1..5) and ``"dnsmos_p808"``.

    Runs Microsoft's ONNX models shipped inside the ``speechmos`` wheel (onnxruntime, librosa): nothing is
    downloaded. Clips shorter than the models' 9.01 s window are repeated to fill it (as the reference code does);
    longer ones are scored in 1 s hops and averaged. Samples are clipped to [-1, 1].
    """
    if sr != 16000:
        raise MetricError(f"DNSMOS needs 16000 Hz audio, got {sr} Hz")
    x = np.clip(np.asarray(x, np.float32), -1.0, 1.0)
    if x.ndim != 1 or x.size < sr // 10:
        raise MetricError(f"DNSMOS needs at least 0.1 s of mono audio, got shape {x.shape}")
    if _rms(x) < SILENT_RMS:
        raise MetricError("DNSMOS of a silent signal is undefined")
    try:
        from speechmos import dnsmos as _dnsmos
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise MetricError(f"DNSMOS needs the speechmos, onnxruntime and librosa packages ({e})") from None
    r = _dnsmos.run(x, sr)
    return {"dnsmos_sig": float(r["sig_mos"]), "dnsmos_bak": float(r["bak_mos"]),
            "dnsmos_ovrl": float(r["ovrl_mos"]), "dnsmos_p808": float(r["p808_mos"])}


def compute_all(ref: np.ndarray | None, est: np.ndarray, sr: int = 16000, *,
                with_dnsmos: bool = False) -> dict[str, Any]:
    """All metrics of ``est`` against ``ref`` (both ``[samples]`` at ``sr`` Hz); with ``with_dnsmos`` also the
    no-reference ``DNSMOS`` measures of ``est``. ``ref=None``: no clean reference, only DNSMOS (the reference
    metrics are left out of the result).

    Returns ``{metric: float for metric in METRICS}`` plus ``"errors": {metric: reason}``. A metric
    that cannot be computed (too short, silent reference, PESQ found no utterances, ...) is NaN and
    has an entry in ``errors``; this function does not raise for bad signals. The composite
    measures reuse the PESQ-WB value (and are NaN when PESQ-WB is).
    """
    out: dict[str, Any] = {m: float("nan") for m in (METRICS if ref is not None else ())}
    errors: dict[str, str] = {}

    def run(name, fn):
        try:
            out[name] = float(fn())
        except Exception as e:  # noqa: BLE001 - reported, never raised
            errors[name] = _reason(e)

    if with_dnsmos or ref is None:
        try:
            out.update(dnsmos(est, sr))
        except Exception as e:  # noqa: BLE001 - reported, never raised
            out.update({m: float("nan") for m in DNSMOS})
            errors.update({m: _reason(e) for m in DNSMOS})
    if ref is None:
        out["errors"] = errors
        return out

    run("pesq_wb", lambda: pesq_wb(ref, est, sr))
    run("pesq_nb", lambda: pesq_nb(ref, est, sr))
    run("stoi", lambda: stoi(ref, est, sr))
    run("estoi", lambda: estoi(ref, est, sr))
    run("si_snr", lambda: si_snr(est, ref))
    run("snr", lambda: snr(ref, est))
    if math.isnan(out["pesq_wb"]):
        for k in ("csig", "cbak", "covl"):
            errors[k] = "needs PESQ-WB: " + errors.get("pesq_wb", "not available")
    else:
        try:
            out["csig"], out["cbak"], out["covl"] = composite(ref, est, sr, pesq_score=out["pesq_wb"])
        except Exception as e:  # noqa: BLE001
            for k in ("csig", "cbak", "covl"):
                errors[k] = _reason(e)
    out["errors"] = errors
    return out
