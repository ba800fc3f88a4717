import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from jaxse import signal

SETTINGS = [dict(n_fft=512, hop=100, win_length=400), dict(n_fft=320, hop=160, win_length=320)]


@pytest.mark.parametrize("cfg", SETTINGS)
@pytest.mark.parametrize("n", [16000, 16037, 250])
def test_round_trip_is_exact(cfg, n):
    x = np.random.default_rng(0).standard_normal((3, n)).astype(np.float32)
    spec = signal.stft(x, **cfg)
    assert spec.dtype == jnp.complex64
    assert spec.shape == (3, signal.num_frames(n, hop=cfg["hop"], win_length=cfg["win_length"]), cfg["n_fft"] // 2 + 1)
    y = signal.istft(spec, length=n, **cfg)
    assert y.shape == x.shape and y.dtype == jnp.float32
    assert np.max(np.abs(np.asarray(y) - x)) < 1e-5


@pytest.mark.parametrize("cfg", SETTINGS)
def test_matches_scipy(cfg):
    x = np.random.default_rng(1).standard_normal((2, 4000)).astype(np.float32)
    ours = np.asarray(signal.stft(x, **cfg))
    left = cfg["win_length"] - cfg["hop"]
    frames = ours.shape[1]
    total = (frames - 1) * cfg["hop"] + cfg["win_length"]
    xp = np.pad(x, [(0, 0), (left, total - left - x.shape[1])]).astype(np.float64)
    w = signal.window("sqrt_hann", cfg["win_length"]).astype(np.float64)
    _, _, ref = scipy.signal.stft(xp, window=w, nperseg=cfg["win_length"], noverlap=cfg["win_length"] - cfg["hop"],
                                  nfft=cfg["n_fft"], boundary=None, padded=False)
    ref = np.swapaxes(ref, 1, 2) * w.sum()  # scipy scales by 1 / sum(window)
    np.testing.assert_allclose(ours, ref, atol=2e-4, rtol=1e-4)


def test_jit_and_vmap_agree():
    cfg = SETTINGS[0]
    x = np.random.default_rng(2).standard_normal((4, 3000)).astype(np.float32)
    eager = signal.stft(x, **cfg)
    jitted = jax.jit(lambda a: signal.stft(a, **cfg))(x)
    vmapped = jax.vmap(lambda a: signal.stft(a[None], **cfg)[0])(x)
    np.testing.assert_allclose(jitted, eager, atol=1e-4)
    np.testing.assert_allclose(vmapped, eager, atol=1e-4)


def test_causal_framing():
    """Changing samples from s on leaves every frame that ends before s untouched."""
    cfg = SETTINGS[0]
    x = np.random.default_rng(3).standard_normal((1, 2000)).astype(np.float32)
    x2 = x.copy()
    x2[:, 1000:] += 1.0
    d = np.abs(np.asarray(signal.stft(x, **cfg)) - np.asarray(signal.stft(x2, **cfg))).max(-1)[0]
    assert np.flatnonzero(d > 0)[0] == 1000 // cfg["hop"]


def test_bad_settings():
    with pytest.raises(ValueError, match="hop"):
        signal.stft(np.zeros((1, 100)), n_fft=256, hop=300, win_length=256)
    with pytest.raises(ValueError, match="window"):
        signal.window("kaiser", 16)
