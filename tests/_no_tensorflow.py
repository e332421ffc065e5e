"""Python source that makes `import tensorflow` and `import tensorflow_text` raise, for `python -c`."""

BLOCK = r"""
import importlib.abc, sys

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_text"):
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Blocked())
"""

# ends a script: neither was imported by another route
NONE_IMPORTED = 'assert not [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_text")]\n'
