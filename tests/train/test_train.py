"""Training: end to end on the demo corpus (tiny model), resume after SIGTERM, non-finite updates, config errors,
and data parallelism: 1 device vs 4 devices vs 2 processes x 2 devices give the same losses."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxse import config, optim, train
from jaxse.losses import neg_si_snr
from jaxse.models import get_model

# report_workers=0: no PESQ/STOI worker process (one run below keeps it and checks its rows)
TINY = ["experiment=tiny", "trainer.max_steps=4", "data.eval_examples=4", "trainer.log_every=1",
        "trainer.report_workers=0"]


def _losses(workdir: Path) -> dict[int, float]:
    recs = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in recs if r["kind"] == "train"}


def _params(workdir: Path, step: int | None = None):
    from jaxse.io import checkpoints

    variables, _ = checkpoints.load_variables(workdir / "checkpoints" / str(step) if step else workdir)
    return variables


def test_train_end_to_end_and_resume_after_sigterm(tmp_path, monkeypatch):
    # Uninterrupted reference run: 4 steps.
    ref = tmp_path / "ref"
    summary = train.train_and_evaluate(config.compose(TINY + [f"workdir={ref}", "trainer.report_workers=1"]))
    assert summary["steps"] == 4 and summary["skipped"] == 0
    assert (ref / "config.yaml").is_file() and sorted(_losses(ref)) == [1, 2, 3, 4]
    recs = [json.loads(line) for line in (ref / "metrics.jsonl").read_text().splitlines()]
    quality = {r["step"]: r for r in recs if r["kind"] == "valid_quality"}  # PESQ/STOI from the worker process
    assert sorted(quality) == [2, 4] and {"pesq_wb", "pesq_nb", "stoi", "stoi_left_out"} <= set(quality[4])
    assert sorted(int(p.name) for p in (ref / "checkpoints").iterdir() if p.name.isdigit())[-1] == 4
    ref_params = _params(ref, 4)

    # Same run, SIGTERM delivered while step 3's batch is being read: saves step 3 and returns.
    from jaxse.data import pipeline

    real_batches = pipeline.batches

    def batches_with_signal(*a, **kw):
        for k, b in enumerate(real_batches(*a, **kw)):
            if kw.get("split") == "train" and kw.get("start_step", 0) == 0 and k == 2:
                os.kill(os.getpid(), signal.SIGTERM)
            yield b

    run = tmp_path / "run"
    monkeypatch.setattr(pipeline, "batches", batches_with_signal)
    cut = train.train_and_evaluate(config.compose(TINY + [f"workdir={run}"]))
    assert cut["stopped_at"] == 3 and cut["signal"] == signal.SIGTERM
    monkeypatch.setattr(pipeline, "batches", real_batches)
    # A crash while saving step 4 would leave orbax's temporary folder: a resume must not pick it.
    partial = run / "checkpoints" / "4.orbax-checkpoint-tmp-1700000000000000"
    (partial / "model").mkdir(parents=True)
    (partial / "model" / "garbage").write_bytes(b"half-written")
    # Started again on the same workdir: resumes at step 3 (params, optimiser, data position) and finishes.
    resumed = train.train_and_evaluate(config.compose(TINY + [f"workdir={run}"]))
    assert resumed["start_step"] == 3 and resumed["steps"] == 4
    np.testing.assert_allclose([_losses(run)[s] for s in (1, 2, 3, 4)],
                               [_losses(ref)[s] for s in (1, 2, 3, 4)], rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), _params(run, 4), ref_params)


def test_nonfinite_update_is_skipped_and_counted():
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    # conv_lowering=xla: the fastest to compile (on CPU, auto picks matmul for training; same results)
    model = get_model("dccrn-cl-tiny", decoder="causal", conv_lowering="xla", axis_name=train.AXIS)
    tx = optim.make_optimizer(lr=1e-3)
    mesh = Mesh(np.array(jax.devices()[:1]), (train.AXIS,))
    state = train.create_state(get_model("dccrn-cl-tiny", decoder="causal", conv_lowering="xla"), tx,
                               jax.random.PRNGKey(0))
    state = jax.device_put(state, NamedSharding(mesh, P()))  # placed as the step returns it: one compilation
    step = train.make_train_step(model, tx, neg_si_snr, mesh)
    x = np.random.default_rng(0).standard_normal((2, 1600)).astype(np.float32)
    before = jax.tree.map(np.asarray, state.params)
    bad = {"noisy": x.copy(), "clean": x.copy()}
    bad["noisy"][0, 5] = np.nan
    state, m = step(state, bad)
    assert int(m["finite"]) == 0 and int(state.nonfinite) == 1 and int(state.skipped) == 1
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, state.params), before)
    state, m = step(state, {"noisy": x + 0.1, "clean": x})
    assert int(m["finite"]) == 1 and int(state.nonfinite) == 0 and int(state.skipped) == 1
    changed = jax.tree.map(lambda a, b: not np.array_equal(np.asarray(a), b), state.params, before)
    assert any(jax.tree_util.tree_leaves(changed))


def test_speech_distortion_loss_trains_and_keeps_more_speech():
    """The step feeds si_snr_sd the speech part; a few steps on one batch raise both the output's SI-SNR and the
    speech part's, from the same start as plain SI-SNR (the extra term weighs the kept speech)."""
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    from jaxse import losses

    model = get_model("dccrn-cl-tiny", decoder="causal", conv_lowering="xla", axis_name=train.AXIS)
    plain = get_model("dccrn-cl-tiny", decoder="causal", conv_lowering="xla")
    tx = optim.make_optimizer(lr=3e-3)
    mesh = Mesh(np.array(jax.devices()[:1]), (train.AXIS,))
    rng = np.random.default_rng(0)
    t = np.arange(3200) / 16000
    clean = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 700 * t)]).astype(np.float32)
    batch = {"clean": clean, "noisy": clean + 0.5 * rng.standard_normal(clean.shape).astype(np.float32)}

    def speech_snr(state):
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        enhanced, part = plain.apply(variables, batch["noisy"], batch["clean"], method="with_speech_part")
        return float(losses.si_snr(enhanced, clean).mean()), float(losses.si_snr(part, clean).mean())

    ends = {}
    for name in ("si_snr", "si_snr_sd"):  # the same start (the step donates its state: a fresh one each)
        step = train.make_train_step(model, tx, losses.get_loss(name), mesh)
        state = jax.device_put(train.create_state(plain, tx, jax.random.PRNGKey(0)), NamedSharding(mesh, P()))
        before = speech_snr(state)
        for _ in range(8):
            state, m = step(state, batch)
            assert int(m["finite"]) == 1
        ends[name] = speech_snr(state)
        assert ends[name][0] > before[0] + 1.0, (name, before, ends[name])
    assert ends["si_snr_sd"][1] > ends["si_snr"][1], ends


