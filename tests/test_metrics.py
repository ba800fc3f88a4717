"""jaxse.metrics on known signals (real speech from the embedded demo corpus)."""
import math

import numpy as np
import pytest
import soundfile as sf

from jaxse import metrics as M
from jaxse.data import demo

SR = 16000


@pytest.fixture(scope="module")
def speech():
    x, sr = sf.read(str(demo.paths("clean", "test")[0]), dtype="float32")
    assert sr == SR
    return x[: 2 * SR].astype(np.float64)


def _noise_at(ref, snr_db, seed=0, orthogonal=False):
    """White noise scaled so that 10 log10(|ref|^2 / |noise|^2) == snr_db exactly."""
    n = np.random.default_rng(seed).standard_normal(ref.shape[0])
    if orthogonal:  # zero-mean and orthogonal to the zero-mean reference
        r = ref - ref.mean()
        n = n - n.mean()
        n = n - np.dot(n, r) / np.dot(r, r) * r
        ref_energy = np.dot(r, r)
    else:
        ref_energy = np.dot(ref, ref)
    return n * math.sqrt(ref_energy / np.dot(n, n) / 10 ** (snr_db / 10))


@pytest.fixture(scope="module")
def noisy(speech):
    return speech + _noise_at(speech, 5.0, seed=1)


def test_si_snr_scaled_copy_is_capped_not_inf(speech):
    v = M.si_snr(0.5 * speech, speech)
    assert math.isfinite(v) and v > 100.0
    assert M.si_snr(speech, speech) == pytest.approx(M.MAX_DB)
    assert M.snr(speech, speech) == pytest.approx(M.MAX_DB)


@pytest.mark.parametrize("target", [-5.0, 0.0, 10.0, 20.0])
def test_si_snr_and_snr_at_a_set_snr(speech, target):
    noise = _noise_at(speech, target, orthogonal=True)
    assert M.si_snr(speech + noise, speech) == pytest.approx(target, abs=0.1)
    assert M.snr(speech, speech + _noise_at(speech, target)) == pytest.approx(target, abs=1e-6)
    # SI-SNR ignores the scale of the estimate, SNR does not
    assert M.si_snr(3.0 * (speech + noise), speech) == pytest.approx(target, abs=0.1)
    assert M.snr(speech, 3.0 * (speech + noise)) < target - 3.0


def test_pesq_clean_vs_itself_and_nb_differs_from_wb(speech, noisy):
    assert M.pesq_wb(speech, speech, SR) > 4.4
    wb, nb = M.pesq_wb(speech, noisy, SR), M.pesq_nb(speech, noisy, SR)
    assert 1.0 <= wb < 3.5 and 1.0 <= nb < 3.5
    assert abs(wb - nb) > 0.05, (wb, nb)  # two different scales


def test_stoi_estoi(speech, noisy):
    assert M.stoi(speech, speech, SR) == pytest.approx(1.0, abs=1e-6)
    assert M.estoi(speech, speech, SR) == pytest.approx(1.0, abs=1e-6)
    s, e = M.stoi(speech, noisy, SR), M.estoi(speech, noisy, SR)
    assert 0.3 < s < 0.99 and 0.1 < e < 0.99 and e != s


def test_lpc_levinson_matches_toeplitz_solve(speech):
    from scipy.linalg import solve_toeplitz

    frames = M._frames(speech, SR)[20:25]
    r, a = M._lpc(frames, 16)
    for f in range(frames.shape[0]):
        expected = solve_toeplitz(r[f, :16], -r[f, 1:17])
        np.testing.assert_allclose(a[f, 1:], expected, rtol=1e-5, atol=1e-6)


