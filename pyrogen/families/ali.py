"""The ALI/BiGAN family (``pyrogen train ali``): :class:`~pyrogen.models.ALI` with Su's loss."""

from __future__ import annotations

from pyrogen.families.adversarial import DIGITS, ENCODER, NETWORK, AdversarialFamily
from pyrogen.families.options import Option, positive_float
from pyrogen.families.registry import register
from pyrogen.infer.ali import ALI_LOSSES
from pyrogen.models import ALI
from pyrogen.models.generator import NOISES


@register
class ALIFamily(AdversarialFamily):
    name = "ali"
    summary = "ALI/BiGAN with Su's encoder/generator loss, minimax, swapped or complete"
    facade = ALI
    options = NETWORK + (
        ENCODER,
        Option("generator", "deterministic (delta) or gaussian generator", choices=NOISES),
        Option("generator_scale", "the gaussian generator's initial noise scale", type=positive_float),
        Option("loss", "the encoder/generator loss: paper (Su's), minimax, swapped "
               "(non-saturating), or complete (Su's with the two dropped terms; needs gaussian "
               "encoder and generator)", choices=ALI_LOSSES, flag="--ali-loss"),
    )
    dataset_defaults = {"digits": DIGITS}