def test_too_many_nonfinite_stops_with_clear_error(tmp_path, monkeypatch):
    from jaxse.data import pipeline

    real_batches = pipeline.batches

    def nan_batches(*a, **kw):
        for b in real_batches(*a, **kw):
            if kw.get("split") == "train":
                b = {"noisy": np.full_like(b["noisy"], np.nan), "clean": b["clean"]}
            yield b

    monkeypatch.setattr(pipeline, "batches", nan_batches)
    with pytest.raises(train.TrainingError, match="3 consecutive non-finite"):
        train.train_and_evaluate(config.compose(TINY + [f"workdir={tmp_path}", "trainer.max_nonfinite=3"]))


@pytest.mark.parametrize("args, expected", [
    (["trainer.nope=1"], "unknown config key 'trainer.nope'"),
    (["experiment=nope"], "unknown experiment 'nope'"),
    (["data=nope"], "unknown data 'nope'"),
    (["trainer.max_steps=-3"], "bad value for trainer.max_steps"),
    (["data.batch_size=two"], "bad value for data.batch_size"),
    (["model.name=unet"], "bad value for model.name"),
    (["data=paired"], "missing required config key 'data.train_noisy_dir'"),
    (["oops"], "expected key=value"),
    (["experiment=dccrn-speech-sd", "loss_options.sd_weight=high"], "'sd_weight' must be a number"),
    (["experiment=tiny", "+loss_options.sd_weight=0.2"], "loss 'si_snr' has no option 'sd_weight'"),
    (["experiment=dccrn-speech", "data.speed_range=[0.3,1.0]"], "bad value for data.speed_range"),
])
def test_config_errors_are_one_line(args, expected):
    with pytest.raises(config.ConfigError) as e:
        config.compose(args)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_cli_reports_bad_key_with_exit_status_2():
    r = subprocess.run([sys.executable, "-m", "jaxse.train", "trainer.max_stepz=3"], capture_output=True, text=True)
    assert r.returncode == 2 and "trainer.max_stepz" in r.stderr


def test_every_experiment_composes():
    for name in config.options("experiment"):
        cfg = config.compose([f"experiment={name}"])
        assert cfg["model"]["name"] and cfg["workdir"].endswith(cfg["name"])


# -------------------------------------------------------------------------------------- data parallelism
PAR = ["experiment=tiny", "trainer.max_steps=3", "trainer.log_every=1", "data.batch_size=4", "trainer.report_workers=0",
       "data.eval_examples=4", "trainer.eval_every=100", "trainer.ckpt_every=100"]


