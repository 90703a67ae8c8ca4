"""
The executed examples (sphinx-gallery): each script in ``examples/`` runs at build time in its
smoke mode (``--smoke --device cpu``, and ``--out`` a scratch folder where it takes one), its
printed output goes into its page, and the PNG pictures it writes are shown there too (an
image scraper: the examples draw with pyrogen's ``save_image_grid``, not matplotlib figures).
An example that fails fails the build.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

#: the scratch folder the examples write into, one subfolder per example
SCRATCH = Path(tempfile.gettempdir()) / "pyrogen-docs-examples"


class ExampleArguments:
    """``sys.argv[1:]`` for an example: its smoke mode, the CPU, and a scratch ``--out``."""

    def __call__(self, gallery_conf, script_vars):
        source = Path(script_vars["src_file"])
        argv = ["--smoke", "--device", "cpu"]
        if "--out" in source.read_text():
            out = SCRATCH / source.stem
            shutil.rmtree(out, ignore_errors=True)
            argv += ["--out", str(out / "run")]
        return argv

    def __repr__(self):  # sphinx-gallery keys its cache on this
        return "ExampleArguments()"


class PictureScraper:
    """Show the PNG files an example wrote into its scratch folder during a code block."""

    def __init__(self):
        self.shown: set[Path] = set()

    def __call__(self, block, block_vars, gallery_conf):
        from sphinx_gallery.scrapers import figure_rst

        folder = SCRATCH / Path(block_vars["src_file"]).stem
        pictures = sorted(p for p in folder.rglob("*.png") if p not in self.shown) if folder.is_dir() else []
        names = []
        for picture, target in zip(pictures, block_vars["image_path_iterator"]):
            shutil.copyfile(picture, target)
            self.shown.add(picture)
            names.append(target)
        if not names:
            return ""
        note = ("\n\n*The pictures of this smoke run (seconds of training) show that the script "
                "works, not what the model reaches:* :doc:`/gallery` *shows every family at its "
                "defaults.*\n\n")
        return figure_rst(names, gallery_conf["src_dir"]) + note

    def __repr__(self):
        return "PictureScraper()"


def _get_sg_image_scraper():
    """The hook sphinx-gallery calls for ``image_scrapers = ("example_pictures",)``."""
    return PictureScraper()
