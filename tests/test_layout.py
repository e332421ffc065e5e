"""The package layout's rules: shipped configs are package data, modules stay small, studies stay out."""

import ast
import fnmatch
import os
import re

import mobile_bert_distill
from mobile_bert_distill import CONFIGS_DIR

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.dirname(os.path.abspath(mobile_bert_distill.__file__))
MAX_LINES = 400
# one thing each: the export graph rebuild, the passes over one converted file, the board script
LONG_MODULES = {"export/graph.py", "export/flatbuffer.py", "litert/on_device_bench.py"}


def _modules():
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                yield os.path.relpath(path, PACKAGE).replace(os.sep, "/"), path


def test_shipped_configs_are_package_data():
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        pyproject = f.read()
    globs = re.search(r"\[tool\.setuptools\.package-data\]\s*mobile_bert_distill = \[([^\]]*)\]", pyproject)
    patterns = [g.strip().strip('"') for g in globs.group(1).split(",")]
    shipped = sorted(os.listdir(CONFIGS_DIR))
    assert {"tiny.yaml", "demo.yaml", "bert_base_colab.yaml"} <= set(shipped)
    assert os.path.dirname(CONFIGS_DIR) == PACKAGE
    for name in shipped:
        assert any(fnmatch.fnmatch(f"configs/{name}", p) for p in patterns), name


def test_modules_stay_small_unless_declared():
    sizes = {}
    for rel, path in _modules():
        with open(path, encoding="utf-8") as f:
            sizes[rel] = sum(1 for _ in f)
    too_long = sorted(rel for rel, n in sizes.items() if n > MAX_LINES and rel not in LONG_MODULES)
    assert not too_long, {rel: sizes[rel] for rel in too_long}
    assert LONG_MODULES <= set(sizes)  # the declared exceptions exist (a rename must update the list)


def _tree(path):
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read())


def _imports(path):
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []


def test_product_never_imports_studies_and_studies_use_no_private_names():
    for rel, path in _modules():
        assert not any(mod.startswith("research") for mod, _ in _imports(path)), rel
    research = os.path.join(ROOT, "research")
    studies = [n for n in os.listdir(research) if n.endswith(".py")]
    assert studies
    for name in studies:
        path = os.path.join(research, name)
        kit_aliases = set()
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mobile_bert_distill"):
                assert not any(a.name.startswith("_") for a in node.names), (name, node.module)
                assert not any(part.startswith("_") for part in node.module.split(".")), (name, node.module)
                kit_aliases.update(a.asname or a.name for a in node.names)
        private = [f"{node.value.id}.{node.attr}" for node in ast.walk(_tree(path))
                   if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                   and node.value.id in kit_aliases and node.attr.startswith("_") and not node.attr.startswith("__")]
        assert not private, (name, private)
