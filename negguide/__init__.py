"""negguide: precise negative prompting for diffusion models.

Backend-neutral core (pure torch, no WebUI import):

- :mod:`negguide.schedules`   explicit float64 DDPM / k-diffusion schedule tables
- :mod:`negguide.predictions` eps <-> x0 conversions (VP timesteps and k-diffusion sigmas)
- :mod:`negguide.guidance`    guidance rules as pure functions (CFG, NP, DNS, DNG, Perp-Neg)
- :mod:`negguide.sld`         Safe Latent Diffusion, the DNG paper's baseline (stateful: momentum)
- :mod:`negguide.windows`     step windows for the negative prompt (Ban et al. 2024)
- :mod:`negguide.posterior`   DNG posterior trackers (Koulischer et al. 2025, Algorithm 2 and ODE variants)
- :mod:`negguide.dng`         the per-generation DNG controller that adapters drive
"""

__version__ = "0.1.0"
