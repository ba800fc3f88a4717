"""Experiment configuration: the schema (declared once, here), Hydra composition of the YAML files under
``experiments/``, validation, and the shared ``key=value`` parsing of the command lines.

The dataclasses below are the only place where a key, its type, its default and its valid range are written. The
YAML files only choose (``experiment=``, ``data=``) and set what an experiment changes; Hydra merges them onto the
schema (an unknown key or a value of the wrong type is an error at composition), then ``validate`` checks ranges.
Code receives typed values: ``cfg.trainer.max_steps`` is an ``int``, ``cfg.data`` a ``PairedData``/``MixData``/
``DemoData``/``TfdsData``. (Configs also read like mappings, ``cfg["data"]["kind"]``.)

``compose(["experiment=dccrn", "trainer.max_steps=10"])`` -> ``TrainConfig``. Errors raise ``ConfigError`` with one
line naming the key.
"""
from __future__ import annotations

from jaxse.errors import UsageError

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from omegaconf import MISSING, OmegaConf

from jaxse.signal import SAMPLE_RATE


class ConfigError(UsageError):
    """A bad command-line override or config value; the message is one line naming the key."""


def _opt(default: Any = MISSING, check: Callable[[Any], bool] | None = None, what: str = "", **kw):
    """A schema field: its default and the range check ``validate`` applies (``what`` names the valid values)."""
    meta = {"check": check, "what": what} if check else {}
    if isinstance(default, (list, dict)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


def _int_ge(lo: int):
    return dict(check=lambda v: isinstance(v, int) and v >= lo, what=f"an integer >= {lo}")


def _num_gt(lo: float):
    return dict(check=lambda v: v > lo, what=f"a number > {lo:g}")


def _one_of(*values: str):
    return dict(check=lambda v: v in values, what=" | ".join(values))


def _range_pair(v) -> bool:
    return len(v) == 2 and v[0] <= v[1]


class _Mapping:
    """Read access by key, so a typed config also serves code that expects the composed mapping."""

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.keys() else default

    def __contains__(self, key: str) -> bool:
        return key in self.keys()

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]


# ================================================================================================ data
@dataclass
class DataConfig(_Mapping):
    """Keys every data source has."""

    kind: str = _opt(**_one_of("paired", "mix", "demo", "tfds"))
    batch_size: int = _opt(8, check=lambda v: v >= 1, what="an integer >= 1 (the global batch)")
    segment_seconds: float = _opt(2.0, check=lambda v: v > 0, what="a number of seconds > 0")
    sample_rate: int = _opt(SAMPLE_RATE, check=lambda v: v == SAMPLE_RATE,
                            what=f"{SAMPLE_RATE} (the models work at {SAMPLE_RATE} Hz)")
    skip_bad_files: bool = False  # skip unreadable/corrupt files with a warning (count + first names)
    prefetch: Optional[int] = _opt(2, check=lambda v: v is None or v >= -1, what="null, -1 (AUTOTUNE) or >= 0")
    workers: Optional[int] = _opt(None, check=lambda v: v is None or v >= 1,  # parallel reads and mixes
                                  what="null (all cores) or an integer >= 1")
    index_cache_dir: Optional[str] = "~/.cache/jaxse/index"  # corpus index cache (null: measure every start)
    # decode: every file decoded once at indexing (corrupt data, NaNs, silence found then); header: headers only
    # (fast first start of a large corpus; a corrupt file stops the run when a batch reads it)
    index_check: str = _opt("decode", **_one_of("decode", "header"))


@dataclass
class FileData(DataConfig):
    """Sources read from audio files with soundfile."""

    resample: bool = True  # other rates: resample (scipy resample_poly) or, false, reject with an AudioError
    multichannel: str = _opt("downmix", **_one_of("downmix", "reject"))
    host_sharding: str = _opt("rows", **_one_of("rows", "files"))  # rows: batches independent of the host layout


