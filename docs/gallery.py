"""
Make the pictures of ``docs/gallery.rst``: run the README's commands on the digits (each
family at its defaults), draw what each produces, and copy the small PNGs into
``docs/_static/gallery/`` (``make gallery``; about 10 minutes on 2 cores). With
``--mnist-dir`` it also trains every family's bare ``pyrogen train FAMILY --dataset mnist``
(about an hour and a half on 2 cores; runs already in ``WORK/mnist`` are reused) and draws
theirs. Interpolations are decoded along straight lines in the latent space: between the
codes of two test images for models with an encoder, between two prior draws for a GAN.

    python docs/gallery.py --work runs/gallery --out docs/_static/gallery [--mnist-dir DATA/mnist]
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
#: the bare commands on MNIST (``--dataset mnist``), and their pictures
TRAIN_MNIST = {
    "vae": (["vae"], ["samples", "reconstructions", "interpolations"]),
    "cvae": (["cvae"], ["samples"]),
    "mixture": (["mixture"], ["samples"]),
    "classifier": (["classifier"], []),
    "dfcvae": (["dfcvae", "--features", "{work}/classifier"], ["samples", "reconstructions"]),
    "gan": (["gan"], ["samples", "interpolations"]),
    "aae": (["aae"], ["samples", "reconstructions", "interpolations"]),
    "ali": (["ali"], ["samples", "reconstructions", "interpolations"]),
}
#: the digits' runs whose interpolations the gallery shows
INTERPOLATE = ("vae", "gan", "aae", "ali")


def interpolations(run: Path, out: Path, rows: int = 6, steps: int = 10) -> None:
    """Decode straight lines in the latent space, one row each: from the code (the
    encoder's mean) of one test image to another's, or, for a model without an encoder,
    from one prior draw to another."""
    import torch

    from pyrogen.families import load_run
    from pyrogen.cli import load_data
    from pyrogen.viz import save_image_grid

    model, config = load_run(run, "best", "cpu")
    torch.manual_seed(0)
    with torch.no_grad():
        if model.has_encoder:
            x = load_data(config).test.images[: 2 * rows]
            start, end = model.encode(x)[0].chunk(2)
        else:
            start, end = model.model.prior().sample((2 * rows,)).chunk(2)
        t = torch.linspace(0, 1, steps).view(1, steps, 1)
        z = (1 - t) * start[:, None] + t * end[:, None]
        images = model.decode(z.flatten(0, 1))
    save_image_grid(images, out, nrow=steps)


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


def train_and_draw(commands: dict, work: Path, out: Path, prefix: str, data: list[str]) -> dict:
    """Train each command (unless ``work`` holds its run) and draw its pictures."""
    device = ["--device", "cpu"]
    minutes = {}
    for name, (argv, pictures) in commands.items():
        run = work / name
        if not (run / "checkpoints" / "last.pt").exists():
            start = time.perf_counter()
            pyrogen("train", *[a.format(work=work) for a in argv], *data, "--out", str(run),
                    "--no-progress", *device)
            minutes[name] = round((time.perf_counter() - start) / 60, 2)
        for picture in pictures:  # what `pyrogen sample` and `pyrogen reconstruct` draw
            target = out / f"{prefix}{name}_{picture.split(':')[-1]}.png"
            if picture == "samples":
                pyrogen("sample", str(run), "--num", "64", "--out", str(target), *device)
            elif picture == "reconstructions":
                pyrogen("reconstruct", str(run), "--num", "32", "--out", str(target), *device)
            elif picture == "interpolations":
                interpolations(run, target)
            else:  # "run:NAME": a picture the run folder holds
                picture = picture.split(":", 1)[1]
                shutil.copyfile(run / f"{picture}.png", out / f"{prefix}{name}_{picture}.png")
    return minutes


def main(args: argparse.Namespace) -> dict:
    work, out = args.work, args.out
    out.mkdir(parents=True, exist_ok=True)
    device = ["--device", "cpu"]
    minutes = train_and_draw(TRAIN, work, out, "", [])
    for name in INTERPOLATE:
        interpolations(work / name, out / f"{name}_interpolations.png")
    pyrogen("sample", str(work / "cvae"), "--label", "7", "--num", "16", "--out", str(out / "cvae_sevens.png"), *device)
    pyrogen("sample", str(work / "cvae-halves"), "--num", "10", "--completions", "3",
            "--out", str(out / "cvae-halves_completions.png"), *device)
    pyrogen("encode", str(work / "aae-2d"), "--out", str(work / "aae-2d" / "codes.npz"), *device)
    scatter_codes(work / "aae-2d" / "codes.npz", out / "aae-2d_codes.png")
    if args.mnist_dir is not None:
        data = ["--dataset", "mnist", "--data-dir", str(args.mnist_dir)]
        minutes["mnist"] = train_and_draw(TRAIN_MNIST, work / "mnist", out, "mnist_", data)
        pyrogen("sample", str(work / "mnist" / "cvae"), "--label", "7", "--num", "16",
                "--out", str(out / "mnist_cvae_sevens.png"), *device)
    return {"out": str(out), "pictures": sorted(p.name for p in out.glob("*.png")), "minutes": minutes}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("runs/gallery"), help="the runs' folder")
    p.add_argument("--out", type=Path, default=Path("docs/_static/gallery"))
    p.add_argument("--mnist-dir", type=Path, default=None,
                   help="the MNIST IDX files: draw the bare MNIST commands too")
    return p.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(main(parse_args())))
