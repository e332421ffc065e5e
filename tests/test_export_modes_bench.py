"""`benchmarks/export_modes.py`: a cached reference student is reused only for the steps it was trained for."""

import json
import os

from _benchmark_scripts import load_benchmark


def _bench():
    return load_benchmark("export_modes")


def _cached_student(work, marker):
    student = os.path.join(work, "student")
    os.makedirs(student)
    with open(os.path.join(student, "config.json"), "w") as f:
        f.write("{}")
    with open(os.path.join(work, "synthetic.txt"), "w") as f:
        f.write("the capital of france is paris .\n")
    if marker is not None:
        with open(os.path.join(student, "reference_training.json"), "w") as f:
            json.dump(marker, f)
    return student


def test_a_student_cached_for_other_steps_is_refused(tmp_path, capsys):
    bench = _bench()
    work = str(tmp_path / "work")
    _cached_student(work, {"steps": 2000})
    assert bench.main(["--work", work, "--train-steps", "8000", "--modes", "float32"]) == 2
    err = capsys.readouterr().err
    assert "trained for 2000 steps, not --train-steps 8000" in err
    assert len(err.strip().splitlines()) == 1
    assert not os.path.exists(os.path.join(work, "float32.tflite"))


def test_a_student_cached_without_its_steps_is_refused(tmp_path, capsys):
    bench = _bench()
    work = str(tmp_path / "work")
    _cached_student(work, None)
    assert bench.main(["--work", work, "--modes", "float32"]) == 2
    assert "an unknown number of steps" in capsys.readouterr().err


def test_a_student_cached_for_the_same_steps_is_reused(tmp_path):
    bench = _bench()
    work = str(tmp_path / "work")
    _cached_student(work, {"steps": 8000})
    assert bench.main(["--work", work, "--train-only"]) == 0
    assert sorted(os.listdir(os.path.join(work, "student"))) == ["config.json", "reference_training.json"]