@dataclass
class MixingOptions:
    """On-the-fly mixing of speech and noise (DNS-Challenge style)."""

    snr_range: List[float] = _opt([-5.0, 15.0], check=_range_pair, what="[lo, hi] with lo <= hi (dB)")
    level_range: List[float] = _opt([-35.0, -15.0], check=_range_pair, what="[lo, hi] with lo <= hi (dBFS)")
    synthetic_noise: List[str] = _opt(["white", "pink", "brown"],
                                      check=lambda v: set(v) <= {"white", "pink", "brown"}, what="white/pink/brown")
    synthetic_noise_prob: float = _opt(0.2, check=lambda v: 0 <= v <= 1, what="a probability in [0, 1]")
    eval_examples: int = _opt(32, **_int_ge(1))  # fixed (eval-seeded) mixtures served for valid/test
    # speed perturbation of the training speech (never of valid/test): per example with probability speed_prob,
    # the clean crop is resampled by a factor f ~ U(speed_range), pitch and formants moving together (f 1.3: a
    # higher, faster, smaller-sounding voice); the target is the perturbed speech
    speed_prob: float = _opt(0.0, check=lambda v: 0 <= v <= 1, what="a probability in [0, 1]")
    speed_range: List[float] = _opt([0.8, 1.3], check=lambda v: _range_pair(v) and 0.5 <= v[0] and v[1] <= 2.0,
                                    what="[lo, hi] factors with 0.5 <= lo <= hi <= 2")
    # noise variety from the same recordings (training only): with probability noise_speed_prob the noise crop is
    # resampled by a factor ~ U(noise_speed_range) (its spectrum shifted and its rhythm changed); with probability
    # noise_add_prob a second crop (another draw, also speed-perturbed) is added to it at ~ U(noise_add_db) dB
    # relative to the first, RMS for RMS (scenes of two sources); the sum is then scaled to the drawn SNR
    noise_speed_prob: float = _opt(0.0, check=lambda v: 0 <= v <= 1, what="a probability in [0, 1]")
    noise_speed_range: List[float] = _opt([0.7, 1.4],
                                          check=lambda v: _range_pair(v) and 0.5 <= v[0] and v[1] <= 2.0,
                                          what="[lo, hi] factors with 0.5 <= lo <= hi <= 2")
    noise_add_prob: float = _opt(0.0, check=lambda v: 0 <= v <= 1, what="a probability in [0, 1]")
    noise_add_db: List[float] = _opt([-10.0, 0.0], check=_range_pair, what="[lo, hi] with lo <= hi (dB)")
    # random equalisation (training only, jaxse.data.equalizer): with probability noise_eq_prob the noise (after the
    # options above) and with probability speech_eq_prob the clean speech (the target too) go through a random smooth
    # gain curve (low shelf, high shelf, one bell; each gain ~ U(eq_db) dB), their RMS kept
    noise_eq_prob: float = _opt(0.0, check=lambda v: 0 <= v <= 1, what="a probability in [0, 1]")
    speech_eq_prob: float = _opt(0.0, check=lambda v: 0 <= v <= 1, what="a probability in [0, 1]")
    eq_db: List[float] = _opt([-15.0, 15.0], check=lambda v: _range_pair(v) and -40 <= v[0] and v[1] <= 40,
                              what="[lo, hi] with -40 <= lo <= hi <= 40 (dB)")
    # babble of the training speakers (training only): with probability babble_prob the noise crop is replaced by
    # the sum of k ~ U{babble_talkers} crops of other talkers' clips (another folder than the target's; each looped
    # when short, resampled by a factor ~ U(babble_speed_range), scaled to equal RMS); the noise_add and noise_eq
    # options then act on it as on a noise crop, and the sum is scaled to the drawn SNR
    babble_prob: float = _opt(0.0, check=lambda v: 0 <= v <= 1, what="a probability in [0, 1]")
    babble_talkers: List[int] = _opt([3, 6], check=lambda v: _range_pair(v) and 1 <= v[0] and v[1] <= 16,
                                     what="[lo, hi] talker counts with 1 <= lo <= hi <= 16")
    babble_speed_range: List[float] = _opt([1.0, 1.0],
                                           check=lambda v: _range_pair(v) and 0.5 <= v[0] and v[1] <= 3.0,
                                           what="[lo, hi] factors with 0.5 <= lo <= hi <= 3")
    # synthetic tonal interferers (training only, jaxse.data.tonal): with probability tonal_prob the noise crop is
    # replaced by 1-3 harmonic tones (whistles, horns, calls: 80-2,000 Hz fundamentals, glides, vibrato), then the
    # noise_add and noise_eq options act on it as on a noise crop
    tonal_prob: float = _opt(0.0, check=lambda v: 0 <= v <= 1, what="a probability in [0, 1]")


