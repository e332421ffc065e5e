"""The Colab notebook and its configuration.

``notebooks/colab_distill.ipynb`` is executed cell by cell with nbclient in a real IPython kernel
(this interpreter, registered as a temporary kernelspec) in its tiny offline mode
(``MBD_NOTEBOOK_TINY=1``: generated corpus, random 2-layer teacher preset, a few steps, float32),
so every code cell — install check, vocabularies, teacher-prep, distill, eval, int8 export, bench,
LiteRT inference, asset download — keeps working. ``mobile_bert_distill/configs/bert_base_colab.yaml`` is checked to
validate without loading its preset.
"""

import json
import os
import re
import shutil
import socket
import sys

import pytest

from mobile_bert_distill import CONFIGS_DIR

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "notebooks", "colab_distill.ipynb")
COLAB_CONFIG = os.path.join(CONFIGS_DIR, "bert_base_colab.yaml")


# ----------------------------------------------------------------------------- the config
def test_colab_config_validates_without_loading_the_preset(tmp_path, monkeypatch):
    import keras_hub

    from mobile_bert_distill.distill import config
    from mobile_bert_distill.distill.config import teacher_depth
    from mobile_bert_distill.distill.run import Run

    def no_network(*a, **k):
        raise AssertionError("the config check touched the network")

    def no_preset(*a, **k):
        raise AssertionError("the config check loaded a preset")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(keras_hub.models.BertBackbone, "from_preset", no_preset)
    monkeypatch.setattr(keras_hub.models.BertTokenizer, "from_preset", no_preset)

    data, base = config.load_yaml(COLAB_CONFIG)
    cfg = config.resolve(data, base_dir=base)
    assert cfg["mode"] == "dual+up"
    assert cfg["teacher"]["source"] == "bert_base_en_uncased" and cfg["teacher"]["random"] is None
    s = cfg["student"]
    assert (s["hidden_dim"], s["num_layers"], s["num_heads"]) == (48, 12, 4)
    assert teacher_depth(cfg["teacher"]) == 12  # BERT-base's depth: layers pair 1:1 without a layer_map
    assert cfg["train"]["mixed_precision"] == "mixed_float16" and cfg["train"]["strategy"] == "default"
    assert cfg["data"]["seq_len"] == 128 and cfg["train"]["batch_size"] >= 32

    # the documented sequence: teacher-prep (mode teacher), then distil from prep/teacher
    prep = config.resolve(data, ["train.steps=2000", "train.warmup_steps=200", "train.eval_every=0",
                                 "mode=teacher"], base_dir=base)
    assert prep["mode"] == "teacher" and prep["teacher"]["trainable"] is False
    run = config.resolve(data, ["teacher.source=prep/teacher", "train.strategy=mirrored",
                                "train.mixed_precision=null"], base_dir=base)
    assert run["teacher"]["source"] == "prep/teacher" and run["train"]["mixed_precision"] is None

    # the inputs stage of a run accepts the preset name as a name (no path check, no download)
    monkeypatch.chdir(tmp_path)
    os.makedirs("corpus")
    os.makedirs("student_vocab")
    for name in ("train", "heldout"):
        with open(f"corpus/{name}.txt", "w", encoding="utf-8") as f:
            f.write("the cat sat on the mat .\n")
    with open("student_vocab/vocab.txt", "w", encoding="utf-8") as f:
        f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat"]) + "\n")
    r = Run(config.resolve(data, base_dir=base), strategy=None, log=lambda m: None)
    assert r.teacher_backbone is None and len(r.student_vocab) == 7


# ----------------------------------------------------------------------------- the notebook
def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _text(cell):
    out = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            out.append(o.get("text", ""))
        elif "data" in o:
            out.append(o["data"].get("text/plain", ""))
    return "".join(out)


