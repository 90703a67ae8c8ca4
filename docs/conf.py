"""Sphinx configuration of the pyrogen documentation.

Build with ``.venv/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# pyrogen is installed (editable) in the virtual environment; the path is a
# fallback for a checkout that is not installed.
sys.path.insert(0, os.path.abspath(".."))

import pyrogen  # noqa: E402

project = "pyrogen"
author = "the pyrogen authors"
copyright = "the pyrogen authors"
version = pyrogen.__version__
release = pyrogen.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    # MathJax 3 served from the built docs (_static/mathjax), not a CDN: the equations render
    # without internet (the package copies MathJax's files and sets mathjax_path)
    "sphinx-mathjax-offline",
    # the examples run at build time, with their printed output and pictures (_ext/example_pictures.py)
    "sphinx_gallery.gen_gallery",
]

sys.path.insert(0, str(Path(__file__).parent / "_ext"))
from example_pictures import ExampleArguments  # noqa: E402

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "tutorials",
    "filename_pattern": r"\.py$",          # run every example, not only plot_*.py
    "reset_argv": ExampleArguments(),
    "image_scrapers": ("example_pictures", "matplotlib"),
    "abort_on_example_error": True,         # an example that fails fails the build
    "download_all_examples": False,
    "remove_config_comments": True,
    "min_reported_time": 1,
}
# sphinx-gallery's configuration holds callables, which Sphinx cannot cache: said, not a problem
suppress_warnings = ["config.cache"]

source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]
templates_path: list[str] = []

nitpicky = False
default_role = None
pygments_style = "sphinx"

# -- autodoc ---------------------------------------------------------------
# Docstrings are reST with :param: fields (as in Pyro); nothing is mocked,
# everything pyrogen imports is installed.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autoclass_content = "class"
# An undocumented override (e.g. ``forward``) would otherwise show the
# docstring of torch.nn.Module.forward or of Pyro's ELBO.
autodoc_inherit_docstrings = False

# -- HTML ------------------------------------------------------------------
html_theme = "alabaster"
html_theme_options = {
    "description": "Deep generative models as Pyro model/guide pairs",
    "fixed_sidebar": True,
}
html_static_path: list[str] = []
html_title = f"pyrogen {release}"
