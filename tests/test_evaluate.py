"""jaxse.scoring (scoring in worker processes, summary, CSV/JSON/plots, data items) and the jaxse.evaluate CLI."""
import csv
import json
import math
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import soundfile as sf

from jaxse import evaluate as E
from jaxse import scoring as S
from jaxse.data import demo
from jaxse.metrics import DNSMOS, METRICS

SR = 16000


def _noise(n, seed):
    return np.random.default_rng(seed).standard_normal(n)


@pytest.fixture(scope="module")
def items():
    """Two 1.5-s speech items (noisy at 5 dB, 'enhanced' = 10 dB less noise) and one 0.1-s item."""
    out = []
    for i, path in enumerate(demo.paths("clean", "test")[:2]):
        clean, _ = sf.read(str(path), dtype="float32")
        clean = clean[: int(1.5 * SR)].astype(np.float64)
        n = _noise(clean.shape[0], i)
        n *= math.sqrt(np.dot(clean, clean) / np.dot(n, n) / 10 ** 0.5)  # 5 dB
        out.append((f"utt{i}", clean, clean + n, clean + 10 ** -0.5 * n))
    c = out[0][1][: SR // 10]
    out.append(("short", c, c + 0.1 * _noise(c.shape[0], 9) * np.std(c), c))
    return out


@pytest.fixture(scope="module")
def rows(items):
    return S.score_pairs(items, workers=0)


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], float):
            assert (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == pytest.approx(b[k], rel=1e-9, abs=1e-12), k
        else:
            assert a[k] == b[k], k


def test_rows_content(rows):
    assert [r["name"] for r in rows] == ["utt0", "utt1", "short"]
    for r in rows[:2]:
        assert set(r) == set(S.columns())
        assert r["errors"] == ""
        assert r["input_snr"] == pytest.approx(5.0, abs=1e-4)
        assert r["enhanced_snr"] == pytest.approx(15.0, abs=1e-4)
        assert r["si_snr_improvement"] == pytest.approx(r["enhanced_si_snr"] - r["noisy_si_snr"])
        assert r["si_snr_improvement"] == pytest.approx(10.0, abs=0.3)
        assert r["enhanced_pesq_wb"] > r["noisy_pesq_wb"]
        assert r["noisy_pesq_wb"] != r["noisy_pesq_nb"]
    short = rows[2]
    assert math.isnan(short["noisy_pesq_wb"]) and math.isnan(short["enhanced_pesq_nb"])
    assert "noisy pesq_wb: too short" in short["errors"] and "enhanced pesq_nb: too short" in short["errors"]
    assert math.isfinite(short["noisy_si_snr"])


def test_workers_equal_in_process(items, rows):
    par = S.score_pairs(items, workers=2)
    assert len(par) == len(rows)
    for a, b in zip(par, rows):
        _same(a, b)


def test_score_signals_are_the_rows_of_one_side(items, rows):
    enhanced = S.score_signals([(clean, e) for _, clean, _, e in items], workers=0)
    assert len(enhanced) == len(items)
    for res, row in zip(enhanced, rows):
        for m in ("pesq_wb", "stoi", "si_snr"):
            v, w = float(res[m]), row[f"enhanced_{m}"]
            assert (math.isnan(v) and math.isnan(w)) or v == pytest.approx(w, rel=1e-9, abs=1e-12), m


def test_summarize_leaves_nan_out_and_counts(rows):
    s = S.summarize(rows)
    assert s["n_files"] == 3
    assert s["left_out"]["noisy_pesq_wb"] == 1 and s["left_out"]["enhanced_csig"] == 1
    assert s["left_out"]["noisy_si_snr"] == 0
    assert s["mean"]["noisy_pesq_wb"] == pytest.approx(np.mean([r["noisy_pesq_wb"] for r in rows[:2]]))
    assert s["mean"]["noisy_snr"] == pytest.approx(np.mean([r["noisy_snr"] for r in rows]))
    assert s["delta"]["pesq_wb"] == pytest.approx(
        np.mean([r["enhanced_pesq_wb"] - r["noisy_pesq_wb"] for r in rows[:2]]))
    assert [f["name"] for f in s["failed"]] == ["short"]
    all_nan = S.summarize([dict(rows[2], noisy_stoi=float("nan"), enhanced_stoi=float("nan"))])
    assert math.isnan(all_nan["mean"]["noisy_stoi"]) and all_nan["left_out"]["noisy_stoi"] == 1


def test_format_table(rows):
    text = S.format_table(S.summarize(rows))
    assert isinstance(text, str)
    for label in ("PESQ-WB", "PESQ-NB", "STOI", "ESTOI", "SI-SNR", "CSIG", "CBAK", "COVL", "SI-SNR improvement"):
        assert label in text
    assert "noisy" in text and "enhanced" in text and "delta" in text
    assert "short: " in text and "too short" in text
    pesq_line = next(line for line in text.splitlines() if line.startswith("PESQ-WB"))
    assert f"{S.summarize(rows)['mean']['enhanced_pesq_wb']:.3f}" in pesq_line


def test_write_csv_atomic(rows, tmp_path, monkeypatch):
    path = tmp_path / "metrics.csv"
    S.write_csv(rows, path)
    with open(path, newline="") as f:
        got = list(csv.DictReader(f))
    assert [g["name"] for g in got] == ["utt0", "utt1", "short"]
    assert list(got[0]) == S.columns()
    assert float(got[0]["noisy_stoi"]) == pytest.approx(rows[0]["noisy_stoi"], rel=1e-12)
    assert math.isnan(float(got[2]["noisy_pesq_wb"]))
    assert os.listdir(tmp_path) == ["metrics.csv"]  # no temp file left
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    before = path.read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(S.os, "replace", boom)
    with pytest.raises(OSError):
        S.write_csv(rows[:1], path)
    assert path.read_bytes() == before  # old file intact
    assert os.listdir(tmp_path) == ["metrics.csv"]  # temp file removed


def test_write_json_nan_is_null(rows, tmp_path):
    S.write_json(S.summarize(rows), tmp_path / "s.json")
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["n_files"] == 3 and s["mean"]["noisy_pesq_wb"] > 1.0


def test_plots_are_nonempty_pngs(items, rows, tmp_path):
    _, clean, noisy, enh = items[0]
    S.plot_file(tmp_path / "a" / "file.png", clean, noisy, enh, SR, title="utt0")
    S.plot_improvement(tmp_path / "imp.png", rows)
    for p in (tmp_path / "a" / "file.png", tmp_path / "imp.png"):
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_paired_items(tmp_path):
    from jaxse.io.audio import write_audio_atomic

    rng = np.random.default_rng(0)
    for name, n in (("a", 8000), ("sub/b", 12000)):
        c = 0.1 * rng.standard_normal(n).astype(np.float32)
        write_audio_atomic(tmp_path / "clean" / f"{name}.wav", c, SR)
        write_audio_atomic(tmp_path / "noisy" / f"{name}.flac", c + 0.01, SR, subtype="PCM_24")
    got = S.paired_items(tmp_path / "noisy", tmp_path / "clean", sample_rate=SR)
    assert [g[0] for g in got] == ["a", "sub/b"]
    assert [g[1].shape for g in got] == [(8000,), (12000,)]
    np.testing.assert_allclose(got[0][2] - got[0][1], 0.01, atol=1e-4)  # (name, clean, noisy)
    assert len(S.paired_items(tmp_path / "noisy", tmp_path / "clean", limit=1)) == 1


def test_demo_test_items_are_fixed_mixtures():
    from jaxse import config

    cfg = config.compose_data("demo", ["segment_seconds=1.0", "eval_examples=3"])
    got = S.demo_test_items(cfg, limit=2)
    assert [g[0] for g in got] == ["test_0000", "test_0001"]
    for _, clean, noisy in got:
        assert clean.shape == noisy.shape == (SR,) and clean.dtype == np.float32
        assert np.std(noisy - clean) > 0
    again = S.demo_test_items(cfg, limit=2)
    np.testing.assert_array_equal(got[1][2], again[1][2])


def test_cli_unknown_key_exit_2(capsys):
    assert E.main(["checkpoint=x", "bogus_key=1"]) == 2
    assert "bogus_key" in capsys.readouterr().err
    assert E.main(["checkpoint=x", "data=no_such_data"]) == 2
    assert "no_such_data" in capsys.readouterr().err
    assert E.main(["checkpoint=pretrained:no-such-model", "out=x"]) == 2  # named, with what is shipped
    assert "pretrained:no-such-model" in capsys.readouterr().err


def test_cli_module_exit_status():
    p = subprocess.run([sys.executable, "-m", "jaxse.evaluate", "checkpoint=x", "frobnicate=3"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert "frobnicate" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_cli_end_to_end(tmp_path):
    pytest.importorskip("jaxse.inference")
    import jax
    import jax.numpy as jnp

    from jaxse.io.checkpoints import save_model
    from jaxse.models import get_model

    variables = jax.jit(get_model("dccrn-cl-tiny").init)(jax.random.PRNGKey(0), jnp.zeros((1, 1600)))
    save_model(tmp_path / "run", model_name="dccrn-cl-tiny", variables=variables)
    out = tmp_path / "eval"
    status = E.main([f"checkpoint={tmp_path / 'run'}", "data=demo", "data.segment_seconds=1.0", "limit=2",
                     "workers=0", "plots=true", f"out={out}"])
    assert status == 0
    with open(out / "metrics.csv", newline="") as f:
        got = list(csv.DictReader(f))
    assert [g["name"] for g in got] == ["test_0000", "test_0001"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_files"] == 2
    assert set(summary["mean"]) >= {f"enhanced_{m}" for m in METRICS}
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert pngs == ["improvement.png", "test_0000.png", "test_0001.png"]


class _FakeEnhancer:
    """Stands in for jaxse.inference.Enhancer: 'enhances' by halving the deviation from the mean."""

    sample_rate = SR
    calls = []

    @classmethod
    def from_checkpoint(cls, path, step=None):
        cls.calls.append((str(path), step))
        return cls()

    def enhance(self, waves):
        return [(0.5 * w).astype(np.float32) for w in waves]


@pytest.fixture
def stand_in(monkeypatch):
    """jaxse.inference replaced by a module whose Enhancer is ``_FakeEnhancer``."""
    import types

    fake = types.ModuleType("jaxse.inference")
    fake.Enhancer = _FakeEnhancer
    monkeypatch.setitem(sys.modules, "jaxse.inference", fake)


def test_cli_flow_with_stand_in_enhancer(tmp_path, stand_in, capsys):
    from jaxse.io.audio import write_audio_atomic

    for i, path in enumerate(demo.paths("clean", "test")[:3]):
        clean, _ = sf.read(str(path), dtype="float32")
        write_audio_atomic(tmp_path / "clean" / f"f{i}.wav", clean, SR)
        write_audio_atomic(tmp_path / "noisy" / f"f{i}.wav", clean + 0.05 * _noise(clean.shape[0], i), SR)
    out = tmp_path / "out"
    status = E.main(["checkpoint=CKPT", "step=7", "data=paired", f"data.noisy_dir={tmp_path / 'noisy'}",
                     f"data.clean_dir={tmp_path / 'clean'}", "limit=2", "workers=0", "plots=true",
                     "max_plots=1", f"out={out}"])
    assert status == 0
    assert _FakeEnhancer.calls[-1] == ("CKPT", 7)
    printed = capsys.readouterr().out
    assert "PESQ-WB" in printed and "2 file(s)" in printed
    with open(out / "metrics.csv", newline="") as f:
        got = list(csv.DictReader(f))
    assert [g["name"] for g in got] == ["f0", "f1"]
    # the stand-in halves the noisy signal: SNR changes, SI-SNR does not
    for g in got:
        assert float(g["enhanced_si_snr"]) == pytest.approx(float(g["noisy_si_snr"]), abs=1e-3)
        assert float(g["si_snr_improvement"]) == pytest.approx(0.0, abs=1e-3)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_files"] == 2 and summary["data"] == "paired"
    assert sorted(p.name for p in (out / "plots").glob("*.png")) == ["f0.png", "improvement.png"]


def test_cli_missing_paired_dir_is_one_line_error(tmp_path, stand_in, capsys):
    missing = tmp_path / "nope"
    assert E.main(["checkpoint=CKPT", "data=paired", f"data.noisy_dir={missing}", f"data.clean_dir={missing}",
                   f"out={tmp_path / 'o'}"]) == 2  # a missing folder is a bad config: exit 2 (jaxse.cli)
    assert "nope" in capsys.readouterr().err
    assert E.main(["checkpoint=CKPT", "data=paired", f"out={tmp_path / 'o'}"]) == 2  # no dirs given
    assert "data.noisy_dir" in capsys.readouterr().err


def test_cli_noisy_folder_alone_scores_dnsmos(tmp_path, stand_in, capsys):
    from jaxse.io.audio import write_audio_atomic

    for i, path in enumerate(demo.paths("clean", "test")[:2]):
        clean, _ = sf.read(str(path), dtype="float32")
        write_audio_atomic(tmp_path / "noisy" / f"f{i}.wav", clean + 0.05 * _noise(clean.shape[0], i), SR)
    out = tmp_path / "out"
    assert E.main(["checkpoint=CKPT", f"input={tmp_path / 'noisy'}", "workers=0", f"out={out}"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"] == list(DNSMOS) and summary["n_files"] == 2
    assert all(1 <= summary["mean"][f"enhanced_{m}"] <= 5 for m in DNSMOS)
    assert "DNSMOS OVRL" in capsys.readouterr().out
