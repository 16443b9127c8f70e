"""llama-cpp-python's module layout over allama.

Code written for llama-cpp-python 0.3.36 runs on allama by changing one import::

    import allama.compat.llama_cpp as llama_cpp

Third-party libraries (LangChain, LlamaIndex, Outlines) import `llama_cpp` themselves; for
them, `allama.compat.install()` registers this package as `llama_cpp`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

__all__ = ["install", "installed"]

_PACKAGE = "llama_cpp"
_TARGET = "allama.compat.llama_cpp"


class _AliasLoader(importlib.abc.Loader):
    """Loads `llama_cpp.X` as the module `allama.compat.llama_cpp.X` itself (one object, two names)."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(_TARGET + spec.name[len(_PACKAGE):])

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module was imported under its allama name."""


class _AliasFinder(importlib.abc.MetaPathFinder):
    """Finds `llama_cpp.*` submodules in allama.compat.llama_cpp, ahead of every other finder
    (the path finder would otherwise load a second copy of them from the package's folder)."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(_PACKAGE + "."):
            return None
        if importlib.util.find_spec(_TARGET + fullname[len(_PACKAGE):]) is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader())


_finder = _AliasFinder()


def installed() -> bool:
    """Whether `llama_cpp` is allama's compatibility package in this process."""
    module = sys.modules.get(_PACKAGE)
    return module is not None and module is sys.modules.get(_TARGET)


def install() -> ModuleType:
    """Registers allama.compat.llama_cpp as `llama_cpp` (and its submodules as `llama_cpp.*`)
    in `sys.modules`, so that libraries importing `llama_cpp` get allama; returns the package.

    The trade-off: this is process-wide. Every later `import llama_cpp` in the process, by any
    library, gets allama, even where a real llama-cpp-python is installed, so opt in once, early,
    in the application (not in a library). Calling it again does nothing. It refuses with
    RuntimeError once a real `llama_cpp` has been imported: objects from two implementations
    cannot be mixed, so import order must not decide silently which one a library gets.
    """
    if installed():
        return sys.modules[_PACKAGE]
    real = sorted(name for name in sys.modules if name == _PACKAGE or name.startswith(_PACKAGE + "."))
    if real:
        origin = getattr(sys.modules.get(real[0]), "__file__", None) or "unknown location"
        raise RuntimeError(
            f"allama.compat.install(): a real llama_cpp is already imported ({real[0]} from {origin}); "
            "call install() before anything imports llama_cpp, or use "
            "`import allama.compat.llama_cpp as llama_cpp` explicitly")
    package = importlib.import_module(_TARGET)
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
    sys.modules[_PACKAGE] = package
    # submodules imported before install() are already loaded: register them under llama_cpp.* too
    for name, module in list(sys.modules.items()):
        if name.startswith(_TARGET + "."):
            sys.modules[_PACKAGE + name[len(_TARGET):]] = module
    return package
