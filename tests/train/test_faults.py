"""Every stop is clean, every resume finds the last good state: faults injected into real tiny training runs.

SIGTERM on a checkpoint step, truncated and missing checkpoint files, a full disk while saving (injected ENOSPC),
the leftovers of kill -9 during a save, a user's mistakes (missing data folder, unmatched pairs, output under a
file, a 100-byte WAV), and a preemption soak: SIGTERM at 6 random steps and SIGKILL at 2 deterministic points (after
a step, inside a save) end with the same parameters and per-step losses as an uninterrupted run.
"""
from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import soundfile as sf

from jaxse import config, train
from jaxse.io import checkpoints
from jaxse.train import logging as train_logging
from jaxse.train.__main__ import main as train_main

TINY = ["experiment=tiny", "data.eval_examples=4", "trainer.log_every=1", "trainer.eval_every=100",
        "trainer.report_workers=0"]  # no PESQ/STOI worker process (tests/train/test_train.py covers it)


def _rows(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _losses(workdir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in _rows(workdir) if r["kind"] == "train"}


def _steps(workdir: Path) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def _params(workdir: Path, step: int):
    return checkpoints.load_variables(workdir / "checkpoints" / str(step))[0]


def _run(workdir, *extra):
    return train.train_and_evaluate(config.compose(TINY + [f"workdir={workdir}", *extra]))


def _signal_at(monkeypatch, step: int, sig=signal.SIGTERM):
    """Deliver ``sig`` to this process when the training row of ``step`` is logged (after that step's update)."""
    real = train_logging.MetricLog.write

    def write(self, s, kind, metrics):
        real(self, s, kind, metrics)
        if kind == "train" and s == step:
            os.kill(os.getpid(), sig)

    monkeypatch.setattr(train_logging.MetricLog, "write", write)


def test_sigterm_on_a_checkpoint_step_exits_143_with_the_checkpoint(tmp_path, monkeypatch, capsys):
    _signal_at(monkeypatch, 2)  # step 2 is a checkpoint step (ckpt_every=1): the loop saves, then the stop path
    status = train_main(TINY + [f"workdir={tmp_path}", "trainer.max_steps=4", "trainer.ckpt_every=1"])
    err = capsys.readouterr().err
    assert status == 128 + signal.SIGTERM and "error" not in err, err
    assert _steps(tmp_path) == [1, 2]


def test_damaged_newest_checkpoint_falls_back_and_is_kept_aside(tmp_path, capsys):
    _run(tmp_path, "trainer.max_steps=3", "trainer.ckpt_every=1")
    assert _steps(tmp_path) == [1, 2, 3]
    # Truncate one data file of the newest checkpoint's model, delete one file of the previous one's train state.
    def largest_data_file(folder):
        return max((p for p in folder.rglob("*") if p.is_file() and p.parent.name == "d"),
                   key=lambda p: p.stat().st_size)

    data = largest_data_file(tmp_path / "checkpoints" / "3" / "model")
    data.write_bytes(data.read_bytes()[:100])
    largest_data_file(tmp_path / "checkpoints" / "2" / "train").unlink()
    capsys.readouterr()
    summary = _run(tmp_path, "trainer.max_steps=4", "trainer.ckpt_every=1")
    out = capsys.readouterr().out
    assert summary["start_step"] == 1 and summary["steps"] == 4
    skipped = [line for line in out.splitlines() if "skipped checkpoint" in line]
    assert len(skipped) == 2 and "step 3" in skipped[0] and "step 2" in skipped[1], out
    assert all(len(line) < 600 for line in skipped)
    kept = sorted(p.name.split("-")[0] for p in (tmp_path / checkpoints.DAMAGED_DIR).iterdir())
    assert kept == ["2", "3"]  # kept aside, not deleted
    assert _steps(tmp_path)[-1] == 4


def test_readers_skip_a_damaged_checkpoint(tmp_path, capsys):
    _run(tmp_path, "trainer.max_steps=2", "trainer.ckpt_every=1")
    best = checkpoints.resolve(tmp_path)[1]
    for p in (tmp_path / "checkpoints" / str(best) / "model").rglob("*"):
        if p.is_file() and p.stat().st_size > 1000:
            p.write_bytes(b"")
    capsys.readouterr()
    _, meta = checkpoints.load_variables(tmp_path)
    assert meta["step"] != best
    assert f"skipped checkpoint step {best}" in capsys.readouterr().err


def test_disk_full_while_saving_one_line_exit_1_then_resume(tmp_path, monkeypatch, capsys):
    assert train_main(TINY + [f"workdir={tmp_path}", "trainer.max_steps=2", "trainer.ckpt_every=1"]) == 0
    real_save = checkpoints.save

    def full(mgr, step, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "checkpoints"))

    def log_close_full(self):  # the TensorBoard/metrics writers fail too on a full disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints, "save", full)
    monkeypatch.setattr(train_logging.MetricLog, "close", log_close_full)
    capsys.readouterr()
    status = train_main(TINY + [f"workdir={tmp_path}", "trainer.max_steps=4", "trainer.ckpt_every=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert len(err) == 1 and err[0].startswith("jaxse.train: error: cannot write checkpoint step 3") and \
        "disk full" in err[0] and str(tmp_path) in err[0], err
    assert _steps(tmp_path) == [1, 2]  # earlier checkpoints intact
    monkeypatch.setattr(checkpoints, "save", real_save)
    monkeypatch.undo()
    summary = _run(tmp_path, "trainer.max_steps=4", "trainer.ckpt_every=1")  # space freed: resumes
    assert summary["start_step"] == 2 and _steps(tmp_path)[-1] == 4


def test_kill_leftovers_cleaned_and_metrics_one_row_per_step(tmp_path):
    _run(tmp_path, "trainer.max_steps=3", "trainer.ckpt_every=1")
    # What kill -9 in the middle of saving step 4 leaves: orbax's temporary folder, and rows logged after the
    # last complete checkpoint (here: drop checkpoint 3 so the rerun resumes at 2 and re-runs step 3).
    tmp = tmp_path / "checkpoints" / "4.orbax-checkpoint-tmp-1700000000"
    (tmp / "model").mkdir(parents=True)
    (tmp / "model" / "half").write_bytes(b"x")
    import shutil

    shutil.rmtree(tmp_path / "checkpoints" / "3")
    summary = _run(tmp_path, "trainer.max_steps=4", "trainer.ckpt_every=1")
    assert summary["start_step"] == 2
    assert not any(checkpoints.TMP_MARK in p.name for p in (tmp_path / "checkpoints").iterdir())
    keys = [(r["step"], r["kind"]) for r in _rows(tmp_path)]
    assert len(keys) == len(set(keys)) and sorted(_losses(tmp_path)) == [1, 2, 3, 4]


def test_users_mistakes_one_line_before_any_work(tmp_path, capsys):
    missing = tmp_path / "nope"
    work = tmp_path / "work"
    status = train_main(["experiment=tiny", "data=paired", f"data.train_noisy_dir={missing}",
                         f"data.train_clean_dir={missing}", f"data.test_noisy_dir={missing}",
                         f"data.test_clean_dir={missing}", f"workdir={work}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and str(missing) in err[0] and "data.train_noisy_dir" in err[0], err
    assert not work.exists()  # nothing written

    from jaxse import evaluate
    from jaxse.enhance import main as enhance_main

    (tmp_path / "n").mkdir()
    (tmp_path / "c").mkdir()
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "n" / "a.wav", 0.1 * rng.standard_normal(8000), 16000)
    sf.write(tmp_path / "c" / "b.wav", 0.1 * rng.standard_normal(8000), 16000)
    status = evaluate.main(["checkpoint=does-not-matter", "data=paired", f"data.noisy_dir={tmp_path / 'n'}",
                            f"data.clean_dir={tmp_path / 'c'}", f"out={tmp_path / 'ev'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "unmatched" in err[0] and "a" in err[0], err

    afile = tmp_path / "afile"
    afile.write_text("x")
    status = enhance_main(["checkpoint=does-not-matter", f"input={tmp_path / 'n'}", f"output={afile / 'out'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and str(afile) in err[0] and "is a file" in err[0], err


def test_audio_shorter_than_one_frame_is_bad_input(tmp_path):
    from jaxse.io.audio import AudioError, read_audio

    p = tmp_path / "tiny.wav"
    sf.write(p, np.zeros(28, np.float32), 16000)  # ~100 bytes
    assert p.stat().st_size < 200
    with pytest.raises(AudioError, match="too short") as e:
        read_audio(p, sample_rate=16000)
    assert str(p) in str(e.value)


# A child training process that kills itself (SIGKILL: no handler, no finally, no flush) at a chosen point:
#   step N  just after step N's training row is written, before its checkpoint;
#   save N  inside the save of step N, its files written but its temporary folder not yet renamed.
_KILLED_CHILD = r"""
import os, signal, sys

where, at = sys.argv[1], int(sys.argv[2])

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if where == "step":
    from jaxse.train import logging as train_logging

    write = train_logging.MetricLog.write

    def write_then_die(self, step, kind, metrics):
        write(self, step, kind, metrics)
        if kind == "train" and step == at:
            die()

    train_logging.MetricLog.write = write_then_die
else:
    from orbax.checkpoint._src.path import atomicity

    finalize = atomicity.AtomicRenameTemporaryPath.finalize

    async def die_before_rename(self):
        if self._final_path.name == str(at):
            die()
        return await finalize(self)

    atomicity.AtomicRenameTemporaryPath.finalize = die_before_rename

from jaxse.train.__main__ import main

sys.exit(main(sys.argv[3:]))
"""


def _killed_run(workdir: Path, where: str, at: int, *args) -> None:
    r = subprocess.run([sys.executable, "-c", _KILLED_CHILD, where, str(at), *TINY, *args, f"workdir={workdir}"],
                       env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=600)
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]


def test_preemption_soak_equals_uninterrupted(tmp_path, monkeypatch):
    """SIGTERM at 6 random steps and SIGKILL at 2 (one between a step and its checkpoint, one inside a save) end with
    the same per-step losses and parameters as an uninterrupted run, and one metrics row per step."""
    steps = 10
    opts = [f"trainer.max_steps={steps}", "trainer.ckpt_every=1"]
    ref = tmp_path / "ref"
    _run(ref, *opts)
    soak = tmp_path / "soak"
    rng = random.Random(0)
    terms = sorted(rng.sample(range(1, steps), 6))
    kills = {terms[1]: ("save", terms[1] + 2), terms[4]: ("step", terms[4] + 1)}
    for at in terms:
        if (soak / "checkpoints").is_dir() and _steps(soak) and at <= _steps(soak)[-1]:
            continue
        with monkeypatch.context() as m:
            _signal_at(m, at)
            cut = _run(soak, *opts)
        assert cut.get("signal") == signal.SIGTERM and cut["stopped_at"] == at
        if at in kills:
            where, dies_at = kills[at]
            _killed_run(soak, where, dies_at, *opts)
            unfinished = [p.name for p in (soak / "checkpoints").iterdir() if checkpoints.TMP_MARK in p.name]
            assert max(_steps(soak)) < dies_at <= max(_losses(soak))  # trained past the last checkpoint
            assert (where == "save") == any(n.startswith(f"{dies_at}.") for n in unfinished), unfinished
    final = _run(soak, *opts)
    assert final["steps"] == steps
    got, want = _losses(soak), _losses(ref)
    assert sorted(got) == list(range(1, steps + 1))
    np.testing.assert_allclose([got[s] for s in sorted(want)], [want[s] for s in sorted(want)], rtol=1e-5)
    keys = [(r["step"], r["kind"]) for r in _rows(soak)]
    assert len(keys) == len(set(keys))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), _params(soak, steps),
                 _params(ref, steps))


def test_enhance_counts_a_too_short_file_and_writes_the_others(tmp_path, capsys):
    import jax.numpy as jnp

    from jaxse.enhance import main as enhance_main
    from jaxse.models import get_model

    model = get_model("dccrn-cl-tiny")
    variables = jax.device_get(jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 1600))))
    checkpoints.save_model(tmp_path / "run", model_name="dccrn-cl-tiny", variables=variables)
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "tiny.wav", np.zeros(28, np.float32), 16000)
    sf.write(tmp_path / "in" / "ok.wav", 0.1 * np.random.default_rng(0).standard_normal(8000), 16000)
    status = enhance_main([f"checkpoint={tmp_path / 'run'}", f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}"])
    err = capsys.readouterr().err
    assert status == 1 and "tiny.wav" in err and "too short" in err, err
    assert (tmp_path / "out" / "ok.wav").is_file() and not (tmp_path / "out" / "tiny.wav").exists()
