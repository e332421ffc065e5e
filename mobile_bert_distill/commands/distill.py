"""`mbd distill`: train teacher and student together from a YAML config."""


def register(sub):
    p = sub.add_parser(
        "distill", help="distil a teacher into the student (dual training + shared projections)",
        description="Train the dual-vocabulary teacher and the student together: "
                    "L = L_p + epsilon * (L_ce_student + L_ce_teacher). Writes OUT/student (keras-hub preset), "
                    "OUT/teacher, history.json, TensorBoard logs and the resolved config.yaml. "
                    "A killed run resumes from its last checkpoint when the same command is run again.")
    p.add_argument("--config", required=True, metavar="CONFIG.yaml", help="run configuration (see mobile_bert_distill/configs/)")
    p.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override config keys, e.g. mode=nokd train.steps=200 dual.p_dt=0.3")
    p.add_argument("--out", metavar="DIR", help="output directory (default: the config's output_dir)")
    add_run_arguments(p)
    p.set_defaults(func=run)


def add_run_arguments(p):
    """The options every training verb shares (distill, teacher-prep): output policy, progress,
    strategy, backend."""
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("--restart", action="store_true", help="discard an interrupted run instead of resuming it")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_strategy_argument(p)
    add_backend_argument(p)


def add_backend_argument(p):
    """``--backend``: the Keras backend of the run (shared with teacher-prep and eval)."""
    from mobile_bert_distill.distill.backends import TRAINING_BACKENDS

    p.add_argument("--backend", metavar="NAME",
                   help=f"Keras backend: {' or '.join(TRAINING_BACKENDS)} (default: $KERAS_BACKEND, else "
                        "tensorflow); the same as setting KERAS_BACKEND. The student written is the same "
                        "keras-hub preset on either; `mbd export` and `mbd bench` run on tensorflow")


def add_strategy_argument(p):
    """``--strategy``: shorthand for ``--override train.strategy=NAME`` (shared with teacher-prep)."""
    from mobile_bert_distill.distill.config import STRATEGIES

    p.add_argument("--strategy", choices=STRATEGIES,
                   help="device strategy (sets train.strategy): default = one device; on tensorflow, "
                        "mirrored = every local GPU (no GPU: every logical CPU device) and tpu = the TPU "
                        "cores of this host; on jax, data_parallel = every local device "
                        "(keras.distribution.DataParallel). "
                        "train.batch_size is the global batch, split evenly over the replicas")


def strategy_overrides(args):
    return [f"train.strategy={args.strategy}"] if getattr(args, "strategy", None) else []


def run(args):
    from mobile_bert_distill.distill import config
    from mobile_bert_distill.distill.run import distill

    data, base = config.load_yaml(args.config)
    cfg = config.resolve(data, list(args.override) + strategy_overrides(args), base_dir=base)
    summary = distill(cfg, out_dir=args.out, overwrite=args.overwrite, restart=args.restart,
                      progress=not args.no_progress)
    final = summary.get("final", {})
    shown = ", ".join(f"{k} {v:.4f}" for k, v in final.items() if k != "step" and isinstance(v, float))
    print(f"done: {summary['steps']} steps in {summary['seconds']} s; {shown}")
    return 0