@dataclass
class RirOptions:
    rir_dirs: List[str] = _opt([])  # folders of room impulse responses (convolved with the clean speech)
    rir_target: str = _opt("dry", **_one_of("dry", "reverberant"))
    rir_prob: float = _opt(1.0, check=lambda v: 0 <= v <= 1, what="a probability in [0, 1]")
    # per example, a synthetic room (direct path, early reflections, tail with t60 ~ U(synthetic_rir_t60) s) in
    # place of a file from rir_dirs; needs no RIR set
    synthetic_rir_prob: float = _opt(0.0, check=lambda v: 0 <= v <= 1, what="a probability in [0, 1]")
    synthetic_rir_t60: List[float] = _opt([0.2, 0.8], check=lambda v: _range_pair(v) and v[0] > 0,
                                          what="[lo, hi] seconds with 0 < lo <= hi")


@dataclass
class PairedData(FileData):
    """Pre-mixed noisy/clean pairs matched by relative path."""

    kind: str = _opt("paired", **_one_of("paired"))
    train_noisy_dir: str = MISSING
    train_clean_dir: str = MISSING
    valid_noisy_dir: str = "${.test_noisy_dir}"
    valid_clean_dir: str = "${.test_clean_dir}"
    test_noisy_dir: str = MISSING
    test_clean_dir: str = MISSING


@dataclass
class MixData(FileData, MixingOptions, RirOptions):
    """Clean speech folders + noise folders, mixed on the fly."""

    kind: str = _opt("mix", **_one_of("mix"))
    clean_dirs: List[str] = MISSING
    noise_dirs: List[str] = MISSING  # [] = synthetic noise only
    valid_clean_dirs: Optional[List[str]] = None  # held-out folders for valid/test (null: the training folders)
    valid_noise_dirs: Optional[List[str]] = None
    test_clean_dirs: Optional[List[str]] = None
    test_noise_dirs: Optional[List[str]] = None


@dataclass
class DemoData(FileData, MixingOptions, RirOptions):
    """The embedded demo corpus, mixed on the fly."""

    kind: str = _opt("demo", **_one_of("demo"))


@dataclass
class TfdsData(DataConfig, MixingOptions, RirOptions):
    """TFDS datasets prepared once (manual download) into ArrayRecord files, then read by index (16 kHz mono)."""

    kind: str = _opt("tfds", **_one_of("tfds"))
    name: str = _opt("voicebank_demand", **_one_of("voicebank_demand", "dns_challenge"))
    data_dir: str = MISSING
    manual_dir: str = MISSING
    train_split: str = "train"
    valid_split: str = "test"
    test_split: str = "test"
    eval_holdout_percent: float = _opt(2.0, check=lambda v: 0 < v < 50, what="a percentage in (0, 50)")


DATA_KINDS: Dict[str, type] = {"paired": PairedData, "mix": MixData, "demo": DemoData, "tfds": TfdsData}


