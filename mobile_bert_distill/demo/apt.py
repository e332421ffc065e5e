"""Debian packages without installing them: ``apt-get download`` and ``dpkg-deb -x`` into a cache.

:func:`fetch_package` unpacks the first available package of a list into
``CACHE/debs/NAME/`` (reused when already there, then no apt at all);
:class:`Apt` downloads, running ``apt-get update`` at most once and only as
root when the package lists are missing. Every failure is one
:class:`~mobile_bert_distill.errors.UserError` line that points to the
user's own text instead. :func:`run_command` runs every command (tests
replace it, and ``_apt_lists_missing`` and ``_is_root``, on this module).

Example (needs Debian/Ubuntu with apt)::

    from mobile_bert_distill.demo.apt import Apt, fetch_package
    root, info = fetch_package("~/.cache/mbd", ("jargon-text",), Apt(print))
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

from mobile_bert_distill.atomic import atomic_dir
from mobile_bert_distill.errors import UserError

FALLBACK_HINT = "use your own text instead (UTF-8, one paragraph per line)"


def run_command(cmd, cwd=None):
    """Run ``cmd`` and return ``(returncode, stdout + stderr)`` (tests replace this)."""
    try:
        p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as e:
        return 127, str(e)
    return p.returncode, p.stdout


def last_line(out):
    """The last non-warning line of a command's output (at most 200 characters), for a one-line error."""
    lines = [ln.strip() for ln in (out or "").splitlines() if ln.strip() and not ln.startswith("W:")]
    return (lines[-1] if lines else "no output")[:200]


def _apt_unavailable(reason):
    return UserError(f"cannot fetch the demo corpus: {reason}; {FALLBACK_HINT}")


def _check_apt_tools(os_release="/etc/os-release"):
    if shutil.which("apt-get") and shutil.which("dpkg-deb"):
        return
    info = {}
    try:
        with open(os_release, encoding="utf-8") as f:
            pairs = (line.rstrip("\n").split("=", 1) for line in f if "=" in line)
            info = {k: v.strip().strip('"') for k, v in pairs}
    except OSError:
        pass
    missing = " and ".join(t for t in ("apt-get", "dpkg-deb") if not shutil.which(t))
    family = f"{info.get('ID', '')} {info.get('ID_LIKE', '')}".lower()
    if "debian" in family or "ubuntu" in family:
        raise _apt_unavailable(f"{missing} not found on PATH")
    system = info.get("PRETTY_NAME") or info.get("NAME") or sys.platform
    raise _apt_unavailable(f"{missing} not found: this is {system}, not Debian or Ubuntu")


def _apt_lists_missing(lists_dir="/var/lib/apt/lists"):
    return not glob.glob(os.path.join(lists_dir, "*_Packages*"))


def _is_root():
    return hasattr(os, "geteuid") and os.geteuid() == 0


_NOT_FOUND = ("Unable to locate package", "has no installation candidate", "Can't select candidate",
              "No packages found")


class Apt:
    """Downloads .deb files; updates the package lists at most once, and only as root.

    Args:
        log: called with each progress message (one string).
    """

    def __init__(self, log):
        self.log = log
        self.checked = False
        self.updated = False

    def check(self):
        """Raise the one-line :class:`UserError` if apt-get or dpkg-deb is missing."""
        if not self.checked:
            _check_apt_tools()
            self.checked = True

    def download(self, package, dest_dir):
        """Path of the downloaded .deb, or None when the distribution has no such package."""
        self.check()
        self.log(f"[data] apt-get download {package}")
        while True:
            rc, out = run_command(["apt-get", "download", package], cwd=dest_dir)
            debs = glob.glob(os.path.join(dest_dir, "*.deb"))
            if rc == 0 and debs:
                return debs[0]
            if any(s in out for s in _NOT_FOUND):
                if not self.updated and _apt_lists_missing():
                    if not _is_root():
                        raise _apt_unavailable("the apt package lists are missing and 'apt-get update' "
                                               "needs root")
                    self.log("[data] apt package lists are missing: running apt-get update")
                    rc_u, out_u = run_command(["apt-get", "update"])
                    self.updated = True
                    if rc_u != 0:
                        raise _apt_unavailable(f"'apt-get update' failed ({last_line(out_u)})")
                    continue
                return None
            raise _apt_unavailable(f"'apt-get download {package}' failed ({last_line(out)})")


_DEB_INFO = ".mbd-deb.json"


def fetch_package(cache_dir, candidates, apt, log=print):
    """Unpack the first available package of ``candidates`` into ``cache_dir/debs/NAME/``.

    Returns ``(root, info)`` with ``info = {"package", "version", "deb_bytes"}``,
    or ``(None, None)`` when no candidate exists in this distribution. A
    package already unpacked there (complete: written atomically) is reused
    without calling apt.

    Args:
        cache_dir: the cache folder (the packages go to its ``debs/``).
        candidates: Debian package names to try, in order; the first available wins.
        apt: the :class:`Apt` that downloads (one per fetch: it updates the lists at most once).
        log: called with each progress message.
    """
    debs_dir = os.path.join(cache_dir, "debs")
    for name in candidates:
        root = os.path.join(debs_dir, name)
        info_path = os.path.join(root, _DEB_INFO)
        if os.path.isfile(info_path):
            with open(info_path, encoding="utf-8") as f:
                return root, json.load(f)
    apt.check()
    os.makedirs(debs_dir, exist_ok=True)
    for name in candidates:
        root = os.path.join(debs_dir, name)
        tmp = tempfile.mkdtemp(prefix=f".{name}.", suffix=".download", dir=debs_dir)
        try:
            deb = apt.download(name, tmp)
            if deb is None:
                log(f"[data] {name}: not in this distribution's archive")
                continue
            rc, out = run_command(["dpkg-deb", "-f", deb, "Version"])
            version = out.strip() if rc == 0 else "unknown"
            info = {"package": name, "version": version, "deb_bytes": os.path.getsize(deb)}
            with atomic_dir(root, overwrite=True) as unpack:
                rc, out = run_command(["dpkg-deb", "-x", deb, unpack])
                if rc != 0:
                    raise UserError(f"dpkg-deb -x {os.path.basename(deb)} failed: {last_line(out)}")
                with open(os.path.join(unpack, _DEB_INFO), "w", encoding="utf-8") as f:
                    json.dump(info, f)
            log(f"[data] unpacked {name} {version} ({info['deb_bytes'] / 1e6:.1f} MB .deb) into {root}")
            return root, info
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return None, None

