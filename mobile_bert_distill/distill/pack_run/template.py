"""The ``run.py`` written into a pack: stdlib only, it installs the wheels, unpacks the teacher and trains.

:func:`run_py` fills in :data:`RUN_PY`. What the script does is in its own docstring below;
the teacher is rebuilt by importing :func:`mobile_bert_distill.distill.pack_run.unpack_teacher`
from the packed source tree.
"""

RUN_PY = r'''#!/usr/bin/env python3
"""Train a packed config here, offline, on JAX: `python3 run.py [extra `mbd distill` arguments]`.

Written by `mbd pack-run` (mobile_bert_distill {version}); needs only this folder and a Python
{python} with JAX, NumPy, h5py, safetensors and tokenizers. It

1. installs the wheels in wheels/ that this Python lacks into site/ (`pip install --no-index
   --no-deps --target site`; keras and keras-hub always, unless this Python has the same versions);
   without pip it unzips them, which is what installing a wheel amounts to;
2. rebuilds the float32 teacher preset data/{unpacked}/ from teacher/ (bfloat16 safetensors);
3. runs `python3 -m mobile_bert_distill distill --backend jax --config data/config.yaml --out out`
   with PYTHONPATH=site:package and KERAS_BACKEND=jax, streaming its output, and exits with its code.

`python3 run.py --setup-only` does 1 and 2, prints the PYTHONPATH that runs the kit from this
folder, and stops: for other scripts of the kit (e.g. its benchmarks/table2.py, whose --teacher is
then data/{unpacked}; run them with KERAS_BACKEND=jax).

Extra arguments go to `mbd distill` and win over the ones above, e.g.
    python3 run.py --override train.steps=20000 train.batch_size=256
    python3 run.py --out /scratch/run1 --overwrite
A killed run resumes from its last checkpoint when the same command is run again.
"""

import glob
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
SITE = os.path.join(HERE, "site")
PACKAGE = os.path.join(HERE, "package")
ALWAYS = {{"keras", "keras-hub", "keras_hub"}}  # the versions the kit was packed with


def say(msg):
    print("run.py: " + msg, flush=True)


def canon(name):
    return name.replace("_", "-").replace(".", "-").lower()


def system_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def wheels_to_install():
    todo = []
    for path in sorted(glob.glob(os.path.join(HERE, "wheels", "*.whl"))):
        name, version = os.path.basename(path).split("-")[:2]
        have = system_version(canon(name))
        if have is None or (canon(name) in ALWAYS and have != version):
            todo.append(path)
    return todo


def unzip_wheel(path, target):
    with zipfile.ZipFile(path) as z:
        for member in z.namelist():
            parts = member.split("/")
            if parts[0].endswith(".data"):
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib") or not parts[-1]:
                    continue
                out = os.path.join(target, *parts[2:])
            else:
                out = os.path.join(target, *parts)
            if member.endswith("/"):
                continue
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(member) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)


def install(wheels):
    names = sorted(os.path.basename(w) for w in wheels)
    marker = os.path.join(SITE, ".installed.json")
    if os.path.isfile(marker):
        with open(marker, encoding="utf-8") as f:
            if json.load(f) == names:
                return
    tmp = SITE + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    say(f"installing {{len(wheels)}} wheel(s) into {{SITE}}")
    has_pip = subprocess.call([sys.executable, "-m", "pip", "--version"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0
    if has_pip:
        code = subprocess.call([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                                "--disable-pip-version-check", "--no-warn-script-location",
                                "--target", tmp] + list(wheels))
        if code != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            sys.exit(f"run.py: pip install of the wheels failed (exit code {{code}})")
    else:
        say("no pip in this Python: unzipping the wheels instead")
        for w in wheels:
            unzip_wheel(w, tmp)
    with open(os.path.join(tmp, ".installed.json"), "w", encoding="utf-8") as f:
        json.dump(names, f)
    shutil.rmtree(SITE, ignore_errors=True)
    os.replace(tmp, SITE)


def main(argv):
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    setup_only = "--setup-only" in argv
    wheels = wheels_to_install()
    if wheels:
        install(wheels)
    env = dict(os.environ)
    path = [p for p in (SITE if wheels else None, PACKAGE) if p]
    env["PYTHONPATH"] = os.pathsep.join(path + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["KERAS_BACKEND"] = "jax"
    packed_teacher = os.path.join(HERE, "teacher")
    teacher = os.path.join(HERE, "data", "{unpacked}")
    if os.path.isdir(packed_teacher) and not os.path.isdir(teacher):
        say(f"unpacking the teacher into {{teacher}}")
        code = subprocess.call([sys.executable, "-c", "import sys; from mobile_bert_distill.distill.pack_run import "
                                "unpack_teacher; unpack_teacher(sys.argv[1], sys.argv[2])", packed_teacher, teacher],
                               env=env, cwd=HERE)
        if code != 0:
            return code
    if setup_only:
        print("PYTHONPATH=" + env["PYTHONPATH"], flush=True)
        return 0
    cmd = [sys.executable, "-m", "mobile_bert_distill", "distill", "--backend", "jax",
           "--config", os.path.join(HERE, "data", "config.yaml"), "--out", os.path.join(HERE, "out")] + argv
    say(" ".join(cmd[1:]))
    proc = subprocess.Popen(cmd, env=env, cwd=HERE)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return proc.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''


def run_py(version, python_version, unpacked):
    """The text of ``run.py`` for a pack of kit ``version`` whose target runs Python ``python_version``.

    Args:
        version: ``mobile_bert_distill.__version__``, named in the script's docstring.
        python_version: the target's ``MAJOR.MINOR``.
        unpacked: the folder in ``data/`` where the script rebuilds the float32 teacher preset.
    """
    return RUN_PY.format(version=version, python=python_version, unpacked=unpacked)
