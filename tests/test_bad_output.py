"""Outputs that cannot be written: one line, exit 2, before any long work, nothing left behind."""

import os
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import tiny_config_dict
from mobile_bert_distill.cli import main


def _argv(verb, tiny_data, tmp_path, out):
    cfg = tmp_path / "cfg.yaml"
    if not cfg.exists():
        cfg.write_text(yaml.safe_dump(tiny_config_dict(tiny_data, "dual+up", steps=10, log_every=10)))
    return {
        "vocab": ["vocab", "--corpus", tiny_data["train"], "--size", "120", "--out", out],
        "distill": ["distill", "--config", str(cfg), "--out", out],
        "teacher-prep": ["teacher-prep", "--config", str(cfg), "--out", out],
        "export": ["export", "--student", str(tmp_path / "no_student"), "--out", out + ".tflite"],
        "pack-run": ["pack-run", "--config", str(cfg), "--no-wheels", "--out", out],
        "fetch-demo": ["data", "fetch-demo", "--cache", str(tmp_path / "blocker" / "cache"), "--out", out],
        "fetch-sentiment": ["data", "fetch-sentiment", "--cache", str(tmp_path / "blocker" / "cache"), "--out", out],
    }[verb]


def _snapshot(tiny_data, tmp_path):
    return {p: os.path.getmtime(p) for p in (tiny_data["train"], str(tmp_path / "cfg.yaml"))}


@pytest.mark.parametrize("verb", ["vocab", "distill", "teacher-prep", "export", "pack-run", "fetch-demo",
                                  "fetch-sentiment"])
