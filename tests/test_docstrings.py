"""Every public callable has its own docstring: each name in a module's ``__all__`` and each
public method (and ``forward``) of its classes; the API pages do not inherit docstrings
(``autodoc_inherit_docstrings = False``, so a ``forward`` does not show torch's generic text),
so an override needs its own. No docstring cites a design file the package does not ship."""

import importlib
import inspect
import pkgutil
from pathlib import Path

import pyrogen


def _function(value):
    return value.fget if isinstance(value, property) else getattr(value, "__func__", value)


def _public_modules():
    for info in pkgutil.walk_packages(pyrogen.__path__, "pyrogen."):
        if not info.name.endswith("__main__"):
            yield importlib.import_module(info.name)


def test_every_public_callable_has_its_own_docstring():
    missing = []
    for module in _public_modules():
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name, None)
            if obj is None or inspect.ismodule(obj) or getattr(obj, "__module__", None) != module.__name__:
                continue
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and not (obj.__doc__ or "").strip():
                missing.append(f"{module.__name__}.{name}")
            if not inspect.isclass(obj):
                continue
            for attr, value in vars(obj).items():
                if attr.startswith("_") and attr != "forward":
                    continue
                f = _function(value)
                if inspect.isfunction(f) and not (f.__doc__ or "").strip():
                    missing.append(f"{module.__name__}.{name}.{attr}")
    assert not missing, missing


def test_no_docstring_cites_a_design_file_the_package_does_not_ship():
    root = Path(pyrogen.__file__).parent
    cited = [str(p.relative_to(root)) for p in root.rglob("*.py")
             if any(name in p.read_text() for name in ("framework.md", "conventions.md", "pitfalls.md"))]
    assert not cited, cited
