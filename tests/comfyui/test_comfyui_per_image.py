"""Per-image pieces: probe seeds that follow an image's own noise, and a conditioning restricted to some images
(what a core step on which only some images probe asks for)."""

import torch

from negguide_comfyui.per_image import image_seeds, select_images


class Cond:
    """Like comfy.conds.CONDRegular: a tensor and a copy with another tensor."""

    def __init__(self, cond):
        self.cond = cond

    def _copy_with(self, cond):
        return Cond(cond)


def test_probe_seeds_follow_each_images_noise_and_the_seed():
    noise = torch.randn(3, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    seeds = image_seeds(7, noise)
    assert len(set(seeds)) == 3 and all(0 <= s < 2**63 for s in seeds)
    assert image_seeds(7, noise[[2, 0]]) == [seeds[2], seeds[0]]  # position and neighbours do not matter
    assert image_seeds(8, noise) != seeds and image_seeds(None, noise) == image_seeds(0, noise)


def test_a_conditioning_restricted_to_some_images_keeps_their_rows_and_the_shared_data():
    per_image, shared = torch.arange(3.0)[:, None], torch.ones(1, 5)
    mask = torch.arange(3.0)[:, None, None]
    conds = [{"model_conds": {"c_concat": Cond(per_image), "c_crossattn": Cond(shared)}, "mask": mask, "uuid": 1}]
    (out,) = select_images(conds, (2, 0), batch=3)
    assert out["model_conds"]["c_concat"].cond.tolist() == [[2.0], [0.0]]
    assert out["model_conds"]["c_crossattn"].cond is shared and out["mask"][:, 0, 0].tolist() == [2.0, 0.0]
    assert out["uuid"] == 1 and conds[0]["model_conds"]["c_concat"].cond is per_image  # the input is untouched
    assert select_images(conds, None, batch=3) is conds