# ================================================================================================ the run
@dataclass
class OptimConfig(_Mapping):
    lr: float = _opt(1e-3, **_num_gt(0))  # Adam (both papers)
    clip_norm: Optional[float] = _opt(5.0, check=lambda v: v is None or v > 0, what="null or a number > 0")
    warmup_steps: int = _opt(0, **_int_ge(0))
    plateau_patience: int = _opt(2, **_int_ge(1))  # validations without improvement before the rate is cut
    plateau_factor: float = _opt(0.5, check=lambda v: 0 < v <= 1, what="a number in (0, 1]")
    min_lr: float = _opt(1e-5, check=lambda v: v >= 0, what="a number >= 0")
    # plateau: halve on validation plateaus (plateau_*); cosine: warm-up then cosine decay to min_lr at max_steps
    schedule: str = _opt("plateau", **_one_of("plateau", "cosine"))


@dataclass
class TrainerConfig(_Mapping):
    max_steps: int = _opt(1000, **_int_ge(1))
    log_every: int = _opt(25, **_int_ge(1))
    eval_every: int = _opt(250, **_int_ge(1))
    ckpt_every: int = _opt(250, **_int_ge(1))
    keep: int = _opt(3, **_int_ge(1))  # checkpoints kept besides the best one
    max_nonfinite: int = _opt(5, **_int_ge(1))  # consecutive skipped (non-finite) updates that stop the run
    final_report: bool = True  # PESQ/STOI/SI-SNR of the enhanced test split after training
    report_workers: int = _opt(2, **_int_ge(0))
    report_dnsmos: bool = True  # the final report also scores DNSMOS SIG/BAK/OVRL (no reference needed)
    progress: bool = True  # tqdm bar on process 0
    tune_malloc: bool = True  # glibc mallopt: fewer page faults per step, higher RSS
    conv_lowering: str = _opt("auto", **_one_of("auto", "matmul", "xla"))  # see jaxse.nn
    compile_cache: Optional[str] = "auto"  # JAX persistent compilation cache: auto (~/.cache/jaxse/xla), a folder, null
    # Fine-tuning: a new run (no checkpoint in the workdir yet) starts from the weights of this checkpoint (a
    # training workdir, a checkpoint folder or pretrained:NAME) with a fresh optimiser; resume still wins.
    init_from: Optional[str] = _opt(None, check=lambda v: v is None or v != "", what="null or a checkpoint path")


@dataclass
class DistributedConfig(_Mapping):
    coordinator_address: Optional[str] = _opt(None, check=lambda v: v is None or ":" in v,
                                              what="null or host:port")
    num_processes: Optional[int] = _opt(None, check=lambda v: v is None or v >= 1, what="null or an integer >= 1")
    process_id: Optional[int] = _opt(None, check=lambda v: v is None or v >= 0, what="null or an integer >= 0")


@dataclass
class TrainConfig(_Mapping):
    """``python -m jaxse.train``: everything a run is."""

    name: str = _opt(check=lambda v: v != "", what="a non-empty string")
    workdir: str = _opt("runs/${name}", check=lambda v: v != "", what="a directory path")
    seed: int = _opt(0, **_int_ge(0))
    model: Dict[str, Any] = field(default_factory=lambda: {"name": MISSING})  # registry name + model options
    loss: str = _opt("si_snr", **_one_of("si_snr", "magnitude_mse", "si_snr_mrstft", "si_snr_sd"))
    # keyword options of the loss (si_snr_sd: sd_weight, sd_mid_snr, sd_ramp_db, stoi_weight, speech_stoi_weight)
    loss_options: Dict[str, Any] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    data: Any = MISSING  # one of DATA_KINDS, chosen by data=NAME

    @property
    def model_name(self) -> str:
        return self.model["name"]

    @property
    def model_options(self) -> dict:
        """Constructor overrides of the model (``cfg.model`` without ``name``)."""
        return {k: v for k, v in self.model.items() if k != "name"}


def _register() -> None:
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    for kind, cls in DATA_KINDS.items():
        cs.store(group="data", name=f"{kind}_schema", node=cls)


