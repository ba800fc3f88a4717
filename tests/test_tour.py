"""``experiments/tour.py`` at reduced size: every section's checks hold, every figure and audio file exists and is
referenced by the page, and the code on the page is quoted from the library."""
import json
import re

import pytest

from experiments import tour

TOPICS = ("causal", "activations", "stft", "complex-conv", "complex-bn", "complex-lstm", "masks", "si-snr", "model")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("tour")
    sections = tour.build_tour(out, small=True, log=lambda line: None)
    return out, sections, (out / "index.html").read_text(encoding="utf-8")


def test_every_check_holds(built):
    out, sections, page = built
    assert tuple(s.key for s in sections) == TOPICS
    failed = [f"{s.key}: {c.what} = {c.value}" for s in sections for c in s.checks if not c.passed]
    assert not failed, failed
    assert all(s.checks for s in sections)
    assert "FAIL" not in page and page.count(">PASS<") == sum(len(s.checks) for s in sections)
    saved = json.loads((out / "checks.json").read_text())
    assert [c["passed"] for s in saved for c in s["checks"]] == [True] * sum(len(s.checks) for s in sections)


def test_every_figure_and_audio_file_exists_and_is_referenced(built):
    out, sections, page = built
    for s in sections:
        assert (out / s.figure).stat().st_size > 10_000, s.figure
        assert f"src='{s.figure}'" in page
        assert f"id='{s.key}'" in page
    referenced = set(re.findall(r"src='([^']+)'", page))
    assert {p.name for p in out.glob("*.png")} | {p.name for p in out.glob("*.wav")} == referenced
    for wav in ("noisy.wav", "enhanced.wav", "clean.wav"):
        assert f"<audio controls preload='none' src='{wav}'>" in page


def test_code_on_the_page_is_quoted_from_the_library(built):
    _, _, page = built
    for needle in ("def causal_conv1d(", "def receptive_field(", "def _prelu(", "def stft(", "def complex_parts(",
                   "def _complex_whiten(", "def apply_mask(", "def si_snr(", "def from_mask("):
        assert needle in page, needle
    assert "jaxse/nn/tcn.py:" in page and "jaxse/losses.py:" in page


def test_bad_argument_is_a_usage_error(tmp_path, capsys):
    assert tour.main([f"out={tmp_path}", "seconds=fast"]) == 2
    assert "seconds" in capsys.readouterr().err
    assert not (tmp_path / "index.html").exists()
