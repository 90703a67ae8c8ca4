r"""
The registry of model families: one module per family, each a
:class:`~pyrogen.families.Family` registered under the name a user types
(``pyrogen train NAME``). The command line, the trainer's choice of step and the run loader
ask the registry instead of comparing names; a new family is one new module here plus its
import below (see ``docs/families.rst``).

Each family declares its facade, its options, and its defaults per data set, which the
command line and the Python API both read::

    from pyrogen.families import get

    family = get("gan")
    settings = family.defaults("digits")      # {"model": {...}, "train": {...}}
    gan = family.facade(data.shape, **settings["model"])
    config = family.train_config("digits", epochs=5)
"""

from pyrogen.families.base import Family, Request
from pyrogen.families.options import TRAIN_OPTIONS, Option
from pyrogen.families.registry import families, get, names, register

# the families, in the order `pyrogen train --help` lists them; importing a module registers it
from pyrogen.families import vae, cvae, mixture, dfcvae, classifier, gan, aae, ali  # noqa: E402
from pyrogen.families.runs import checkpoint_path, describe_run, list_runs, load_run  # noqa: E402


def defaults(name: str, dataset: str | None = None) -> dict:
    """The settings of family ``name`` for ``dataset``: ``get(name).defaults(dataset)``."""
    return get(name).defaults(dataset)


__all__ = ["aae", "ali", "classifier", "cvae", "dfcvae", "gan", "mixture", "vae",
           "Family", "Option", "Request", "TRAIN_OPTIONS", "checkpoint_path", "defaults",
           "describe_run", "families", "get", "list_runs", "load_run", "names", "register"]