def test_out_under_a_file(verb, tiny_data, tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    argv = _argv(verb, tiny_data, tmp_path, str(blocker / "sub" / "out"))
    before = _snapshot(tiny_data, tmp_path)
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("mbd: error: cannot write the "), err
    assert f"{blocker} is a file, not a folder" in lines[0]
    assert blocker.read_text() == "x" and _snapshot(tiny_data, tmp_path) == before
    assert sorted(os.listdir(tmp_path)) == ["blocker", "cfg.yaml"]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to drop CAP_DAC_OVERRIDE (a non-root user is tested by the mode bits alone)")
@pytest.mark.parametrize("verb", ["vocab", "distill"])
def test_out_in_a_folder_without_write_permission(verb, tiny_data, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    argv = _argv(verb, tiny_data, tmp_path, str(locked / "out"))
    # root ignores mode bits: drop the capabilities that let it, as a plain user would be
    cmd = ["setpriv", "--bounding-set=-dac_override,-fowner", "--", sys.executable, "-m", "mobile_bert_distill"] + argv
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    finally:
        locked.chmod(0o755)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("mbd:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert lines == [f"mbd: error: cannot write the {'vocabulary' if verb == 'vocab' else 'run'} folder "
                     f"{locked / 'out'}: {locked} is not writable (permissions or a read-only disk)"]
    assert os.listdir(locked) == []


@pytest.mark.parametrize("argv,fragment", [
    (["eval", "--student", "s", "--corpus", "c", "--seed", "-1"], "argument --seed: must be an integer from 0"),
    (["eval", "--student", "s", "--corpus", "c", "--max-batches", "-1"], "argument --max-batches: must be an integer >= 1"),
    (["eval", "--student", "s", "--corpus", "c", "--seq-len", "0"], "argument --seq-len: must be an integer >= 1"),
    (["export", "--student", "s", "--out", "m.tflite", "--num-calibration", "0"], "argument --num-calibration"),
    (["export", "--student", "s", "--out", "m.tflite", "--num-parity", "-5"], "argument --num-parity"),
    (["export", "--student", "s", "--out", "m.tflite", "--min-agreement", "2"], "must be a number from 0 to 1"),
    (["export", "--student", "s", "--out", "m.tflite", "--max-size-mb", "nan"], "must be a finite number"),
    (["finetune", "--student", "s", "--data", "d", "--eval", "e", "--out", "o", "--learning-rate", "-1"],
     "argument --learning-rate: must be a number > 0"),
    (["finetune", "--student", "s", "--data", "d", "--eval", "e", "--out", "o", "--alpha", "1.5"], "argument --alpha"),
    (["bench", "--runs", "0"], "argument --runs"),
    (["bench", "--seq-len", "64,0"], "argument --seq-len: must be an integer >= 1 (got 0)"),
    (["bench", "--threads", ","], "argument --threads: must list at least one integer"),
    (["vocab", "--corpus", "c", "--out", "o", "--size", "x"], "argument --size: must be an integer (got 'x')"),
    (["data", "fetch-sentiment", "--cache", "c", "--eval-fraction", "1"], "argument --eval-fraction"),
    (["predict", "--model", "m", "--threads", "0", "a"], "argument --threads"),
    (["nosuch"], "invalid choice: 'nosuch'"),
])
def test_bad_numbers_are_refused_while_parsing(argv, fragment, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert e.value.code == 2 and len(lines) == 1 and lines[0].startswith("mbd: error: ") and fragment in lines[0], err
    assert "usage:" not in err and os.listdir(tmp_path) == []


def _run_while_held(out, argv):
    """Run ``mbd ARGV`` while another process holds ``out``'s lock; then SIGKILL the holder.

    Returns ``(holder, exit code)``.
    """
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom mobile_bert_distill.atomic import output_lock\n"
         "with output_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n", str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        return holder, main(argv)
    finally:
        holder.kill()
        holder.wait()


def test_second_run_on_the_same_folder_is_refused(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    argv = _argv("distill", tiny_data, tmp_path, str(out))
    holder, code = _run_while_held(out, argv)  # as while a `mbd distill` writes the folder
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"mbd: error: {out} is being written by another process (PID {holder.pid}); "
                                 "wait for it to finish or stop it"]
    assert not out.exists() and not (tmp_path / "run.partial").exists()
    # the lock died with its holder (SIGKILL): the same command now runs, and leaves no lock file behind
    assert main(argv + ["--no-progress"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["cfg.yaml", "run"]


@pytest.mark.parametrize("verb", ["distill", "teacher-prep", "predict"])
def test_binary_input_file_is_one_line(verb, tmp_path, capsys):
    binary = tmp_path / "input.bin"
    binary.write_bytes(b"mode: nokd\n" + bytes(range(128, 256)))
    argv = {"distill": ["distill", "--config", str(binary), "--out", str(tmp_path / "o")],
            "teacher-prep": ["teacher-prep", "--config", str(binary), "--out", str(tmp_path / "o")],
            "predict": ["predict", "--model", str(tmp_path / "m.tflite"), "--input", str(binary)]}[verb]
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and ("not a UTF-8 text file" in err[0] or "is not UTF-8 text" in err[0]), err
    assert sorted(os.listdir(tmp_path)) == ["input.bin"]


@pytest.mark.parametrize("old_kind", ["file", "folder"])
def test_replacing_an_output_leaves_nothing_beside(old_kind, tmp_path):
    from mobile_bert_distill.atomic import replace_dir

    dst, src = tmp_path / "out", tmp_path / "new"
    if old_kind == "file":
        dst.write_text("old")
    else:
        dst.mkdir()
        (dst / "a").write_text("old")
    src.mkdir()
    (src / "b").write_text("new")
    replace_dir(str(src), str(dst))
    assert sorted(os.listdir(tmp_path)) == ["out"] and os.listdir(dst) == ["b"]


def test_csv_field_over_the_csv_limit_is_one_line(tmp_path):
    from mobile_bert_distill.errors import UserError
    from mobile_bert_distill.downstream.finetune import read_labelled_csv

    path = tmp_path / "big.csv"
    path.write_text('text,label\n"' + "a" * 200_000 + '",1\nfine,0\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"big.csv: not a readable CSV \(field larger than field limit"):
        read_labelled_csv(str(path))


@pytest.mark.parametrize("verb", ["vocab", "distill", "teacher-prep", "export", "pack-run", "finetune", "bench"])
def test_existing_output_is_refused_before_any_work(verb, tiny_data, tmp_path, capsys):
    out = tmp_path / "out"
    what = {"vocab": "vocabulary folder", "distill": "run folder", "teacher-prep": "run folder",
            "export": "export output", "pack-run": "pack folder", "finetune": "classifier folder",
            "bench": "benchmark folder"}[verb]
    if verb == "export":
        argv = _argv(verb, tiny_data, tmp_path, str(out))  # the student folder does not even exist
        existing = tmp_path / "out.tflite"
        existing.write_text("an older model")
    else:
        argv = {"finetune": ["finetune", "--student", str(tmp_path / "no_student"), "--data", "train.csv",
                             "--eval", "eval.csv", "--out", str(out)],
                "bench": ["bench", "--baseline", "bert-base", "--out", str(out)],
                }.get(verb) or _argv(verb, tiny_data, tmp_path, str(out))
        out.mkdir()
        existing = out / "results.json"
        existing.write_text("an older output")
    before = sorted(os.listdir(tmp_path))
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    shown = existing if verb == "export" else out
    assert code == 2 and err == [f"mbd: error: the {what} {shown} already exists (pass --overwrite to replace it)"], err
    assert sorted(os.listdir(tmp_path)) == before and "older" in existing.read_text()
    assert verb == "export" or os.listdir(out) == [existing.name]


@pytest.mark.parametrize("verb", ["vocab", "export", "finetune", "bench"])
def test_an_output_another_process_writes_is_refused(verb, tiny_data, tmp_path, capsys):
    out = tmp_path / ("out.tflite" if verb == "export" else "out")
    argv = {"export": _argv("export", tiny_data, tmp_path, str(tmp_path / "out")),
            "finetune": ["finetune", "--student", str(tmp_path / "no_student"), "--data", "train.csv",
                         "--eval", "eval.csv", "--out", str(out)],
            "bench": ["bench", "--baseline", "bert-base", "--out", str(out)],
            }.get(verb) or _argv(verb, tiny_data, tmp_path, str(out))
    holder, code = _run_while_held(out, argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"mbd: error: {out} is being written by another process (PID {holder.pid}); "
                                 "wait for it to finish or stop it"], err
    assert not out.exists()


def test_a_full_disk_is_one_line_and_leaves_nothing(tiny_data, tmp_path, capsys, monkeypatch):
    import errno

    from mobile_bert_distill.text import vocab

    def full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(vocab, "atomic_write_text", full)  # the disk fills up as the vocabulary is written
    out = tmp_path / "v"
    code = main(_argv("vocab", tiny_data, tmp_path, str(out)))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"mbd: error: {os.strerror(errno.ENOSPC)}: "), err
    assert err[0].endswith("vocab.txt") and "Traceback" not in err[0]
    assert sorted(os.listdir(tmp_path)) == ["cfg.yaml"]  # no folder, no staging folder, no lock file
