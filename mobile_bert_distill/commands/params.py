"""``mbd params``: parameter counts of a BERT layout, and the paper's Table 1 beside ours.

Example::

    mbd params                                   # Table 1: paper vs standard layouts
    mbd params --config configs/distill.yaml     # the student of a distill config
    mbd params --hidden-dim 192 --num-layers 12 --vocab-size 4928
    mbd params --config out/student --json       # a keras-hub preset directory
"""

import json

from mobile_bert_distill.commands import _types as T


def register(subparsers):
    p = subparsers.add_parser(
        "params",
        help="parameter counts (and the paper's Table 1)",
        description="Count the parameters of a BERT layout (from a distill config, a keras-hub preset "
                    "directory or flags) and compare with the paper's Table 1.",
    )
    p.add_argument("--config", metavar="PATH",
                   help="distill YAML (its student: section), keras-hub preset dir or config.json")
    p.add_argument("--hidden-dim", type=T.positive_int, help="hidden width (overrides --config's)")
    p.add_argument("--num-layers", type=T.positive_int, help="Transformer layers (overrides --config's)")
    p.add_argument("--num-heads", type=T.positive_int, help="attention heads (overrides --config's)")
    p.add_argument("--intermediate-dim", type=T.positive_int, help="feed-forward width (default: 4 x hidden)")
    p.add_argument("--vocab-size", type=T.positive_int,
                   help="vocabulary rows (overrides --config's; needed when the config names no vocabulary)")
    p.add_argument("--max-positions", type=T.positive_int, help="position table rows (default: 512)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args):
    from mobile_bert_distill.bench import params as P

    flags = {"hidden_dim": args.hidden_dim, "num_layers": args.num_layers, "num_heads": args.num_heads,
             "intermediate_dim": args.intermediate_dim, "vocab_size": args.vocab_size,
             "max_sequence_length": args.max_positions}
    given = {k: v for k, v in flags.items() if v is not None}
    cfg = None
    if args.config:
        cfg = P.load_config(args.config, overrides=given)
    elif given:
        defaults = {"num_layers": 12, "vocab_size": P.PAPER_STUDENT_VOCAB}
        cfg = P.config_from_mapping(given, defaults=defaults)

    table1 = [{"model": n, "paper": a, "standard_layout": b} for n, a, b in P.paper_comparison()]
    if cfg is None:
        if args.json:
            print(json.dumps({"table1": table1}, indent=2))
            return 0
        print("Table 1 of Zhao et al. 2019 vs a standard BERT layout (keras-hub BertBackbone, tied MLM head)")
        print(f"{'model':<28}{'paper':>14}{'standard layout':>18}")
        for row in table1:
            print(f"{row['model']:<28}{row['paper']:>14,}{row['standard_layout']:>18,}")
        print("BERT-base matches exactly. No standard layout with 4928 WordPieces gives the paper's student "
              "counts; students above: 12 layers, 4 heads, feed-forward 4 x hidden, backbone + pooler.")
        return 0

    rows = P.param_rows(cfg)
    counts = P.param_counts(cfg)
    if args.json:
        print(json.dumps({"config": cfg.to_dict(), "rows": [{"component": n, "params": c} for n, c in rows],
                          "totals": counts, "table1": table1}, indent=2))
        return 0
    c = cfg
    albert = "" if c.embedding_dim is None else (
        f", {c.embedding_dim}-d factorised embedding, {c.stored_layers} distinct layer(s)")
    print(f"{'ALBERT-style' if albert else 'BERT'} layout: {c.num_layers} layers, hidden {c.hidden_dim}, "
          f"{c.num_heads} heads, feed-forward {c.intermediate_dim}, vocabulary {c.vocab_size}, "
          f"{c.max_positions} positions{albert}")
    for name, n in rows:
        print(f"  {name:<56}{n:>14,}")
    print(f"  {'backbone + pooler':<56}{counts['backbone_with_pooler']:>14,}"
          f"   {P.size_mb(counts['backbone_with_pooler']):8.2f} MB float32"
          f"  {P.size_mb(counts['backbone_with_pooler'], 1):8.2f} MB int8")
    task = "BertMaskedLM" if c.embedding_dim is None else "AlbertMaskedLM"
    print(f"  {f'+ tied MLM head (keras-hub {task})':<56}{counts['masked_lm']:>14,}")
    print(f"  {'+ NSP head (the paper counts it)':<56}{counts['paper_total']:>14,}")
    base = P.param_counts(P.BERT_BASE)["paper_total"]
    print(f"  BERT-base (paper: {P.PAPER_TABLE1['BERT-base']:,}) / this: {base / counts['paper_total']:.1f}x")
    return 0