def test_notebook_is_a_valid_colab_notebook():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3" and nb.metadata.get("accelerator") == "GPU"
    for cell in _code_cells(nb):  # committed without outputs
        assert not cell.outputs and cell.execution_count is None
    source = "\n".join(c.source for c in nb.cells)
    for needed in ('"bert_base_en_uncased"', '"vocab"', '"teacher-prep"', '"distill"', '"export"', '"bench"',
                   "LiteRTModel", "files.download", "except ImportError", "mixed_bfloat16", "--strategy tpu",
                   "pip install tensorflow", "MBD_NOTEBOOK_TINY", "dual+up"):
        assert needed in source, needed


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    import nbclient
    import nbformat

    tmp = tmp_path_factory.mktemp("notebook")
    kernel_name = f"mbd-test-{os.getpid()}"
    spec_dir = tmp / "jupyter" / "kernels" / kernel_name
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "mobile-bert-distill test venv", "language": "python"}))
    env = {"JUPYTER_PATH": str(tmp / "jupyter"), "MBD_NOTEBOOK_TINY": "1", "MBD_NOTEBOOK_WORK": str(tmp / "work"),
           "MBD_CACHE_DIR": str(tmp / "cache"), "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg",
           "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel, and the `mbd` processes it starts, inherit these
    try:
        nb = nbformat.read(NOTEBOOK, as_version=4)
        client = nbclient.NotebookClient(nb, kernel_name=kernel_name, timeout=600, allow_errors=False,
                                         resources={"metadata": {"path": str(tmp)}})
        try:
            client.execute()
        finally:  # kept for a look at a failure: outputs and per-cell timings
            nbformat.write(nb, str(tmp / "executed.ipynb"))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb, tmp / "work"


@pytest.mark.slow
def test_notebook_runs_every_cell_in_tiny_mode(executed):
    nb, work = executed
    cells = _code_cells(nb)
    assert all(c.execution_count is not None for c in cells)
    assert not [o for c in cells for o in c.outputs if o.get("output_type") == "error"]
    text = "\n".join(_text(c) for c in cells)
    assert "already installed" in text  # the install cell is a no-op here
    assert "tiny mode True" in text
    m = re.search(r"strategy (\w+), precision (\w+)", text)
    assert m and m.group(1) in ("default", "mirrored"), text[:3000]
    if shutil.which("nvidia-smi") is None:  # no GPU: float32, not float16
        assert m.groups() == ("default", "float32")

    # the stages wrote their results
    history = json.loads((work / "run" / "history.json").read_text())
    assert [r["step"] for r in history] == [10, 20]
    run_cfg = (work / "run" / "config.yaml").read_text()
    assert "mode: dual+up" in run_cfg and str(work / "prep" / "teacher") in run_cfg
    assert (work / "prep" / "teacher" / "dual_heads.npz").is_file()
    stats = json.loads((work / "student_vocab" / "vocab_stats.json").read_text())
    assert len((work / "student_vocab" / "vocab.txt").read_text().split("\n")) - 1 == 200, stats

    tflite = work / "export" / "student_int8_s32.tflite"
    assert tflite.is_file() and tflite.stat().st_size > 10_000
    report = json.loads((work / "export" / "student_int8_s32.report.json").read_text())
    assert report["quantization"] == "int8" and report["seq_len"] == 32
    for name in ("model.tflite", "vocab.txt", "model_info.json"):
        assert (work / "android_assets" / name).is_file(), name
    assert (work / "android_assets.zip").is_file()
    assert "not on Colab: nothing to download" in text

    bench = json.loads((work / "bench" / "results.json").read_text())
    assert {m["role"] for m in bench["models"]} >= {"baseline"} and len(bench["results"]) == 2
    markdown = [o for c in cells for o in c.outputs if "text/markdown" in o.get("data", {})]
    assert markdown and "Student vs baseline" in markdown[0]["data"]["text/markdown"]


@pytest.mark.slow
def test_notebook_inference_cell_prints_the_models_fill_mask(executed):
    nb, work = executed
    cell = next(c for c in _code_cells(nb) if "LiteRTModel(" in c.source)
    printed = _text(cell)
    m = re.search(r"fill-mask at position (\d+): (.+)", printed)
    assert m, printed
    shown = [re.fullmatch(r"(\S+) \(([0-9.]+)\)", part).groups() for part in m.group(2).split(", ")]
    assert len(shown) == 5
    probs = [float(p) for _, p in shown]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-3

    # the same model, run here, gives the same answer
    from mobile_bert_distill.litert.inference import LiteRTModel

    model = LiteRTModel(str(work / "export" / "student_int8_s32.tflite"), str(work / "android_assets" / "vocab.txt"))
    mine = model.fill_mask("the small cat [MASK] the bird near the river .", top_k=5)[0][0]
    assert int(m.group(1)) == mine["position"]
    assert [t for t, _ in shown] == [c["token"] for c in mine["candidates"]]
