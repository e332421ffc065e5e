"""Atomic writes: a file or a directory appears complete or not at all.

Example:
>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> atomic_write_text(os.path.join(d, "a.txt"), "hello")
>>> open(os.path.join(d, "a.txt")).read()
'hello'
"""

import contextlib
import json
import os
import shutil
import tempfile

from mobile_bert_distill.errors import OutputExists, UserError


@contextlib.contextmanager
def output_lock(path):
    """Hold ``path + ".lock"`` (an exclusive ``flock``) while ``path`` is being written.

    A second process that asks for the same lock gets :class:`UserError` naming the holder's PID.
    The lock dies with its process (SIGKILL too), so a killed run resumes at once; the lock file
    is removed when the lock is let go, and so are the folders made for it that stayed empty.
    """
    import fcntl

    lock_path = os.path.abspath(path) + ".lock"
    made = _missing_top(os.path.dirname(lock_path))
    os.makedirs(os.path.dirname(lock_path), exist_ok=True)
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise UserError(f"{path} is being written by another process (PID {holder}); "
                            "wait for it to finish or stop it") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder before us removed the file as we opened it: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        yield
    finally:
        os.unlink(lock_path)
        os.close(fd)
        folder = os.path.dirname(lock_path)
        while made is not None:  # from the lock's folder up to the first one made here, while empty
            try:
                os.rmdir(folder)
            except OSError:
                break
            if folder == made:
                break
            folder = os.path.dirname(folder)


def _missing_top(folder):
    """The top-most folder of ``folder``'s path that does not exist yet, or ``None``."""
    top = None
    while not os.path.exists(folder):
        top, folder = folder, os.path.dirname(folder)
    return top


def check_writable(path, what="output"):
    """Raise :class:`UserError` unless ``path`` can be written where it is; call it before long work.

    The nearest existing folder above ``path`` must be a folder (not a file) that this process may
    write into; a read-only disk fails that test too. A full disk shows only when writing.
    """
    path = os.path.abspath(path)
    above = os.path.dirname(path)
    while not os.path.exists(above):
        above = os.path.dirname(above)
    if not os.path.isdir(above):
        raise UserError(f"cannot write the {what} {path}: {above} is a file, not a folder")
    if not os.access(above, os.W_OK | os.X_OK):
        raise UserError(f"cannot write the {what} {path}: {above} is not writable (permissions or a read-only disk)")


def claim_output(path, overwrite=False, what="output"):
    """The one rule for existing outputs, checked before any long work: new unless ``overwrite``.

    If ``path`` already exists (a file, or a folder with anything in it)
    :class:`~mobile_bert_distill.errors.OutputExists` is raised unless ``overwrite``; an empty
    folder counts as absent. The writer then replaces it atomically, so ``overwrite`` leaves
    nothing of the old output beside the new one.
    """
    if overwrite or not os.path.lexists(path):
        return
    if os.path.isdir(path) and not os.path.islink(path) and not os.listdir(path):
        return
    raise OutputExists(path, what)


@contextlib.contextmanager
def locked_output(path, overwrite=False, what="output"):
    """Hold ``path`` for one writer: writable (checked first), locked (:func:`output_lock`), then
    claimed under the lock (:func:`claim_output`), so that of two commands on one output the second
    is refused even when the first has just finished."""
    check_writable(path, what)
    with output_lock(path):
        claim_output(path, overwrite, what)
        yield


@contextlib.contextmanager
def staged_files(paths, overwrite=False, what="output"):
    """Write several files as one output: all of them appear, or none does.

    Yields ``{final_path: staged_path}``, keyed by the paths as given. Write each file at its staged path;
    when the block succeeds every staged file that exists is renamed onto its final path, and
    when it fails nothing is left (no staged file, no folder this call created). Staged files
    lie in a hidden folder beside their final file, so each rename stays on one disk. Every
    final path is first checked with :func:`check_writable` and :func:`claim_output`.

    Example:
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> a, b = os.path.join(d, "m.bin"), os.path.join(d, "sub", "m.json")
    >>> with staged_files([a, b]) as stage:
    ...     for final, tmp in stage.items():
    ...         atomic_write_text(tmp, os.path.basename(final))
    >>> open(b).read()
    'm.json'
    """
    paths = [str(p) for p in paths]
    finals = list(dict.fromkeys(os.path.abspath(p) for p in paths))
    for p in finals:
        if os.path.isdir(p):
            raise UserError(f"the {what} {p} is a folder; give a file name")
        check_writable(p, what)
        claim_output(p, overwrite, what)
    stages, created = {}, []
    try:
        for parent in dict.fromkeys(os.path.dirname(p) for p in finals):
            top = _missing_top(parent)
            if top is not None:
                created.append(top)
            os.makedirs(parent, exist_ok=True)
            stages[parent] = tempfile.mkdtemp(prefix=".mbd-", suffix=".partial", dir=parent)
        staged = {p: os.path.join(stages[os.path.dirname(p)], os.path.basename(p)) for p in finals}
        yield {p: staged[os.path.abspath(p)] for p in paths}
        for p in finals:
            if os.path.exists(staged[p]):
                os.replace(staged[p], p)
        created = []
    finally:
        for d in stages.values():
            shutil.rmtree(d, ignore_errors=True)
        for top in created:
            shutil.rmtree(top, ignore_errors=True)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tmp_sibling(path, suffix=""):
    directory = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix="." + os.path.basename(path) + ".", suffix=suffix + ".tmp", dir=directory
    )
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
    return tmp


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` via a temporary sibling and ``os.replace``."""
    tmp = _tmp_sibling(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@contextlib.contextmanager
def atomic_file(path, suffix=""):
    """Yield a temporary path; rename it onto ``path`` only if the block succeeds.

    ``suffix`` keeps an extension on the temporary name for writers that
    insist on one (e.g. Keras' ``.weights.h5``).
    """
    tmp = _tmp_sibling(path, suffix=suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path, overwrite=False):
    """Yield a temporary directory that is renamed onto ``path`` on success.

    On failure the temporary directory is removed and ``path`` is untouched.
    With ``overwrite=True`` an existing ``path`` is replaced at the very end.
    """
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".", suffix=".partial", dir=parent)
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(path)
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(src, dst):
    """Move the finished directory ``src`` onto ``dst``, replacing an existing ``dst``.

    The old ``dst`` (a folder, or a file in the way) is first renamed aside, so ``dst`` is never
    half-deleted, and then removed.
    """
    if os.path.lexists(dst):
        old = dst.rstrip(os.sep) + ".old"
        _remove(old)
        os.replace(dst, old)
        os.replace(src, dst)
        _remove(old)
    else:
        os.replace(src, dst)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
