"""negguide's ComfyUI nodes: windowed negative prompts, Dynamic Negative Guidance, diffusion-negative samples and
the core's baselines (SLD, Perp-Neg), as GUIDERs for SamplerCustomAdvanced and MODEL patches for KSampler, plus
a plot of the per-step guidance. ComfyUI loads them through the repository's root ``__init__.py``.

Glue only: every guidance decision comes from :class:`negguide.run.GuidanceRun` (see docs/comfyui.md).

- ``modes``          each mode's widgets and the core GuidanceSpec they make
- ``model_kind``     a ComfyUI model's frame (k-diffusion or flow time), guidance distillation, the modes it refuses
- ``sampler_kind``   a ComfyUI SAMPLER's name and whether it injects noise (DNG's tracker)
- ``guided_pass``    one sampling pass: the GuidanceRun and the branch conditionings, per model evaluation
- ``per_image``      one probe seed per image; a conditioning restricted to some images
- ``patch``          the sampling wrappers a negguide node puts on a clone of the model
- ``trace``, ``plot`` the records of the latest prompt's passes and their picture
- ``nodes_*``        the node classes
"""

from .nodes_guiders import GUIDER_NAMES, GUIDERS
from .nodes_patches import PATCH_NAMES, PATCHES
from .nodes_plot import NegGuidePlot

NODE_CLASS_MAPPINGS = {**GUIDERS, **PATCHES, "NegGuidePlot": NegGuidePlot}
NODE_DISPLAY_NAME_MAPPINGS = {**GUIDER_NAMES, **PATCH_NAMES, "NegGuidePlot": "Negative Guidance Plot (negguide)"}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
