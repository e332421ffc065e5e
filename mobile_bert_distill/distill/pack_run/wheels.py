"""The wheels of a pack: what the target lacks, pinned to this machine's versions, and where they come from.

The target has JAX and its dependencies (:data:`DEVICE_HAS`) but not keras or keras-hub.
:func:`wheel_requirements` walks their requirements for the target's Python;
:func:`collect_wheels` copies a wheel of each from ``--wheels-dir`` or from the download
cache (:func:`default_wheel_cache`), fetching the missing ones with one ``pip download``.

Example:
>>> reqs = wheel_requirements()
>>> [name for name, _ in reqs[:2]]
['keras', 'keras-hub']
"""

import os
import re
import shutil
import subprocess
import sys

from mobile_bert_distill.errors import UserError

PYTHON_VERSION = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
ROOTS = ("keras", "keras-hub")  # pinned to this machine's versions; run.py always installs them
KIT_NEEDS = ("pyyaml", "tqdm")  # imported by this package on the JAX training path
# On the target already (JAX and its dependencies, the listed libraries): never shipped, since
# a copy first on PYTHONPATH could shadow the one JAX was built against.
DEVICE_HAS = ("numpy", "h5py", "safetensors", "tokenizers", "jax", "jaxlib", "ml-dtypes", "opt-einsum", "scipy")
# Requirements of keras-hub left out on purpose, and why.
LEFT_OUT = {
    "tensorflow-text": "TensorFlow; the JAX path tokenizes without it",
    "tensorflow": "not used by the JAX path",
    "kagglehub": "downloads presets (no network there); keras-hub imports without it, but not "
                 "with kagglehub and without kagglesdk",
    "kagglesdk": "only used by kagglehub",
    "sentencepiece": "not used by BERT",
}


def _log(msg):
    print(msg, flush=True)


def default_wheel_cache():
    """``$MBD_CACHE_DIR/wheels``, else ``~/.cache/mobile_bert_distill/wheels``."""
    root = os.environ.get("MBD_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "mobile_bert_distill")
    return os.path.join(root, "wheels")



def _canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_version(name):
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def wheel_requirements(python_version=PYTHON_VERSION):
    """The distributions the target lacks, pinned to the versions installed here.

    Walks the ``Requires-Dist`` of keras and keras-hub (markers evaluated for CPython
    ``python_version`` on Linux x86_64), skipping :data:`DEVICE_HAS` and :data:`LEFT_OUT`, and adds
    :data:`KIT_NEEDS`.

    Args:
        python_version: the target's ``MAJOR.MINOR``.

    Returns:
        A list of ``(name, version)``, keras and keras-hub first.
    """
    import importlib.metadata

    from packaging.markers import Marker
    from packaging.requirements import Requirement

    env = {"python_version": python_version, "python_full_version": python_version + ".0",
           "platform_system": "Linux", "sys_platform": "linux", "os_name": "posix", "platform_machine": "x86_64",
           "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
    skip = {_canon(n) for n in DEVICE_HAS} | {_canon(n) for n in LEFT_OUT}
    order, seen = [], set()
    todo = list(ROOTS) + list(KIT_NEEDS)
    while todo:
        name = todo.pop(0)
        key = _canon(name)
        if key in seen or key in skip:
            continue
        seen.add(key)
        version = _installed_version(name)
        if version is None:
            raise UserError(f"{name} is not installed in {sys.executable}: it must be, to pin the version packed")
        order.append((key, version))
        for text in importlib.metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is None or Marker(str(req.marker)).evaluate(env):
                todo.append(req.name)
    return order


def _wheel_fits(filename, name, version, python_version=PYTHON_VERSION):
    """Is ``filename`` a wheel of ``name==version`` that installs on CPython ``python_version``, Linux x86_64?"""
    if not filename.endswith(".whl"):
        return False
    parts = filename[:-4].split("-")
    if len(parts) < 5 or _canon(parts[0]) != _canon(name) or parts[1] != version:
        return False
    pyt, abi, plat = parts[-3:]
    major, minor = (int(x) for x in python_version.split(".")[:2])
    ok_py = False
    for tag in pyt.split("."):
        if tag in (f"py{major}", f"py{major}{minor}", f"cp{major}{minor}"):
            ok_py = True
        elif "abi3" in abi.split(".") and re.fullmatch(rf"cp{major}(\d+)", tag) and int(tag[3:]) <= minor:
            ok_py = True
    ok_plat = plat == "any" or any(p.startswith("manylinux") and p.endswith("x86_64") for p in plat.split("."))
    return ok_py and ok_plat


def _find_wheel(folder, name, version, python_version):
    if not os.path.isdir(folder):
        return None
    hits = sorted(f for f in os.listdir(folder) if _wheel_fits(f, name, version, python_version))
    return os.path.join(folder, hits[-1]) if hits else None


def _pip_download(missing, cache, python_version, log):
    log(f"downloading {len(missing)} wheel(s) into {cache} (pip download): "
        f"{', '.join(f'{n}=={v}' for n, v in missing)}")
    os.makedirs(cache, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--python-version", python_version, "--implementation", "cp", "--disable-pip-version-check",
           "--dest", cache]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    cmd += [f"{n}=={v}" for n, v in missing]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserError(f"pip download failed ({type(e).__name__}); without network, take the wheels from a "
                        "folder", option="wheels_dir", purpose="DIR holding them") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit code {proc.returncode}"
        raise UserError(f"pip download failed ({last[:300]}); if this machine has no network, take the wheels of "
                        f"{' '.join(f'{n}=={v}' for n, v in missing)} from a folder", option="wheels_dir",
                        purpose="DIR holding them")


def collect_wheels(dest, wheels_dir=None, cache_dir=None, python_version=PYTHON_VERSION, log=_log):
    """Copy the wheels of :func:`wheel_requirements` into ``dest``.

    Args:
        dest: folder to fill (created).
        wheels_dir: take every wheel from this folder, nothing is downloaded; a missing one is an error.
        cache_dir: where downloaded wheels are kept (default :func:`default_wheel_cache`); wheels
            already there are reused, the others fetched with one ``pip download``.
        python_version: the target's ``MAJOR.MINOR``.
        log: progress callback.

    Returns:
        The list of wheel file names copied.
    """
    reqs = wheel_requirements(python_version)
    if wheels_dir is not None:
        source = os.path.abspath(wheels_dir)
        if not os.path.isdir(source):
            raise UserError(f"wheels folder not found: {wheels_dir}")
        for name, version in reqs:
            if _find_wheel(source, name, version, python_version) is None:
                raise UserError(f"no wheel of {name}=={version} for CPython {python_version} on Linux x86_64 "
                                f"in {wheels_dir} (needed: {' '.join(f'{n}=={v}' for n, v in reqs)})")
    else:
        source = os.path.abspath(cache_dir or default_wheel_cache())
        missing = [(n, v) for n, v in reqs if _find_wheel(source, n, v, python_version) is None]
        if missing:
            _pip_download(missing, source, python_version, log)
        for name, version in missing:
            if _find_wheel(source, name, version, python_version) is None:
                raise UserError(f"pip download gave no usable wheel of {name}=={version} for CPython "
                                f"{python_version} on Linux x86_64", option="wheels_dir", purpose="DIR holding one")
    os.makedirs(dest, exist_ok=True)
    names = []
    for name, version in reqs:
        path = _find_wheel(source, name, version, python_version)
        shutil.copy2(path, os.path.join(dest, os.path.basename(path)))
        names.append(os.path.basename(path))
    return names