# ================================================================================================ composition
def config_dir() -> Path:
    """The folder holding ``train.yaml``, ``experiment/`` and ``data/`` (installed as package ``jaxse.experiments``)."""
    try:
        from importlib.resources import files

        d = Path(str(files("jaxse.experiments")))
        if (d / "train.yaml").is_file():
            return d
    except ModuleNotFoundError:
        pass
    d = Path(__file__).resolve().parent.parent / "experiments"  # running from a source checkout
    if (d / "train.yaml").is_file():
        return d
    raise ConfigError("cannot find the experiments config folder (package jaxse.experiments)")


def options(group: str) -> list[str]:
    """Names of the configs of a group, e.g. ``options("experiment")``."""
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def one_line(msg: Any) -> str:
    """A (possibly multi-line) message as one line."""
    return " ".join(part.strip() for part in str(msg).strip().splitlines() if part.strip())


def _explain(exc: Exception) -> str:
    text = str(exc)
    cause = exc.__cause__ or exc.__context__
    full = text + ("\n" + str(cause) if cause else "")
    for group in ("experiment", "data"):
        if f"Could not find '{group}/" in full:
            bad = full.split(f"Could not find '{group}/", 1)[1].split("'", 1)[0]
            return f"unknown {group} {bad!r}; available: {', '.join(options(group))}"
    if "not in struct" in full or "Could not override" in full or "Key '" in full and "not in" in full:
        key = full.split("Could not override '", 1)[1].split("'", 1)[0] if "Could not override '" in full else \
            full.split("full_key: ", 1)[1].split()[0] if "full_key: " in full else "?"
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        return f"unknown config key {key!r}" + (f" (under {parent!r})" if parent else "") + \
            "; `python -m jaxse.train --help` lists the valid keys"
    if "missing mandatory value" in full.lower():
        key = full.split("full_key:", 1)[1].split()[0] if "full_key:" in full else "?"
        return f"missing required config key {key!r}: set it on the command line ({key}=...)"
    if "Error parsing override" in full or "mismatched input" in full:
        return "cannot parse the command line: " + one_line(full)
    if "full_key:" in full and ("Value '" in full or "Invalid type" in full or "Incompatible value" in full):
        key = full.split("full_key:", 1)[1].split()[0]
        val = full.split("Value '", 1)[1].split("'", 1)[0] if "Value '" in full else "?"
        typ = full.split("object_type=", 1)[1].split()[0] if "object_type=" in full else ""
        return f"bad value for {key}: {val!r} (wrong type{' for ' + typ if typ else ''}: " + \
            one_line(text.split("\n")[0]) + ")"
    return one_line(full)


