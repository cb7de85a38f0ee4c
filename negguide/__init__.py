"""negguide: precise negative prompting for diffusion models.

Backend-neutral core (pure torch, no UI import). What a backend drives:

- :mod:`negguide.run`         ``GuidanceRun``: one object per sampling pass; ``plan`` / ``combine`` / ``finish``
- :mod:`negguide.denoiser`    ``GuidedDenoiser``: the same as a k-diffusion-style ``denoiser(x, sigma)`` wrapper
- :mod:`negguide.spec`        ``GuidanceSpec``: the mode and its settings (torch-free, validated)
- :mod:`negguide.frames`      a backend's parametrisation (x0 / eps / v / flow; sigma, timestep or flow time)
- :mod:`negguide.clock`       model evaluation -> sampler step (second-order samplers, schedules)
- :mod:`negguide.samplers`    does a sampler inject noise (by name in A1111, ComfyUI and diffusers spelling, eta)

What those are made of:

- :mod:`negguide.configs`     ``DNGConfig``, ``SLDConfig``, ``PosteriorConfig`` (torch-free, validated)
- :mod:`negguide.guidance`    guidance rules as pure functions (CFG, NP 2/3-term, DNS, DNG, Perp-Neg)
- :mod:`negguide.sld`         Safe Latent Diffusion, the DNG paper's baseline (stateful: momentum)
- :mod:`negguide.windows`     step windows for the negative prompt (Ban et al. 2024)
- :mod:`negguide.posterior`   DNG posterior trackers (Koulischer et al. 2025, Algorithm 2 and probability-flow)
- :mod:`negguide.dng`         the per-batch DNG controller (tracker, lambda, per-step record)
- :mod:`negguide.schedules`   explicit float64 DDPM / k-diffusion schedule tables
- :mod:`negguide.predictions` eps <-> x0 conversions of the VP and k-diffusion parametrisations
- :mod:`negguide.checks`      ``SettingsError``: every problem of a setting, as sentences

Front-ends built on it: :mod:`negguide.generate` (diffusers pipelines and the CLI), :mod:`negguide.toy` (the
exact Gaussian-mixture study), and the WebUI extension in ``negguide_webui``.
"""

__version__ = "0.1.0"
