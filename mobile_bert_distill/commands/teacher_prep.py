"""`mbd teacher-prep`: train the teacher's MLM heads (and optionally its encoder) before distillation."""

from mobile_bert_distill.commands.distill import add_run_arguments, strategy_overrides


def register(sub):
    p = sub.add_parser(
        "teacher-prep", help="train the teacher's two MLM heads on the corpus (a cached stage before distil)",
        description="A pretrained encoder without an MLM head (e.g. a sentence-embedding BERT) must learn "
                    "its heads before it can teach. This runs the distillation config in mode 'teacher': "
                    "teacher loss only (both heads, dual-vocabulary input at dual.p_dt), no student loss, "
                    "and writes OUT/teacher. Use it afterwards as teacher.source: OUT/teacher. "
                    "Freeze the encoder with --override teacher.trainable=false (heads only, faster).")
    p.add_argument("--config", required=True, metavar="CONFIG.yaml",
                   help="run configuration (see mobile_bert_distill/configs/; its mode is replaced by 'teacher')")
    p.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override config keys, e.g. train.steps=500 teacher.trainable=false")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (DIR/teacher is the result)")
    add_run_arguments(p)
    p.set_defaults(func=run)


def run(args):
    from mobile_bert_distill.distill import config
    from mobile_bert_distill.distill.run import distill

    data, base = config.load_yaml(args.config)
    cfg = config.resolve(data, list(args.override) + strategy_overrides(args) + ["mode=teacher"], base_dir=base)
    summary = distill(cfg, out_dir=args.out, overwrite=args.overwrite, restart=args.restart,
                      progress=not args.no_progress)
    final = summary.get("final", {})
    shown = ", ".join(f"{k} {final[k]:.4f}" for k in ("l_ce_teacher", "teacher_acc_tvocab", "teacher_acc_svocab")
                      if k in final)
    print(f"teacher prepared: {summary['steps']} steps in {summary['seconds']} s; {shown}; "
          f"use teacher.source: {args.out}/teacher")
    return 0
