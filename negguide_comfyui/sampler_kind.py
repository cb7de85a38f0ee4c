"""Which sampler a ComfyUI ``SAMPLER`` object runs, and whether it injects noise (DNG's tracker depends on it).

ComfyUI's samplers are ``comfy.samplers.KSAMPLER`` objects: ``sampler_function`` is k-diffusion's
``sample_<name>`` (or UniPC's ``sample_unipc``, or a closure ``dpm_fast_function`` / ``dpm_adaptive_function``)
and ``extra_options`` carries what the sampler nodes set (``eta``, ``s_noise``, SA-Solver's ``tau_func``).
The name goes to the core's :meth:`negguide.samplers.SamplerInfo.from_name`, which knows ComfyUI's spellings;
the options add what only ComfyUI's objects say:

* ``s_noise = 0`` scales the injected noise to nothing (SamplerER_SDE's "ODE" solver type sets it): deterministic.
* SA-Solver injects noise where its ``tau_func(sigma)`` is > 0 (by default eta 1 over the middle of the
  schedule), under a name the core's table does not know: stochastic when it does so at any step of the pass
  (the transition tracker then also runs on its deterministic steps: an approximation, as for SDE samplers).
* DPM-Fast / DPM-Adaptive inject noise only at ``eta > 0`` (their default is 0).
"""

from __future__ import annotations

from negguide import SamplerInfo

_ETA_DRIVEN = ("dpm_fast", "dpm_adaptive")
_SA_SOLVER = ("sa_solver", "sa_solver_pece")


def sampler_name(sampler) -> str:
    function = getattr(sampler, "sampler_function", None)
    name = getattr(function, "__name__", None) or type(sampler).__name__
    if name.startswith("sample_"):
        name = name[len("sample_"):]
    if name.endswith("_function"):
        name = name[: -len("_function")]
    return {"unipc": "uni_pc", "unipc_bh2": "uni_pc_bh2"}.get(name, name)


def sampler_info(sampler, sigmas=()) -> SamplerInfo:
    """``sigmas``: the pass's schedule (SA-Solver's noise depends on it)."""
    name = sampler_name(sampler)
    options = getattr(sampler, "extra_options", None) or {}
    eta = options.get("eta")
    if float(options.get("s_noise", 1.0)) == 0.0:
        return SamplerInfo(False, 0.0 if eta is None else float(eta))
    if name in _SA_SOLVER:
        tau = options.get("tau_func")
        if tau is None:  # sample_sa_solver's default: eta 1 between 20% and 80% of the schedule
            return SamplerInfo(True, 1.0)
        eta = max((float(tau(float(s))) for s in sigmas), default=0.0)
        return SamplerInfo(eta > 0, eta)
    if name in _ETA_DRIVEN:
        eta = float(eta or 0.0)
        return SamplerInfo(eta > 0, eta)
    return SamplerInfo.from_name(name, None if eta is None else float(eta))
