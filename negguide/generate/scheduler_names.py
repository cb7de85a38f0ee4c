"""The scheduler names negguide's diffusers front-end knows, and the frame kind of each diffusers class: plain data,
no torch or diffusers, so that the CLI can build its parser (``--help``, ``--scheduler`` choices) and check a
model's scheduler before anything heavy is imported. :mod:`negguide.generate.schedulers` maps them onto the core."""

from __future__ import annotations

# friendly name -> (diffusers class, config overrides, the name A1111 writes in its "parameters")
SCHEDULERS: dict[str, tuple[str, dict, str]] = {
    "euler": ("EulerDiscreteScheduler", {}, "Euler"),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}, "Euler a"),
    "heun": ("HeunDiscreteScheduler", {}, "Heun"),
    "lms": ("LMSDiscreteScheduler", {}, "LMS"),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                 "use_karras_sigmas": False}, "DPM++ 2M"),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                        "use_karras_sigmas": True}, "DPM++ 2M Karras"),
    "dpmpp_2m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2,
                                                     "use_karras_sigmas": False}, "DPM++ 2M SDE"),
    "dpmpp_2m_sde_karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2,
                                                            "use_karras_sigmas": True}, "DPM++ 2M SDE Karras"),
    "ddim": ("DDIMScheduler", {}, "DDIM"),
    "ddpm": ("DDPMScheduler", {}, "DDPM"),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}, "PLMS"),
    "unipc": ("UniPCMultistepScheduler", {}, "UniPC"),
    "deis": ("DEISMultistepScheduler", {}, "DEIS"),
    "flow_euler": ("FlowMatchEulerDiscreteScheduler", {}, "Euler"),
    "flow_heun": ("FlowMatchHeunDiscreteScheduler", {}, "Heun"),
}

KINDS = {
    "EulerDiscreteScheduler": "ve_sigma",
    "EulerAncestralDiscreteScheduler": "ve_sigma",
    "HeunDiscreteScheduler": "ve_sigma",
    "LMSDiscreteScheduler": "ve_sigma",
    "DPMSolverMultistepScheduler": "vp_sigma",
    "DPMSolverSinglestepScheduler": "vp_sigma",
    "UniPCMultistepScheduler": "vp_sigma",
    "DEISMultistepScheduler": "vp_sigma",
    "DDIMScheduler": "vp_timestep",
    "DDPMScheduler": "vp_timestep",
    "PNDMScheduler": "vp_timestep",
    "FlowMatchEulerDiscreteScheduler": "flow",
    "FlowMatchHeunDiscreteScheduler": "flow",
}

PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}


class UnsupportedScheduler(ValueError):
    """The scheduler (or its configuration) is one the front-end cannot map onto the core's frames."""
