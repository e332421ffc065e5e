"""Which Keras backend trains, and the few things that differ between backends.

The loss (:meth:`mobile_bert_distill.distill.distiller.Distiller.compute_terms`) is
written once in ``keras.ops``. What cannot be shared lives here, one module per
backend, each exposing the same names:

* ``TrainingSteps``: the mixin that gives the distiller its ``train_step``,
  ``test_step``, ``gradients`` and the cross-replica sums of the loss;
* ``make_strategy(name)``: an object with ``scope()`` and
  ``num_replicas_in_sync`` for ``train.strategy``;
* ``global_clip_adamw()``: the AdamW the kit trains with (it clips the global gradient);
* ``check_precision(policy)``: refuses a ``train.mixed_precision`` the platform cannot run;
* ``training_input(maker, start, end)``, ``heldout_input(maker, steps)``: what ``fit()`` reads;
* ``summary_writer(logdir)``: a TensorBoard writer or ``None``;
* ``enable_determinism()``.

Modules: :mod:`.tensorflow_backend` (``tf.distribute``, ``tf.data``, tf-text)
and :mod:`.jax_backend` (``keras.distribution``, a NumPy loader, no
TensorFlow import anywhere on its path). PyTorch is refused with one line:
Keras's torch trainer needs its own step, and the kit does not ship code it
does not test.

The backend is chosen the Keras way, by ``KERAS_BACKEND``, before Keras is
imported; :func:`select` does that for the ``--backend`` option.

Example:
>>> name = current()
>>> name in BACKENDS
True
"""

import importlib
import importlib.util
import os
import sys

from mobile_bert_distill.errors import UserError

BACKENDS = ("tensorflow", "jax", "torch")
DEFAULT = "tensorflow"
TRAINING_BACKENDS = ("tensorflow", "jax")
# What installs each backend (`pip install "mobile-bert-distill[EXTRA]"`; TensorFlow is a core dependency).
INSTALL_HINT = {"tensorflow": "pip install mobile-bert-distill",
                "jax": 'pip install "mobile-bert-distill[jax]"',
                "torch": "pip install torch"}
_MODULE = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def current():
    """The backend Keras uses (or will use, when Keras is not imported yet)."""
    if "keras" in sys.modules:
        import keras

        return keras.backend.backend()
    return os.environ.get("KERAS_BACKEND", DEFAULT)


def is_tensorflow():
    return current() == "tensorflow"


def check(name, training=True):
    """Raise :class:`UserError` unless ``name`` is a backend this kit can use here."""
    if name not in BACKENDS:
        raise UserError(f"unknown Keras backend {name!r}: use one of {', '.join(BACKENDS)}")
    if training and name not in TRAINING_BACKENDS:
        raise UserError(f"the {name} backend is not supported for training: use "
                        f"{' or '.join(TRAINING_BACKENDS)}")
    if importlib.util.find_spec(_MODULE[name]) is None:
        raise UserError(f"the {name} backend is not installed ({INSTALL_HINT[name]})")
    return name


def select(name):
    """Make ``name`` the Keras backend of this process (before Keras is imported)."""
    check(name)
    if "keras" in sys.modules and current() != name:
        raise UserError(f"Keras is already running on {current()}; start a new process for {name}")
    os.environ["KERAS_BACKEND"] = name
    return name


def module():
    """The module of the current backend (``tensorflow_backend`` or ``jax_backend``)."""
    name = check(current())
    return importlib.import_module(f"mobile_bert_distill.distill.backends.{name}_backend")


def training_steps():
    """The ``train_step``/``test_step`` mixin of the current backend."""
    return module().TrainingSteps
