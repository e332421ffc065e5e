"""`mbd`: the command-line shell over the library.

Each verb lives in ``mobile_bert_distill/commands/<verb>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func``. Any
:class:`~mobile_bert_distill.errors.UserError`, and any ``OSError`` a user can
fix (permissions, a read-only or full disk, a path that is a file where a folder
is expected, ...), becomes one line on stderr and exit code 2. Anything else is
a bug of the kit: one line saying so, exit code 1, and the traceback only with
``--debug`` (or ``MBD_DEBUG=1``).
"""

import argparse
import errno
import importlib
import os
import pkgutil
import sys

from mobile_bert_distill import __version__
from mobile_bert_distill.errors import UserError

# OSError numbers that come from the user's paths and machine, not from a bug of the kit
USER_OS_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR,
                  errno.EISDIR, errno.EEXIST, errno.ENOENT, errno.ENAMETOOLONG, errno.ENOTEMPTY, errno.EXDEV}


def _quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")


def _choose_backend(args):
    """Set ``KERAS_BACKEND`` before Keras is imported: ``--backend``, else the variable, on the verbs
    that have the option (distill, teacher-prep, eval); TensorFlow on every other verb."""
    from mobile_bert_distill.distill import backends

    if "backend" not in args:
        os.environ["KERAS_BACKEND"] = backends.DEFAULT
        return
    backends.select(args.backend or os.environ.get("KERAS_BACKEND") or backends.DEFAULT)


def _import_tensorflow_quietly():
    """Import TensorFlow with its start-up chatter (oneDNN, CUDA probing) kept off the terminal.

    Set ``MBD_VERBOSE=1`` to see it. Verbs that must not import TensorFlow set
    ``light=True`` in their parser defaults.
    """
    if os.environ.get("MBD_VERBOSE") or "tensorflow" in sys.modules:
        return
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        try:
            import tensorflow  # noqa: F401
        except ImportError:
            pass
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _Parser(argparse.ArgumentParser):
    """argparse with the kit's error format: one line, ``mbd: error: ...``, exit code 2."""

    def error(self, message):
        verb = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        hint = f"; see mbd {verb} --help" if verb else "; see mbd --help"
        self.exit(2, f"mbd: error: {' '.join(message.split())}{hint}\n")


def build_parser():
    from mobile_bert_distill import commands

    parser = _Parser(
        prog="mbd",
        description=(
            "mobile-bert-distill: learn a small student vocabulary, distil a BERT "
            "teacher into a tiny student (dual-vocabulary training + shared "
            "projections), export it to LiteRT and benchmark it."
        ),
    )
    parser.add_argument("--version", action="version", version=f"mbd {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an unexpected error (also: MBD_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"mobile_bert_distill.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv=None):
    _quiet_tensorflow()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _choose_backend(args)
        if not getattr(args, "light", False):
            _import_tensorflow_quietly()  # keras-hub imports it on any backend where it is installed
        result = args.func(args)
    except UserError as e:
        return _error(_with_remedy(e, args))
    except OSError as e:
        if e.errno not in USER_OS_ERRORS:
            return _bug(e, args)
        where = " -> ".join(str(p) for p in (e.filename, e.filename2) if p is not None)
        return _error(f"{e.strerror or e}: {where}" if where else f"{e.strerror or e}")
    except KeyboardInterrupt:
        print("mbd: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        return _bug(e, args)
    return int(result or 0)


def _with_remedy(error, args):
    """The message of a :class:`UserError`, plus the flag that resolves it when this verb has one."""
    if error.option and error.option in vars(args):
        flag = "--" + error.option.replace("_", "-")
        return f"{error} (pass {flag}{' ' + error.purpose if error.purpose else ''})"
    return str(error)


def _error(message):
    print(f"mbd: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def _bug(exc, args):
    if args.debug or os.environ.get("MBD_DEBUG"):
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    detail = " ".join(str(exc).split())[:300]
    print(f"mbd: internal error (a bug in mobile-bert-distill): {type(exc).__name__}"
          + (f": {detail}" if detail else "") + ("" if args.debug else "; rerun with --debug for the traceback"),
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
