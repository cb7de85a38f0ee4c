"""The samplers ComfyUI a125cd84 (v0.3.64) ships (``comfy.samplers.SAMPLER_NAMES``), and those v0.8.0 and v0.33.0
add (exp_heun_2_x0 and its SDE), by whether they inject noise at every step: what DNG's ``auto`` tracker must follow
(transition likelihood vs probability flow)."""

STOCHASTIC = ("euler_ancestral", "euler_ancestral_cfg_pp", "dpm_2_ancestral", "dpmpp_2s_ancestral",
              "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
              "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm",
              "res_multistep_ancestral", "res_multistep_ancestral_cfg_pp", "er_sde", "seeds_2", "seeds_3",
              "sa_solver", "sa_solver_pece", "exp_heun_2_x0_sde")
DETERMINISTIC = ("euler", "euler_cfg_pp", "heun", "heunpp2", "dpm_2", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2m",
                 "dpmpp_2m_cfg_pp", "ipndm", "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp",
                 "gradient_estimation", "gradient_estimation_cfg_pp", "ddim", "uni_pc", "uni_pc_bh2",
                 "exp_heun_2_x0")


def expected_tracker(name: str) -> str:
    return "transition" if name in STOCHASTIC else "flow-gated"
