"""What ``mbd finetune`` trains from a preset, by student architecture, and which options each takes.

* ``bert``: the preset itself fine-tuned as a classifier (:func:`~mobile_bert_distill.downstream.
  finetune.finetune`), optionally with soft-target KD and FastBERT exits;
* ``bilstm``: a BiLSTM over the preset's vocabulary distilled from a teacher classifier
  (:func:`~mobile_bert_distill.downstream.bilstm.distill_bilstm`, Tang et al. 2019).

A classifier that is already fine-tuned can get its early exits alone (:func:`add_exits_to`).

An option that only the other architecture takes is refused, not ignored.

Example::

    train_classifier("out/student", "train.csv", "eval.csv", "bilstm/", arch="bilstm",
                     teacher_classifier="teacher_clf/", n_iter=10)
"""

from mobile_bert_distill.errors import UserError

ARCHS = ("bert", "bilstm")
#: Options of one architecture only; ``None`` (or ``False``) means "not given".
BERT_ONLY = ("alpha", "temperature", "kd_loss", "early_exit", "exit_corpus", "exit_epochs", "exit_augment")
BILSTM_ONLY = ("lstm_units", "dense_units", "p_mask", "p_ng", "n_iter")
_AUGMENTATION = ("p_mask", "p_ng", "n_iter")
_EXITS = ("exit_corpus", "exit_epochs", "exit_augment")
#: What training the exits of a classifier that is already fine-tuned takes (:func:`add_exits_to`).
EXITS_ONLY = ("text_column", "label_column", "seed", "overwrite", "early_exit") + _EXITS


def check_options(arch, options):
    """Refuse an unknown ``arch``, the other architecture's options and exit settings without
    ``early_exit``; returns the options that were given (neither ``None`` nor ``False``)."""
    if arch not in ARCHS:
        raise UserError(f"unknown architecture {arch!r}: one of {', '.join(ARCHS)}")
    given = {k: v for k, v in options.items() if v is not None and v is not False}
    other, foreign = ("bilstm", BILSTM_ONLY) if arch == "bert" else ("bert", BERT_ONLY)
    wrong = [n for n in foreign if n in given]
    if wrong:
        raise UserError(f"{', '.join(wrong)} appl{'ies' if len(wrong) == 1 else 'y'} only to arch {other}")
    exit_settings = [n for n in _EXITS if n in given]
    if exit_settings and not given.get("early_exit"):
        raise UserError(f"{', '.join(exit_settings)} appl{'ies' if len(exit_settings) == 1 else 'y'} only "
                        "with early exits", option="early_exit", purpose="to train them")
    return given


def train_classifier(model_dir, train_csv, eval_csv, out_dir, *, arch=None, **options):
    """Train the classifier of architecture ``arch`` from the preset ``model_dir``; returns its metrics.

    Args:
        model_dir, train_csv, eval_csv, out_dir: as :func:`~mobile_bert_distill.downstream.finetune.finetune`.
        arch: one of :data:`ARCHS` (``None``: ``bert``).
        **options: keyword options of ``finetune`` or ``distill_bilstm`` (``None``: that function's
            default); ``early_exit=True`` with ``exit_corpus``/``exit_epochs``/``exit_augment`` sets up
            FastBERT exits, ``p_mask``/``p_ng``/``n_iter`` the BiLSTM's augmentation.
    """
    arch = arch or "bert"
    given = check_options(arch, options)
    if arch == "bilstm":
        from mobile_bert_distill.downstream.bilstm import distill_bilstm
        from mobile_bert_distill.downstream.bilstm_augment import Augmentation

        augmentation = Augmentation(**{n: given.pop(n) for n in _AUGMENTATION if n in given})
        return distill_bilstm(model_dir, train_csv, eval_csv, out_dir, augmentation=augmentation, **given)
    from mobile_bert_distill.downstream.finetune import finetune

    if given.pop("early_exit", False):
        given["early_exit"] = _exit_training(given)
    return finetune(model_dir, train_csv, eval_csv, out_dir, **given)


def add_exits_to(classifier_dir, train_csv, eval_csv, out_dir, **options):
    """Train only the early exits of the fine-tuned classifier ``classifier_dir``
    (:func:`~mobile_bert_distill.downstream.finetune.add_exits`); ``options`` as
    :func:`train_classifier`'s, of which only :data:`EXITS_ONLY` apply, ``early_exit`` required."""
    from mobile_bert_distill.downstream.finetune import add_exits

    given = {k: v for k, v in options.items() if v is not None and v is not False}
    wrong = [n for n in given if n not in EXITS_ONLY]
    if wrong:
        raise UserError(f"{', '.join(wrong)} appl{'ies' if len(wrong) == 1 else 'y'} only to fine-tuning a model, "
                        "not to the exits of a classifier that is already fine-tuned")
    if not given.pop("early_exit", False):
        raise UserError("a classifier that is already fine-tuned can only get early exits",
                        option="early_exit", purpose="to train them")
    return add_exits(classifier_dir, train_csv, eval_csv, out_dir, early_exit=_exit_training(given), **given)


def _exit_training(given):
    """The :class:`~mobile_bert_distill.downstream.early_exit.ExitTraining` of the exit options in
    ``given`` (taken out of it)."""
    from mobile_bert_distill.downstream.bilstm_augment import Augmentation
    from mobile_bert_distill.downstream.early_exit import ExitTraining

    augmentation = Augmentation(n_iter=given.pop("exit_augment")) if "exit_augment" in given else None
    return ExitTraining(given.pop("exit_corpus", None), augmentation=augmentation,
                        epochs=given.pop("exit_epochs", None))
