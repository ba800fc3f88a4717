import jax
import jax.numpy as jnp
import numpy as np

from jaxse import losses


def _sig(n=8000, seed=0):
    return np.random.default_rng(seed).standard_normal((2, n)).astype(np.float32)


def test_si_snr_known_values():
    s = _sig()
    noise = _sig(seed=1)
    # Orthogonalise the noise against s so the SI-SNR is exactly the power ratio.
    s0 = s - s.mean(-1, keepdims=True)
    n0 = noise - noise.mean(-1, keepdims=True)
    n0 = n0 - (np.sum(n0 * s0, -1, keepdims=True) / np.sum(s0 * s0, -1, keepdims=True)) * s0
    n0 *= np.sqrt(np.sum(s0 ** 2, -1, keepdims=True) / np.sum(n0 ** 2, -1, keepdims=True)) * 10 ** (-10 / 20)
    np.testing.assert_allclose(losses.si_snr(s0 + n0, s0), [10.0, 10.0], atol=1e-3)
    assert np.all(np.asarray(losses.si_snr(s, s)) > 60)  # perfect estimate


def test_si_snr_scale_invariant():
    s, e = _sig(), _sig() + 0.5 * _sig(seed=2)
    a = losses.si_snr(e, s)
    np.testing.assert_allclose(losses.si_snr(3.7 * e, s), a, atol=1e-3)
    np.testing.assert_allclose(losses.si_snr(0.01 * e, s), a, atol=1e-3)


def test_si_snr_silent_target_is_finite_with_finite_gradient():
    z = np.zeros((2, 4000), np.float32)
    e = _sig(4000)
    for est, tgt in [(e, z), (z, z), (z, e)]:
        val, grad = jax.value_and_grad(lambda a: losses.neg_si_snr(a, tgt).mean())(jnp.asarray(est))
        assert np.isfinite(val) and np.all(np.isfinite(grad))


def test_magnitude_mse():
    s = _sig()
    np.testing.assert_allclose(losses.magnitude_mse(s, s), [0, 0], atol=1e-10)
    assert np.all(np.asarray(losses.magnitude_mse(2 * s, s)) > 0)
    g = jax.grad(lambda a: losses.magnitude_mse(a, s).mean())(jnp.zeros_like(s))
    assert np.all(np.isfinite(g))


def test_multi_resolution_stft_loss():
    x = _sig(16000)
    same = losses.multi_resolution_stft(jnp.asarray(x), jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(same), 0.0, atol=1e-5)
    noise = 0.1 * _sig(16000, seed=1)
    small = np.asarray(losses.multi_resolution_stft(jnp.asarray(x + noise), jnp.asarray(x)))
    large = np.asarray(losses.multi_resolution_stft(jnp.asarray(x + 10 * noise), jnp.asarray(x)))
    assert small.shape == (2,) and np.all(small > 0) and np.all(large > small)
    zero = jnp.zeros((1, 4000))  # silence: finite value and gradient
    g = jax.grad(lambda e: losses.si_snr_mrstft(e, zero).sum())(zero + 1e-3)
    assert np.all(np.isfinite(np.asarray(g)))
    combined = losses.si_snr_mrstft(jnp.asarray(x + noise), jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(combined), np.asarray(losses.neg_si_snr(jnp.asarray(x + noise),
                               jnp.asarray(x))) + losses.MRSTFT_WEIGHT * small, rtol=1e-5)
    assert losses.get_loss("si_snr_mrstft") is losses.si_snr_mrstft


