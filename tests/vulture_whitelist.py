"""What vulture cannot see used: names that the programs (Python, ComfyUI, the WebUIs, diffusers, torch) or the
package's users call. tests/test_dead_code.py runs vulture over the product folders with this file."""

# ruff: noqa: B018
from negguide import __getattr__ as lazy_names  # PEP 562: ``from negguide import GuidanceRun`` calls it
from negguide.generate.guider import NegGuideGuider
from negguide.generate.output import NegGuideOutput
from negguide.spec import GuidanceSpec
from negguide_comfyui.nodes_guiders import _GuiderNode
from negguide_comfyui.nodes_patches import _PatchNode
from negguide_comfyui.nodes_plot import NegGuidePlot
from negguide_comfyui.trace import PassSummary
from negguide_webui.extension import NegGuideAlwaysOn
from negguide_webui.settings import NegGuideSettings

lazy_names

# diffusers' modular pipelines drive a guider through these (diffusers/guiders/guider_utils.py)
NegGuideGuider.ignore_for_config, NegGuideGuider.prepare_inputs, NegGuideGuider.prepare_inputs_from_block_state
NegGuideGuider.cleanup_models, NegGuideGuider.is_conditional, NegGuideGuider.num_conditions, NegGuideGuider.forward

# the public API: diffusers' output fields, the DNG posterior per step, a spec read back from its dict
NegGuideOutput.nsfw_content_detected, NegGuideOutput.posteriors, GuidanceSpec.from_dict

# ComfyUI reads a node class's declarations and calls its FUNCTION
for node in (_GuiderNode, _PatchNode, NegGuidePlot):
    node.RETURN_TYPES, node.RETURN_NAMES, node.OUTPUT_TOOLTIPS, node.FUNCTION, node.CATEGORY, node.DESCRIPTION
    node.INPUT_TYPES
_GuiderNode.get_guider
_GuiderNode.VALIDATE_INPUTS, _PatchNode.VALIDATE_INPUTS  # ComfyUI's prompt validation calls it when queueing
PassSummary.final_p  # a trace's record for the user's own nodes and the tests: DNG's posterior after the last step

# the WebUIs call a script's hooks and read its settings in API-args order; the finished job and the DNP captions
# are read by the harness tests and by API clients
NegGuideAlwaysOn.process, NegGuideAlwaysOn.process_batch, NegGuideAlwaysOn.process_before_every_sampling
NegGuideAlwaysOn.postprocess_batch
NegGuideAlwaysOn.last_job, NegGuideSettings.to_args
_ = object  # stands for objects vulture cannot type
_.dnp_captions  # Processed.dnp_captions (negguide_webui.workflows.run_dnp)

# scripts/*.py: the WebUI loads the Script subclasses and reads their attributes
_.NegGuideScript, _.NegGuideDNPScript, _.NegGuideSweepScript, _.sorting_priority, _.paste_field_names, _.show

# torch calls a module's forward
_.forward