def test_frame_components(speech, noisy):
    assert M.llr(speech, speech, SR) == pytest.approx(0.0, abs=1e-9)
    assert M.wss(speech, speech, SR) == pytest.approx(0.0, abs=1e-9)
    assert 0.1 < M.llr(speech, noisy, SR) <= 2.0
    assert M.wss(speech, noisy, SR) > 5.0
    assert M.seg_snr(speech, speech, SR) > 25.0
    assert -10.0 <= M.seg_snr(speech, noisy, SR) < 10.0
    # frames: 30 ms, 75 % overlap
    assert M._frames(speech, SR).shape == (1 + (speech.shape[0] - 480) // 120, 480)


def test_wss_peak_search():
    # energies rising to a maximum at band 3, then falling; then rising again to band 6
    e = np.array([[0.0, 5.0, 10.0, 20.0, 12.0, 15.0, 18.0, 1.0]])
    s = np.diff(e, axis=1)
    w = M._wss_weights(e, s)
    # falling slope at band 3 -> local peak is band 3 itself -> local weight 1, global weight 1
    assert w[0, 3] == pytest.approx(1.0)
    # slopes: [5, 5, 10, -8, 3, 3, -17]; global max 20 dB
    # band 4 rises: upward search stops one band below the local maximum (band 6), i.e. band 5 (15 dB),
    # as in the authors' reference implementation
    assert w[0, 4] == pytest.approx(20 / (20 + 20 - 12) * 1 / (1 + 15 - 12))
    # band 2 rises into the peak: the band itself is taken -> local weight 1
    assert w[0, 2] == pytest.approx(20 / (20 + 20 - 10))
    assert np.all((w > 0) & (w <= 1))


def test_composite_range_and_order(speech, noisy):
    clean = M.composite(speech, speech, SR)
    bad = M.composite(speech, noisy, SR)
    for v in clean + bad:
        assert 1.0 <= v <= 5.0
    assert all(c > b for c, b in zip(clean, bad)), (clean, bad)
    # formula check with the components (CBAK unclipped here)
    p = M.pesq_wb(speech, noisy, SR)
    cbak = 1.634 + 0.478 * p - 0.007 * M.wss(speech, noisy, SR) + 0.063 * M.seg_snr(speech, noisy, SR)
    assert bad[1] == pytest.approx(min(5.0, max(1.0, cbak)), abs=1e-9)


def test_compute_all_keys(speech, noisy):
    r = M.compute_all(speech, noisy, SR)
    assert set(r) == set(M.METRICS) | {"errors"}
    assert r["errors"] == {}
    assert all(math.isfinite(r[m]) for m in M.METRICS)
    assert r["snr"] == pytest.approx(5.0, abs=1e-6)


def test_too_short_for_pesq_gives_nan_and_reason(speech):
    short = speech[: SR // 10]  # 0.1 s
    with pytest.raises(M.MetricError, match="too short"):
        M.pesq_wb(short, short, SR)
    r = M.compute_all(short, short, SR)
    assert math.isnan(r["pesq_wb"]) and math.isnan(r["pesq_nb"]) and math.isnan(r["csig"])
    assert "too short" in r["errors"]["pesq_wb"] and "too short" in r["errors"]["pesq_nb"]
    assert "csig" in r["errors"]
    assert math.isfinite(r["si_snr"])  # the others still work


def test_silent_reference_is_reported(speech):
    r = M.compute_all(np.zeros_like(speech), speech, SR)
    assert all(math.isnan(r[m]) for m in M.METRICS)
    assert all("silent reference" in r["errors"][m] for m in ("pesq_wb", "stoi", "si_snr", "snr"))


def test_length_mismatch_is_reported_not_raised(speech):
    r = M.compute_all(speech, speech[:-10], SR)
    assert math.isnan(r["si_snr"]) and "lengths differ" in r["errors"]["si_snr"]


def test_other_sample_rate_for_pesq(speech):
    from scipy.signal import resample_poly

    x = resample_poly(speech, 3, 2)  # 24 kHz
    assert M.pesq_wb(x, x, 24000) > 4.4


def test_dnsmos_no_reference(speech):
    clean = M.dnsmos(speech)
    assert set(clean) == set(M.DNSMOS)
    assert all(1.0 <= v <= 5.0 for v in clean.values()), clean
    rng = np.random.default_rng(3)
    noisy = M.dnsmos(np.clip(speech + 0.1 * rng.standard_normal(speech.shape).astype(np.float32), -1, 1))
    assert noisy["dnsmos_bak"] < clean["dnsmos_bak"] - 0.5  # loud white noise: a much worse background score
    r = M.compute_all(None, speech)  # no clean reference: DNSMOS only
    assert set(r) == set(M.DNSMOS) | {"errors"} and not r["errors"]
    with pytest.raises(M.MetricError, match="silent"):
        M.dnsmos(np.zeros(16000, np.float32))