def test_speech_part_is_the_mask_applied_to_the_clean_speech():
    """``with_speech_part``: the enhanced output equals the model's own, and speech part + noise part = output."""
    import pytest

    from jaxse.models import get_model

    model = get_model("dccrn-cl-tiny", conv_lowering="xla")
    rng = np.random.default_rng(0)
    clean = rng.standard_normal((2, 3200)).astype(np.float32)
    noise = 0.5 * rng.standard_normal((2, 3200)).astype(np.float32)
    noisy = clean + noise
    variables = model.init(jax.random.PRNGKey(0), jnp.asarray(noisy))
    enhanced, speech = model.apply(variables, noisy, clean, method="with_speech_part")
    np.testing.assert_allclose(np.asarray(enhanced), np.asarray(model.apply(variables, noisy)), atol=1e-5)
    _, noise_part = model.apply(variables, noisy, noise, method="with_speech_part")
    np.testing.assert_allclose(np.asarray(speech + noise_part), np.asarray(enhanced), atol=1e-4)
    assert not np.allclose(np.asarray(speech), clean, atol=1e-2)  # a random mask changes the speech
    loss = losses.si_snr_sd(enhanced, jnp.asarray(clean), speech)
    np.testing.assert_allclose(np.asarray(loss), np.asarray(-losses.si_snr(enhanced, jnp.asarray(clean))
                               - losses.SD_WEIGHT * losses.si_snr(speech, jnp.asarray(clean))), rtol=1e-6)
    assert losses.get_loss("si_snr_sd") is losses.si_snr_sd and losses.si_snr_sd.needs_speech_part
    crn = get_model("crn")
    with pytest.raises(ValueError, match="does not mask the spectrum"):
        crn.apply(crn.init(jax.random.PRNGKey(0), jnp.asarray(noisy)), noisy, clean, method="with_speech_part")


def test_loss_options_bind_and_bad_ones_are_named():
    import pytest

    x, y = jnp.asarray(_sig()), jnp.asarray(_sig(seed=1))
    part = 0.5 * y + x
    light = losses.get_loss("si_snr_sd", sd_weight=0.1)
    assert light.needs_speech_part
    np.testing.assert_allclose(np.asarray(light(x, y, part)), np.asarray(
        -losses.si_snr(x, y) - 0.1 * losses.si_snr(part, y)), rtol=1e-6)
    with pytest.raises(ValueError, match="has no option 'weight'.*sd_weight"):
        losses.get_loss("si_snr_sd", weight=0.1)
    with pytest.raises(ValueError, match="'sd_weight' must be a number"):
        losses.get_loss("si_snr_sd", sd_weight="high")
    with pytest.raises(ValueError, match="has no option"):
        losses.get_loss("si_snr", sd_weight=0.1)


def test_speech_distortion_weight_follows_the_input_snr():
    import pytest

    rng = np.random.default_rng(0)
    clean = rng.standard_normal((3, 1600)).astype(np.float32)
    noise = rng.standard_normal((3, 1600)).astype(np.float32)
    mixture = clean + noise * np.array([[0.01], [1.0], [10.0]], np.float32)  # +40, 0 and -20 dB
    snr = np.asarray(losses.input_snr(jnp.asarray(clean), jnp.asarray(mixture)))
    np.testing.assert_allclose(snr, [40, 0, -20], atol=0.5)
    est, part = clean + 0.3 * noise, 0.9 * clean + 0.05 * noise
    ramp = losses.get_loss("si_snr_sd", sd_weight=0.5, sd_mid_snr=0.0, sd_ramp_db=3.0)
    w = 0.5 / (1 + np.exp(-snr / 3.0))
    np.testing.assert_allclose(np.asarray(ramp(est, clean, part, mixture)),
                               np.asarray(-losses.si_snr(est, clean)) - w * np.asarray(losses.si_snr(part, clean)),
                               rtol=1e-5)
    with pytest.raises(ValueError, match="needs the mixture"):
        ramp(est, clean, part)


def _speech(i=0):
    """A few seconds of the demo corpus's (synthetic-voice) test speech, ``float32[samples]`` at 16 kHz."""
    import soundfile as sf
    from jaxse.data import demo

    x, sr = sf.read(demo.paths("clean", "test")[i], dtype="float32")
    assert sr == 16000
    return x[:32000]


