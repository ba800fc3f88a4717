"""jaxse.convert.torch_pickle reads torch.save files without torch (the repo venv has no torch)."""

import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from jaxse.convert.torch_pickle import TorchFileError, load_torch_file

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "asteroid")
SMALL_PTH = os.path.join(DATA, "small.pth")


def test_no_torch_needed():
    import sys

    load_torch_file(SMALL_PTH)
    assert "torch" not in sys.modules


def test_small_pth_matches_state_npz():
    conf = load_torch_file(SMALL_PTH)
    assert conf["model_name"] == "DCCRNet"
    assert conf["model_args"]["architecture"] == "tiny"
    assert conf["model_args"]["stft_stride"] == 50
    assert conf["infos"]["software_versions"]["asteroid_version"] == "0.7.0"
    sd = conf["state_dict"]
    ref = np.load(os.path.join(DATA, "small_state.npz"))
    assert list(sd.keys()) == list(ref.files)      # OrderedDict keeps torch's module order
    for k in ref.files:
        got, want = sd[k], ref[k]
        assert isinstance(got, np.ndarray), k
        assert got.dtype == want.dtype and got.shape == want.shape, k
        np.testing.assert_array_equal(got, want, err_msg=k)
    assert sd["masker.encoders.0.norm.re_module.num_batches_tracked"].dtype == np.int64
    assert int(sd["masker.encoders.0.norm.re_module.num_batches_tracked"]) == 7
    assert sd["encoder.filterbank._filters"].shape == (130, 1, 100)


def test_small_pth_matches_io_metadata():
    conf = load_torch_file(SMALL_PTH)
    io = np.load(os.path.join(DATA, "small_io.npz"))
    assert json.loads(str(io["model_args"])) == conf["model_args"]


def test_full_io_metadata_consistent():
    io = np.load(os.path.join(DATA, "full_io.npz"))
    shapes = json.loads(str(io["shapes"]))
    assert list(shapes) == [str(k) for k in io["keys"]]
    assert io["input"].shape == (1, 16000) and io["output"].shape == (1, 1, 16000)
    n_params = sum(int(np.prod(s)) for k, s in shapes.items()
                   if not k.startswith(("encoder.", "decoder.")) and "running_" not in k
                   and "num_batches" not in k)
    assert n_params == 3669336


def test_not_a_zip_raises_with_path(tmp_path):
    bad = tmp_path / "legacy.pth"
    bad.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(TorchFileError, match="legacy.pth"):
        load_torch_file(bad)


def test_zip_without_data_pkl_raises(tmp_path):
    bad = tmp_path / "other.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("x/readme.txt", "hi")
    with pytest.raises(TorchFileError, match="other.zip"):
        load_torch_file(bad)


def test_refuses_arbitrary_globals(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    bad = tmp_path / "evil.pth"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("evil/data.pkl", pickle.dumps(Evil(), protocol=2))
    with pytest.raises(TorchFileError, match="refusing"):
        load_torch_file(bad)
