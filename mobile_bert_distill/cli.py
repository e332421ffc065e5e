"""`mbd`: the command-line shell over the library.

Each verb lives in ``mobile_bert_distill/commands/<verb>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func``. Any
:class:`~mobile_bert_distill.errors.UserError` becomes one line on stderr and
exit code 2.
"""

import argparse
import importlib
import os
import pkgutil
import sys

from mobile_bert_distill import __version__
from mobile_bert_distill.errors import UserError


def _quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")


def _choose_backend(args):
    """Set ``KERAS_BACKEND`` before Keras is imported: ``--backend``, else the variable, on the verbs
    that have the option (distill, teacher-prep, eval); TensorFlow on every other verb."""
    from mobile_bert_distill import backends

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


def build_parser():
    from mobile_bert_distill import commands

    parser = argparse.ArgumentParser(
        prog="mbd",
        description=(
            "mobile-bert-distill: learn a small student vocabulary, distil a BERT "
            "teacher into a tiny student (dual-vocabulary training + shared "
            "projections), export it to LiteRT and benchmark it."
        ),
    )
    parser.add_argument("--version", action="version", version=f"mbd {__version__}")
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
        msg = " ".join(str(e).split())
        print(f"mbd: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mbd: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