def compose(overrides: Sequence[str] = (), config_name: str = "train") -> TrainConfig:
    """Compose ``experiments/<config_name>.yaml`` with Hydra ``key=value`` overrides onto the schema; validated."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    for o in overrides:
        if "=" not in o:
            raise ConfigError(f"bad argument {o!r}: expected key=value (e.g. experiment=dccrn trainer.max_steps=100)")
    _register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
        OmegaConf.resolve(cfg)
        typed = OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except Exception as e:  # Hydra/OmegaConf errors: one line naming the key
        raise ConfigError(_explain(e)) from None
    finally:
        GlobalHydra.instance().clear()
    validate(typed)
    return typed


def data_config(data: Any) -> DataConfig:
    """A data config as its typed schema object: a ``DataConfig`` passes through; a mapping (e.g. built in a test or
    a notebook) is merged onto the schema of its ``kind`` (defaults filled, unknown keys and bad values rejected)."""
    if isinstance(data, DataConfig):
        return data
    data = OmegaConf.to_container(data, resolve=True) if OmegaConf.is_config(data) else dict(data)
    kind = data.get("kind")
    if kind not in DATA_KINDS:
        raise ConfigError(f"bad value for data.kind: {kind!r} (expected one of {', '.join(DATA_KINDS)})")
    try:
        node = OmegaConf.merge(OmegaConf.structured(DATA_KINDS[kind]), data)
        OmegaConf.resolve(node)
        typed = OmegaConf.to_object(node)
    except Exception as e:
        raise ConfigError(_explain(e).replace("'", "'data.", 1) if "unknown config key" in _explain(e)
                          else _explain(e)) from None
    _check_fields(typed, "data.")
    return typed


def _check_fields(obj: Any, prefix: str = "") -> None:
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            _check_fields(v, f"{prefix}{f.name}.")
            continue
        check = f.metadata.get("check")
        if check is None:
            continue
        try:
            ok = bool(check(v))
        except Exception:  # noqa: BLE001 - a value check() cannot even inspect is a bad value
            ok = False
        if not ok:
            raise ConfigError(f"bad value for {prefix}{f.name}: {v!r} (expected {f.metadata['what']})")


def validate(cfg: TrainConfig) -> None:
    """Ranges of every key (the checks declared in the schema) and that the model exists with these options."""
    _check_fields(cfg)
    from jaxse.models import MODEL_NAMES, get_model

    name = cfg.model_name
    if name not in MODEL_NAMES:
        raise ConfigError(f"bad value for model.name: {name!r} (valid: {', '.join(MODEL_NAMES)})")
    try:
        get_model(name, **cfg.model_options)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"bad model options {cfg.model_options}: {one_line(e)}") from None
    from jaxse import losses

    try:
        losses.get_loss(cfg.loss, **dict(cfg.loss_options))
    except ValueError as e:
        raise ConfigError(f"bad loss_options: {one_line(e)}") from None


def describe(cls: type = TrainConfig, prefix: str = "") -> list[str]:
    """``key: type = default`` lines of a schema (the ``--help`` of the trainer)."""
    lines = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else MISSING)
        if dataclasses.is_dataclass(default):
            lines += describe(type(default), f"{prefix}{f.name}.")
            continue
        typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        what = f.metadata.get("what")
        lines.append(f"  {prefix}{f.name}: {typ} = {default!r}" + (f"  ({what})" if what else ""))
    return lines


def to_container(cfg: Any) -> Any:
    """A typed config as plain dicts and lists (for YAML, JSON and checkpoint metadata)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def save_yaml(cfg: Any, path: str | os.PathLike) -> None:
    """Write ``cfg`` as YAML atomically."""
    from jaxse.io.atomic import write_bytes

    write_bytes(path, OmegaConf.to_yaml(OmegaConf.create(to_container(cfg))).encode("utf-8"))


def compose_data(name: str, overrides: Sequence[str] = ()) -> DataConfig:
    """The data config ``experiments/data/<name>.yaml`` with ``KEY=VALUE`` overrides (keys without ``data.``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    _register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = hydra_compose(config_name="evaluate", overrides=[f"data={name}"] + [f"data.{o}" for o in overrides])
        node = cfg.data
        OmegaConf.resolve(node)
        typed = OmegaConf.to_object(node)
    except Exception as e:  # noqa: BLE001 - Hydra/OmegaConf errors: one line naming the key
        raise ConfigError(_explain(e)) from None
    finally:
        GlobalHydra.instance().clear()
    _check_fields(typed, "data.")
    return typed


#: Folder keys that jaxse writes (created when missing), not inputs that must exist.
OUTPUT_DIRS = ("data_dir", "index_cache_dir")


def check_paths(data: DataConfig) -> None:
    """Every input folder a data config names must exist: ``ConfigError`` naming the key and the path otherwise
    (found before a run writes anything). Folders that are outputs (``tfds`` ``data_dir``) are not checked."""
    for f in dataclasses.fields(data):
        if not (f.name.endswith("_dir") or f.name.endswith("_dirs")) or f.name in OUTPUT_DIRS:
            continue
        value = getattr(data, f.name)
        for d in ([] if value is None else [value] if isinstance(value, str) else list(value)):
            if not Path(d).is_dir():
                why = "does not exist" if not Path(d).exists() else "is not a folder"
                raise ConfigError(f"bad value for data.{f.name}: {str(d)!r} {why}")
