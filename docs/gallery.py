"""
Make the pictures of ``docs/gallery.rst``: run the README's commands on the digits (each
family at its defaults), draw what each produces, and copy the small PNGs into
``docs/_static/gallery/`` (``make gallery``; about 10 minutes on 2 cores).

    python docs/gallery.py --work runs/gallery --out docs/_static/gallery
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

#: name -> the README command's arguments after `pyrogen train`, and the pictures to keep
TRAIN = {
    "vae": (["vae"], ["samples", "reconstructions"]),
    "cvae": (["cvae"], ["samples", "run:reconstructions"]),
    "cvae-halves": (["cvae", "--condition", "prior-network", "--quadrants", "2"], []),
    "mixture": (["mixture"], ["run:components", "samples"]),
    "classifier": (["classifier"], []),
    "dfcvae": (["dfcvae", "--features", "{work}/classifier"], ["samples", "reconstructions"]),
    "gan": (["gan"], ["samples"]),
    "gan-reg": (["gan", "--generator-loss", "regularised", "--g-steps", "2"], ["samples"]),
    "aae": (["aae"], ["samples", "reconstructions"]),
    "aae-2d": (["aae", "--prior", "mixture", "--latent-dim", "2"], ["samples"]),
    "ali": (["ali"], ["samples", "reconstructions"]),
}


def pyrogen(*argv: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "pyrogen", *argv], env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"pyrogen {' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def scatter_codes(codes: Path, out: Path) -> None:
    """The AAE's 2-D codes of the test digits, coloured by class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    data = np.load(codes)
    fig, ax = plt.subplots(figsize=(4, 4), dpi=80)
    points = ax.scatter(data["loc"][:, 0], data["loc"][:, 1], c=data["label"], cmap="tab10", s=6)
    fig.colorbar(points, ax=ax, ticks=range(10))
    ax.set_title("AAE codes of the test digits")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main(args: argparse.Namespace) -> dict:
    work, out = args.work, args.out
    out.mkdir(parents=True, exist_ok=True)
    device = ["--device", "cpu"]
    minutes = {}
    for name, (argv, pictures) in TRAIN.items():
        run = work / name
        if not (run / "checkpoints" / "last.pt").exists():
            start = time.perf_counter()
            pyrogen("train", *[a.format(work=work) for a in argv], "--out", str(run), "--no-progress", *device)
            minutes[name] = round((time.perf_counter() - start) / 60, 2)
        for picture in pictures:  # what `pyrogen sample` and `pyrogen reconstruct` draw
            target = str(out / f"{name}_{picture.split(':')[-1]}.png")
            if picture == "samples":
                pyrogen("sample", str(run), "--num", "64", "--out", target, *device)
            elif picture == "reconstructions":
                pyrogen("reconstruct", str(run), "--num", "32", "--out", target, *device)
            else:  # "run:NAME": a picture the run folder holds
                picture = picture.split(":", 1)[1]
                shutil.copyfile(run / f"{picture}.png", out / f"{name}_{picture}.png")
    pyrogen("sample", str(work / "cvae"), "--label", "7", "--num", "16", "--out", str(out / "cvae_sevens.png"), *device)
    pyrogen("sample", str(work / "cvae-halves"), "--num", "10", "--completions", "3",
            "--out", str(out / "cvae-halves_completions.png"), *device)
    pyrogen("encode", str(work / "aae-2d"), "--out", str(work / "aae-2d" / "codes.npz"), *device)
    scatter_codes(work / "aae-2d" / "codes.npz", out / "aae-2d_codes.png")
    return {"out": str(out), "pictures": sorted(p.name for p in out.glob("*.png")), "minutes": minutes}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("runs/gallery"), help="the runs' folder")
    p.add_argument("--out", type=Path, default=Path("docs/_static/gallery"))
    return p.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(main(parse_args())))
