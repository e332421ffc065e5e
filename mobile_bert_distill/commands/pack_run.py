"""`mbd pack-run`: pack a config into one folder that trains offline on JAX (no TensorFlow, no Keras there)."""

from mobile_bert_distill.commands import _types as T


def register(sub):
    from mobile_bert_distill.distill.pack_run import DEFAULT_MAX_LINES, PYTHON_VERSION, TEACHER_DTYPES, WARN_MB

    p = sub.add_parser(
        "pack-run", help="pack a config into one folder that trains offline on a JAX machine without Keras",
        description="Write one folder DIR that trains CONFIG on another machine without network, TensorFlow, "
                    "Keras or keras-hub, whose Python has JAX, NumPy, h5py, safetensors and tokenizers: "
                    "DIR/wheels (keras and keras-hub at this machine's versions and the requirements the target "
                    "lacks), DIR/package (this kit's source), DIR/teacher (the teacher preset, weights as "
                    "bfloat16 safetensors), DIR/data (the first --max-lines lines of each corpus file, the "
                    "vocabularies and a config.yaml with paths relative to it) and DIR/run.py. There, run "
                    "'python3 DIR/run.py [mbd distill arguments]': it installs the wheels the Python lacks into "
                    "DIR/site, rebuilds a float32 teacher and runs 'mbd distill --backend jax' into DIR/out. "
                    "Prints the size of each part and warns above "
                    f"{WARN_MB} MB. DIR is written whole or not at all.",
        epilog="example: mbd pack-run --config my.yaml --override train.steps=20000 --out pack/ && "
               "scp -r pack/ gpu-box: && ssh gpu-box python3 pack/run.py")
    p.add_argument("--config", required=True, metavar="CONFIG.yaml", help="run configuration (as for mbd distill)")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write")
    p.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override config keys before packing, e.g. train.steps=20000 train.batch_size=256 "
                        "(run.py takes more: python3 run.py --override ...)")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--wheels-dir", metavar="DIR",
                   help="take the wheels from DIR instead of downloading them with pip (no network here); "
                        "every one must be there")
    w.add_argument("--no-wheels", action="store_true",
                   help="write no wheels (the target already has keras and keras-hub)")
    p.add_argument("--wheel-cache", metavar="DIR",
                   help="where downloaded wheels are kept (default: $MBD_CACHE_DIR/wheels, else "
                        "~/.cache/mobile_bert_distill/wheels)")
    p.add_argument("--python-version", default=PYTHON_VERSION, metavar="X.Y",
                   help=f"the target's Python, for the wheels (default: {PYTHON_VERSION})")
    p.add_argument("--max-lines", type=T.nonnegative_int, default=DEFAULT_MAX_LINES, metavar="N",
                   help="lines packed from the start of each corpus and held-out file "
                        f"(default: {DEFAULT_MAX_LINES}; 0: all)")
    p.add_argument("--teacher-dtype", choices=TEACHER_DTYPES, default="bfloat16",
                   help="how the teacher weights are stored (default: bfloat16; run.py restores float32)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing DIR")
    p.set_defaults(func=run, light=True)  # no TensorFlow needed


def run(args):
    from mobile_bert_distill.distill.pack_run import pack_run, size_table

    summary = pack_run(args.config, args.out, overrides=args.override, wheels_dir=args.wheels_dir,
                       no_wheels=args.no_wheels, max_lines=args.max_lines, overwrite=args.overwrite,
                       cache_dir=args.wheel_cache, python_version=args.python_version,
                       teacher_dtype=args.teacher_dtype)
    for line in size_table(summary["sizes"]):
        print(line)
    print(f"done: {summary['path']} (there: python3 {summary['path']}/run.py [mbd distill arguments])")
    return 0