def _launch(workdir: Path, devices: int, extra=(), env_extra=None):
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu",
               **(env_extra or {}))
    return subprocess.Popen([sys.executable, "-m", "jaxse.train", *PAR, f"workdir={workdir}", *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(p) -> str:
    out, _ = p.communicate(timeout=900)
    assert p.returncode == 0, out[-3000:]
    return out


def test_one_device_four_devices_and_two_processes_agree(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The four processes run at once (independent workdirs; most of their time is single-threaded start-up).
    one = _launch(tmp_path / "one", 1)
    four = _launch(tmp_path / "four", 4)
    procs = [_launch(tmp_path / "multi", 2, [f"distributed.coordinator_address=127.0.0.1:{port}",
                                             "distributed.num_processes=2", f"distributed.process_id={i}"])
             for i in range(2)]
    _wait(one)
    assert "4 devices on 1 process" in _wait(four)
    outs = [_wait(p) for p in procs]
    assert "4 devices on 2 process(es)" in outs[0]
    ref = _losses(tmp_path / "one")
    assert sorted(ref) == [1, 2, 3]
    for other in ("four", "multi"):
        got = _losses(tmp_path / other)
        np.testing.assert_allclose([got[s] for s in (1, 2, 3)], [ref[s] for s in (1, 2, 3)], rtol=1e-5,
                                   err_msg=f"{other} vs one device")
    # The parameters after 3 steps agree too (the multi-process run wrote one checkpoint from both processes).
    # Not compared: biases of convolutions followed by BatchNorm. Their exact gradient is zero (BN removes the
    # mean), so what they receive is round-off, which Adam's normalisation turns into +-lr steps of either sign.
    p1, pm = _params(tmp_path / "one", 3)["params"], _params(tmp_path / "multi", 3)["params"]
    for path, a in jax.tree_util.tree_leaves_with_path(pm):
        if jax.tree_util.keystr(path).endswith("['bias']"):
            continue
        b = p1
        for k in path:
            b = b[k.key]
        np.testing.assert_allclose(a, b, atol=1e-4, err_msg=jax.tree_util.keystr(path))


def test_init_from_starts_a_new_run_from_another_checkpoints_weights(tmp_path):
    from jaxse.io import checkpoints
    from jaxse.train import loop

    cfg = config.compose(TINY + [f"workdir={tmp_path / 'ft'}"])
    model = get_model(cfg.model_name, **cfg.model_options)
    tx = optim.make_optimizer(lr=1e-3)
    fresh = loop.create_state(model, tx, jax.random.PRNGKey(1))
    other = loop.create_state(model, tx, jax.random.PRNGKey(7))  # stands for a trained checkpoint (step 2)
    src = tmp_path / "src"
    checkpoints.save_model(src, model_name=cfg.model_name, model_overrides=cfg.model_options, step=2,
                           variables={"params": other.params, "batch_stats": other.batch_stats})
    src_vars = _params(src)
    # The weights land in a fresh state (optimiser and step untouched) ...
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    state, info = loop.init_weights(fresh, str(src), cfg.model_name,
                                    jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    assert info == {"checkpoint": str(src), "step": 2} and int(state.step) == 0
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), state.params, src_vars["params"])
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), state.opt_state, fresh.opt_state)
    assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(fresh.params), jax.tree.leaves(state.params)))
    # ... and a run with init_from trains from them and records where it started.
    # (With the cosine schedule over 2 steps: the second update's rate is halfway from 1e-3 down to min_lr=2e-5;
    # the plateau rule stays untouched.)
    ft = train.train_and_evaluate(config.compose(TINY + [f"workdir={tmp_path / 'ft'}", f"trainer.init_from={src}",
                                                         "trainer.max_steps=2", "seed=1", "optim.schedule=cosine",
                                                         "optim.min_lr=2e-5"]))
    assert ft["start_step"] == 0 and ft["steps"] == 2
    meta = checkpoints.read_meta(tmp_path / "ft")
    assert meta["init_from"] == {"checkpoint": str(src), "step": 2}
    assert meta["lr"] == pytest.approx(5.1e-4) and meta["schedule"] == {"best": None, "bad_evals": 0}

    # A missing source is named before the new workdir is written; another model, or weights that do not fit, are
    # refused with the key and the reason.
    with pytest.raises(checkpoints.CheckpointError, match="does not exist"):
        train.train_and_evaluate(config.compose(TINY + [f"workdir={tmp_path / 'none'}",
                                                        f"trainer.init_from={tmp_path / 'missing'}"]))
    assert not (tmp_path / "none").exists()
    with pytest.raises(config.ConfigError, match="holds model 'dccrn-cl'"):
        train.train_and_evaluate(config.compose(TINY + [f"workdir={tmp_path / 'none'}",
                                                        "trainer.init_from=pretrained:dccrn-cl"]))
    assert not (tmp_path / "none").exists()
    with pytest.raises(config.ConfigError, match="trainer.init_from.*holds model 'dccrn-cl'"):
        loop.init_weights(fresh, "pretrained:dccrn-cl", cfg.model_name, None)
    bad = jax.tree.map(np.asarray, src_vars)
    first = sorted(bad["params"])[0]
    leaf_path, leaf = jax.tree_util.tree_leaves_with_path(bad["params"][first])[0]
    bad["params"][first] = jax.tree_util.tree_map_with_path(
        lambda k, v: np.zeros((3,) + v.shape, v.dtype) if k == leaf_path else v, bad["params"][first])
    checkpoints.save_model(tmp_path / "bad", model_name=cfg.model_name, variables=bad)
    with pytest.raises(checkpoints.CheckpointError, match="does not fit model 'dccrn-cl-tiny'.*shape of"):
        loop.init_weights(fresh, str(tmp_path / "bad"), cfg.model_name, None)