def test_envelope_correlation_tracks_stoi():
    """The differentiable STOI-like score on speech: 1 for the clean signal, falls with the SNR as STOI (pystoi)
    does (it reads lower at low SNR: it keeps the pauses and does not clip); unlike SI-SNR it notices the weak high
    bands removed."""
    import pytest
    from pystoi import stoi

    clean = _speech()
    rng = np.random.default_rng(1)
    scores, refs, noises = [], [], {}
    for snr in (-5, 0, 5, 10, 20):
        noise = rng.standard_normal(clean.size).astype(np.float32)
        noise *= np.linalg.norm(clean) / np.linalg.norm(noise) * 10 ** (-snr / 20)
        noises[snr] = noise
        scores.append(float(losses.envelope_correlation(jnp.asarray(clean + noise)[None], jnp.asarray(clean)[None])[0]))
        refs.append(stoi(clean, clean + noise, 16000))
    assert np.all(np.diff(scores) > 0), scores
    assert np.corrcoef(scores, refs)[0, 1] > 0.98, (scores, refs)
    # Below STOI at low SNR (silent frames kept, no clipping), close to it from 5 dB up.
    np.testing.assert_allclose(scores[2:], refs[2:], atol=0.05)
    assert float(losses.envelope_correlation(jnp.asarray(clean)[None], jnp.asarray(clean)[None])[0]) > 0.999
    # Bands above 1.5 kHz removed (no phase change) vs. white noise at 10 dB: the same SI-SNR, but the envelope score
    # (and STOI) much lower for the band removal, which SI-SNR weighs by energy and so barely sees.
    spectrum = np.fft.rfft(clean)
    spectrum[np.fft.rfftfreq(clean.size, 1 / 16000) > 1500] = 0
    lowpass = jnp.asarray(np.fft.irfft(spectrum, clean.size).astype(np.float32))[None]
    noisy10 = jnp.asarray(clean + noises[10])[None]
    ref = jnp.asarray(clean)[None]
    assert abs(float(losses.si_snr(lowpass, ref)[0]) - float(losses.si_snr(noisy10, ref)[0])) < 0.5
    env = [float(losses.envelope_correlation(x, ref)[0]) for x in (lowpass, noisy10)]
    assert env[0] < env[1] - 0.1, env
    assert stoi(clean, np.asarray(lowpass[0]), 16000) < stoi(clean, clean + noises[10], 16000)
    zeros = jnp.zeros((2, 16000))
    grad = jax.grad(lambda e: losses.envelope_correlation(e, zeros).sum())(zeros)
    assert bool(jnp.isfinite(grad).all())
    with pytest.raises(ValueError, match="at least 30 frames"):
        losses.envelope_correlation(zeros[:, :1000], zeros[:, :1000])


def test_stoi_weight_adds_the_envelope_term():
    n = min(_speech(1).size, _speech(2).size)
    clean = jnp.asarray(np.stack([_speech(1)[:n], _speech(2)[:n]]))
    noise = jnp.asarray(np.random.default_rng(4).standard_normal(clean.shape).astype(np.float32)) * 0.1
    est, part = clean + noise, 0.9 * clean
    base = losses.get_loss("si_snr_sd", sd_weight=0.5)(est, clean, part)
    with_env = losses.get_loss("si_snr_sd", sd_weight=0.5, stoi_weight=20.0)(est, clean, part)
    np.testing.assert_allclose(np.asarray(with_env - base),
                               20.0 * (1.0 - np.asarray(losses.envelope_correlation(est, clean))), rtol=1e-4)
    # on the speech part, weighted by the SNR ramp: sigmoid(SNR / 3 dB) at a 20 dB input is ~1, at -20 dB ~0.001
    opts = dict(sd_weight=0.5, sd_mid_snr=0.0, sd_ramp_db=3.0)
    part = part + noise  # a distorted speech part
    for snr_db in (20.0, -20.0):
        mixture = clean + noise * (10 ** (-snr_db / 20) / 0.1) * float(jnp.linalg.norm(clean[0]) /
                                                                      jnp.linalg.norm(noise[0]))
        ramp = np.asarray(jax.nn.sigmoid(losses.input_snr(clean, mixture) / 3.0))
        extra = losses.get_loss("si_snr_sd", speech_stoi_weight=30.0, **opts)(est, clean, part, mixture) - \
            losses.get_loss("si_snr_sd", **opts)(est, clean, part, mixture)
        np.testing.assert_allclose(np.asarray(extra), 30.0 * ramp * (1.0 - np.asarray(
            losses.envelope_correlation(part, clean))), rtol=1e-4, atol=1e-5)
        assert (np.asarray(extra) > 1.0).all() if snr_db > 0 else (np.asarray(extra) < 0.1).all(), extra
