"""Mixed precision (``precision``): bfloat16 autocast trains on CPU to float32's figures; float16
is refused off CUDA; an adversarial family refuses the option."""

import pytest
import torch

from clitools import run
from pyrogen.cli import main
from pyrogen.data import load_dataset
from pyrogen.models import VAE
from pyrogen.train import TrainConfig, Trainer


def _fit(precision, tmp_path, device="cpu"):
    data = load_dataset("digits", binarize="dynamic", limit=300)
    torch.manual_seed(0)
    vae = VAE(data.shape, latent_dim=4, hidden=(64,))
    config = TrainConfig(model="vae", model_config=vae.config, dataset="digits", binarize="dynamic",
                         limit=300, epochs=8, batch_size=50, lr=3e-3, device=device,
                         precision=precision)
    trainer = Trainer(vae, data.to(device), config, tmp_path / f"{precision}-{device}", progress=False)
    return trainer, trainer.fit()


def test_bf16_trains_to_the_figures_of_float32(tmp_path):
    _, ours = _fit("bf16", tmp_path)
    _, full = _fit("32", tmp_path)
    assert ours[-1]["valid_loss"] == pytest.approx(full[-1]["valid_loss"], rel=0.02)
    assert ours[-1]["valid_loss"] < ours[0]["valid_loss"] - 1  # it learnt


def test_the_forward_pass_runs_in_bfloat16(tmp_path):
    trainer, _ = _fit("bf16", tmp_path)
    seen = []
    layer = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Linear))
    handle = layer.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with trainer.autocast():
        trainer.model.model(next(iter(trainer.data.train.batches(10))).x)
    handle.remove()
    assert seen == [torch.bfloat16]
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


def test_float16_is_refused_off_cuda():
    with pytest.raises(ValueError, match="precision='16' .*needs a CUDA device.*use precision='bf16'"):
        TrainConfig(precision="16", device="cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="fp8")


def test_an_adversarial_family_refuses_precision(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "gan", "--dataset", "digits", "--precision", "bf16", "--out", str(tmp_path / "g")])
    assert exit_info.value.code == 2
    assert "--precision is not an option of `pyrogen train gan`" in capsys.readouterr().err


def test_float16_on_cpu_is_a_one_line_error(capsys, tmp_path):
    code, _, err = run(capsys, "train", "vae", "--dataset", "digits", "--precision", "16",
                       "--device", "cpu", "--out", tmp_path / "v")
    assert code != 0 and "needs a CUDA device" in err and "Traceback" not in err
    assert not (tmp_path / "v").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["16", "bf16"])
def test_half_precisions_train_on_cuda_to_the_figures_of_float32(precision, tmp_path):
    trainer, ours = _fit(precision, tmp_path, "cuda")
    _, full = _fit("32", tmp_path, "cuda")
    assert ours[-1]["valid_loss"] == pytest.approx(full[-1]["valid_loss"], rel=0.02)
    assert (trainer.scaler is not None) == (precision == "16")
