"""Shared fixtures: a tiny generated corpus, tiny vocabularies, tiny configs."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Generated corpus + held-out split + teacher (200) and student (100) vocabularies."""
    from mobile_bert_distill.demo import synthetic
    from mobile_bert_distill import text
    from mobile_bert_distill.text.vocab import learn_vocab

    d = tmp_path_factory.mktemp("tiny_data")
    train = synthetic.write_corpus(str(d / "train.txt"), 600, seed=0)
    held = synthetic.write_corpus(str(d / "held.txt"), 60, seed=1)
    lines = text.read_corpus([train])
    words = text.pretokenize(lines)
    paths = {"train": train, "heldout": held, "dir": str(d)}
    for name, size in (("teacher_vocab", 200), ("student_vocab", 100)):
        tokens = learn_vocab(lines, size=size, words=words)
        p = d / f"{name}.txt"
        p.write_text("\n".join(tokens) + "\n", encoding="utf-8")
        paths[name] = str(p)
    return paths


def tiny_config_dict(tiny_data, mode="dual+up", **train):
    """A tiny run config. Its steps run in TensorFlow's graph mode (``jit_compile: false``): for 20-step
    runs XLA's compile time outweighs its faster steps. Runs on JAX pass ``jit_compile="auto"`` (JAX
    without jit executes op by op)."""
    cfg = {
        "mode": mode,
        "seed": 0,
        "data": {"corpus": [tiny_data["train"]], "student_vocab": tiny_data["student_vocab"],
                 "seq_len": 16, "max_predictions": 3},
        "student": {"hidden_dim": 16, "num_heads": 2, "dropout": 0.0},
        "train": {"steps": 20, "batch_size": 8, "learning_rate": 3e-3, "warmup_steps": 0,
                  "log_every": 10, "checkpoint_every": 10, "clipnorm": None, "jit_compile": False},
    }
    if mode != "nokd":
        cfg["teacher"] = {"random": {"vocabulary": tiny_data["teacher_vocab"], "num_layers": 2,
                                     "hidden_dim": 32, "num_heads": 2, "intermediate_dim": 64},
                          "dropout": 0.0}
    cfg["train"].update(train)
    return cfg


@pytest.fixture
def tiny_config(tiny_data):
    def make(mode="dual+up", overrides=(), **train):
        from mobile_bert_distill.distill import config

        return config.resolve(tiny_config_dict(tiny_data, mode, **train), list(overrides))

    return make
