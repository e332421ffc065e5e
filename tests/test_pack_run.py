"""`mbd pack-run`: the offline training folder, its bfloat16 teacher and its run.py (no network)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import tiny_config_dict
from mobile_bert_distill import cli
from mobile_bert_distill.distill import pack_run as packing
from mobile_bert_distill.distill.pack_run import wheels
from mobile_bert_distill.errors import UserError

STEPS = ["train.steps=2", "train.log_every=2", "train.checkpoint_every=2"]


@pytest.fixture(scope="module")
def teacher_dir(tiny_data, tmp_path_factory):
    """A tiny keras-hub BERT preset folder (config.json, model.weights.h5, tokenizer files)."""
    from mobile_bert_distill import text
    from mobile_bert_distill.distill.teacher import random_teacher

    path = str(tmp_path_factory.mktemp("teacher") / "preset")
    backbone, tokenizer = random_teacher(text.load_vocab(tiny_data["teacher_vocab"]), num_layers=2, hidden_dim=32,
                                         num_heads=2, intermediate_dim=64, dropout=0.0)
    backbone.save_to_preset(path)
    tokenizer.save_to_preset(path)
    return path


@pytest.fixture(scope="module")
def config_path(tiny_data, teacher_dir, tmp_path_factory):
    cfg = tiny_config_dict(tiny_data, "dual+up", jit_compile="auto")  # it trains on JAX
    cfg["teacher"] = {"source": teacher_dir, "dropout": 0.0}
    cfg["data"]["heldout"] = tiny_data["heldout"]
    path = tmp_path_factory.mktemp("cfg") / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def packed(config_path, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("pack") / "pack")
    assert cli.main(["pack-run", "--config", config_path, "--out", out, "--no-wheels", "--max-lines", "50"]) == 0
    return out


def _h5_contents(path):
    import h5py

    items = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: items.__setitem__(
            name, (np.asarray(obj[()]) if isinstance(obj, h5py.Dataset) else None, dict(obj.attrs))))
    return items


def test_pack_has_every_part(packed, tiny_data):
    assert sorted(os.listdir(packed)) == ["data", "manifest.json", "package", "run.py", "teacher"]  # --no-wheels
    pkg = os.path.join(packed, "package", "mobile_bert_distill")
    assert os.path.isfile(os.path.join(pkg, "__main__.py"))
    assert os.path.isfile(os.path.join(pkg, "distill", "pack_run", "__init__.py"))
    assert not any("__pycache__" in d for d, _, _ in os.walk(pkg))
    cfg = yaml.safe_load(open(os.path.join(packed, "data", "config.yaml"), encoding="utf-8"))
    d = cfg["data"]
    for rel in d["corpus"] + [d["heldout"], d["student_vocab"]]:
        assert not os.path.isabs(rel) and os.path.isfile(os.path.join(packed, "data", rel)), rel
    assert cfg["teacher"]["source"] == packing.UNPACKED_TEACHER
    with open(os.path.join(packed, "data", d["corpus"][0]), encoding="utf-8") as f:
        head = f.read().splitlines()
    with open(tiny_data["train"], encoding="utf-8") as f:
        assert head == f.read().splitlines()[:50]  # --max-lines 50
    manifest = json.load(open(os.path.join(packed, "manifest.json"), encoding="utf-8"))
    assert manifest["wheels"] == [] and set(manifest["sizes"]) == {"package", "teacher", "data", "run.py"}
    assert manifest["total_bytes"] == sum(manifest["sizes"].values())


def test_teacher_is_bfloat16_and_unpacks_to_float32(packed, teacher_dir, tmp_path):
    from safetensors import deserialize

    packed_file = os.path.join(packed, "teacher", "model.weights.h5.bfloat16.safetensors")
    assert not os.path.exists(os.path.join(packed, "teacher", "model.weights.h5"))
    dtypes = packing.safetensors_dtypes(packed_file)
    assert dtypes and set(dtypes.values()) == {"BF16"}
    with open(packed_file, "rb") as f:  # a valid safetensors file for the reference reader too
        assert {name: info["dtype"] for name, info in deserialize(f.read())} == {k: "BF16" for k in dtypes}
    assert os.path.getsize(packed_file) < 0.6 * os.path.getsize(os.path.join(teacher_dir, "model.weights.h5"))

    dst = str(tmp_path / "teacher")
    assert packing.unpack_teacher(os.path.join(packed, "teacher"), dst) == dst
    original, rebuilt = _h5_contents(os.path.join(teacher_dir, "model.weights.h5")), _h5_contents(
        os.path.join(dst, "model.weights.h5"))
    assert sorted(original) == sorted(rebuilt)  # same HDF5 paths, groups included
    n = 0
    for name, (a, attrs) in original.items():
        b, battrs = rebuilt[name]
        assert attrs.keys() == battrs.keys()
        if a is None:
            continue
        n += 1
        assert b.dtype == a.dtype == np.float32 and b.shape == a.shape
        np.testing.assert_allclose(b, a, rtol=2.0 ** -8, atol=0)  # bfloat16: 8 significant bits
    assert n == len(dtypes)
    for rel in ("config.json", "tokenizer.json", "metadata.json", "assets/tokenizer/vocabulary.txt"):
        with open(os.path.join(teacher_dir, rel), "rb") as f1, open(os.path.join(dst, rel), "rb") as f2:
            assert f1.read() == f2.read(), rel
    assert not os.path.exists(os.path.join(dst, packing.TEACHER_MANIFEST))
    assert packing.unpack_teacher(os.path.join(packed, "teacher"), dst) == dst  # done already: untouched


@pytest.mark.parametrize("dtype,stored,rtol", [("bfloat16", "BF16", 2.0 ** -8), ("float16", "F16", 2.0 ** -11)])
def test_hugging_face_folder_and_heads_round_trip(tmp_path, dtype, stored, rtol):
    from safetensors.numpy import load_file, save_file

    rng = np.random.default_rng(0)
    src = tmp_path / "hf"
    src.mkdir()
    weights = {"embeddings.word": rng.normal(size=(30, 8)).astype("float32"),
               "position_ids": np.arange(8, dtype="int64")[None]}
    save_file(weights, str(src / "model.safetensors"), metadata={"format": "pt"})
    heads = {"student_embedding": rng.normal(size=(12, 4)).astype("float32"),
             "up_projection/0/dual_teacher/up/kernel": rng.normal(size=(4, 8)).astype("float32")}
    np.savez(str(src / "dual_heads.npz"), **heads)
    (src / "config.json").write_text('{"num_hidden_layers": 1}')
    (src / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    (src / "pytorch_model.bin").write_bytes(b"duplicate weights")
    packing.pack_teacher(str(src), str(tmp_path / "packed"), dtype=dtype, log=lambda m: None)
    packed_dtypes = packing.safetensors_dtypes(str(tmp_path / "packed" / f"model.safetensors.{dtype}.safetensors"))
    assert packed_dtypes == {"embeddings.word": stored, "position_ids": "I64"}
    assert not (tmp_path / "packed" / "pytorch_model.bin").exists()
    dst = tmp_path / "unpacked"
    packing.unpack_teacher(str(tmp_path / "packed"), str(dst))
    assert sorted(os.listdir(dst)) == ["config.json", "dual_heads.npz", "model.safetensors", "vocab.txt"]
    back = load_file(str(dst / "model.safetensors"))
    assert back["embeddings.word"].dtype == np.float32 and back["position_ids"].dtype == np.int64
    np.testing.assert_allclose(back["embeddings.word"], weights["embeddings.word"], rtol=rtol)
    np.testing.assert_array_equal(back["position_ids"], weights["position_ids"])
    assert packing.read_safetensors(str(dst / "model.safetensors"))[1] == {"format": "pt"}
    with np.load(str(dst / "dual_heads.npz")) as z:
        assert sorted(z.files) == sorted(heads)
        for k, v in heads.items():
            assert z[k].dtype == np.float32
            np.testing.assert_allclose(z[k], v, rtol=rtol)


def test_moved_pack_trains_with_its_own_package_copy(packed, tmp_path):
    moved = str(tmp_path / "elsewhere" / "p")
    shutil.copytree(packed, moved)  # the module's pack stays for the other tests
    with open(os.path.join(moved, "package", "mobile_bert_distill", "__init__.py"), "a", encoding="utf-8") as f:
        f.write('\nimport sys as _s\n_s.stderr.write("PACKED-COPY-IMPORTED\\n")\n')
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3", MBD_CACHE_DIR=str(tmp_path / "cache"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    setup = subprocess.run([sys.executable, os.path.join(moved, "run.py"), "--setup-only"], cwd=str(cwd), env=env,
                           capture_output=True, text=True, timeout=300)
    assert setup.returncode == 0, setup.stderr[-2000:]
    # the environment for the kit's other scripts: the packed package first, the teacher unpacked, nothing trained
    assert setup.stdout.strip().splitlines()[-1] == "PYTHONPATH=" + os.path.join(moved, "package")
    assert os.path.isdir(os.path.join(moved, "data", packing.UNPACKED_TEACHER))
    assert not os.path.exists(os.path.join(moved, "out"))
    proc = subprocess.run([sys.executable, os.path.join(moved, "run.py"), "--no-progress", "--override", *STEPS],
                          cwd=str(cwd), env=env, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "PACKED-COPY-IMPORTED" in log and "done: 2 steps" in log
    assert os.path.isdir(os.path.join(moved, "data", packing.UNPACKED_TEACHER))
    student = os.path.join(moved, "out", "student")
    for name in ("config.json", "model.weights.h5", "tokenizer.json"):
        assert os.path.isfile(os.path.join(student, name)), name
    assert not os.listdir(cwd)  # everything went into the folder


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mbd: error: "), err
    return err[0]


def test_existing_folder_is_refused(config_path, tmp_path, capsys):
    out = tmp_path / "pack"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert cli.main(["pack-run", "--config", config_path, "--out", str(out), "--no-wheels"]) == 2
    assert "already exists" in _one_error_line(capsys)
    assert os.listdir(out) == ["keep.txt"] and sorted(os.listdir(tmp_path)) == ["pack"]


def _fake_wheels(folder, reqs):
    folder.mkdir()
    for name, version in reqs:
        (folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").write_bytes(b"PK")


def test_wheels_dir_must_hold_every_wheel(config_path, tmp_path, capsys):
    reqs = packing.wheel_requirements()
    assert reqs[:2] == [("keras", wheels._installed_version("keras")),
                        ("keras-hub", wheels._installed_version("keras-hub"))]
    names = {n for n, _ in reqs}
    assert {"absl-py", "rich", "namex", "optree", "regex"} <= names
    assert not names & {"numpy", "h5py", "jax", "jaxlib", "ml-dtypes", "tensorflow-text", "kagglehub", "kagglesdk"}
    _fake_wheels(tmp_path / "wheels", [r for r in reqs if r[0] != "keras-hub"])
    out = tmp_path / "pack"
    args = ["pack-run", "--config", config_path, "--out", str(out), "--wheels-dir", str(tmp_path / "wheels")]
    assert cli.main(args) == 2
    assert f"keras-hub=={dict(reqs)['keras-hub']}" in _one_error_line(capsys)
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["wheels"]
    _fake_wheels(tmp_path / "more", [("keras-hub", dict(reqs)["keras-hub"])])
    shutil.copy(next((tmp_path / "more").iterdir()), tmp_path / "wheels")
    assert cli.main(args) == 0
    assert len(os.listdir(out / "wheels")) == len(reqs)
    assert "total" in capsys.readouterr().out


def test_failed_download_says_to_pass_wheels_dir(monkeypatch, tmp_path):
    def no_network(cmd, **kwargs):
        assert cmd[1:4] == ["-m", "pip", "download"] and "--only-binary=:all:" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version (network unreachable)\n")

    monkeypatch.setattr(wheels.subprocess, "run", no_network)
    with pytest.raises(UserError, match="take the wheels of .* from a folder") as e:
        packing.collect_wheels(str(tmp_path / "w"), cache_dir=str(tmp_path / "cache"), log=lambda m: None)
    assert e.value.option == "wheels_dir"  # the CLI adds: (pass --wheels-dir DIR holding them)


def test_wheel_tags():
    fits = wheels._wheel_fits
    assert fits("keras_hub-0.32.0-py3-none-any.whl", "keras-hub", "0.32.0")
    assert fits("PyYAML-6.0.4-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "pyyaml", "6.0.4")
    assert fits("x-1.0-cp39-abi3-manylinux_2_28_x86_64.whl", "x", "1.0")
    assert not fits("pyyaml-6.0.4-cp311-cp311-manylinux2014_x86_64.whl", "pyyaml", "6.0.4")
    assert not fits("pyyaml-6.0.4-cp312-cp312-macosx_11_0_arm64.whl", "pyyaml", "6.0.4")
    assert not fits("pyyaml-6.0.3-cp312-cp312-manylinux2014_x86_64.whl", "pyyaml", "6.0.4")
    lines = packing.size_table({"wheels": 50e6, "teacher": 20e6})
    assert lines[-2].split() == ["total", "70.00"] and lines[-1].startswith("warning:")
