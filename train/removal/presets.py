"""The class-removal study's settings in one dataclass per preset (the CLI only overrides fields).

Paper presets follow the DNG paper (Koulischer et al. 2025), App. D.2 and Table 1: DNG prior 0.25, temperature
0.25, offset 0 on MNIST and prior 0.01, temperature 0.2, offset 0.0002 on CIFAR-10; NP and SLD scales around 0.5
and DNG lambda0 around 5; SLD threshold 0.04, s_s 100, beta_m 0.2, s_m 0.1; FID on 10,240 samples; ancestral
DDPM at the training T = 1000 with variance beta_t and no x0 clipping.

``p_max``: the paper clamps the posterior at p_max without giving its class-removal value; the text-to-image
default 0.8 caps lambda at 4 lambda0, which leaves forbidden samples at small lambda0. Class removal therefore
sweeps p_max, with 0.99 (lambda <= 99 lambda0) as its own default.

CPU presets keep every method setting and shrink what costs time: samples per point, respaced steps, the FID
reference set. Respaced to 50 steps, the ancestral sampler injects ``beta_tilde'`` ("fixed_small"), not the
paper's ``beta'`` ("fixed_large"): at T = 1000 the two barely differ, but a 50-step chain's last noisy step (t = 20
to 0) would add noise of std 0.079 (about 10 grey levels) with ``beta'`` that the final mean step cannot remove
(speckled backgrounds; unguided Inception FID 120 against DDIM's 40 on the same model). DNG's transition
likelihood follows the sampler (``transition_variance="matched"``). On the 2-core build machine one network
evaluation of the `mnist-cpu` UNet costs ~5 ms per image (fp32, one thread), so a point of 512 samples x 50
steps x 2 networks is ~2-4 minutes on two cores.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from negguide.configs import DEFAULT_MIN_STEP_RATIO
from train.errors import UsageError

METHODS = ("np", "sld", "dng", "np-schedule")
SAMPLERS = ("ddpm", "ddim")
SAMPLER_VARIANCES = ("beta", "beta_tilde")
TRANSITION_VARIANCES = ("matched", "beta", "beta_tilde")
FID_NETWORKS = ("inception", "classifier")


@dataclass(frozen=True)
class RemovalPreset:
    """Every setting of one class-removal sweep. Scales are each method's own guidance parameter: NP's constant
    lambda (``eps_u - lambda (eps_f - eps_u)``), SLD's guidance scale, DNG's lambda0."""

    name: str
    dataset: str
    removed: int = 0
    samples: int = 10_240
    batch_size: int = 512
    seed: int = 0
    methods: tuple[str, ...] = METHODS
    samplers: tuple[str, ...] = ("ddpm", "ddim")
    ddim_methods: tuple[str, ...] = METHODS  # on DDIM DNG uses the gated flow tracker (no published evaluation)
    ddpm_steps: int = 1000  # < T: respaced ancestral sampling
    ddim_steps: int = 50
    sampler_variance: str = "beta"  # the variance the ancestral sampler injects: the paper's beta_t
    transition_variance: str = "matched"  # DNG's transition likelihood: the sampler's own variance (see module doc)
    np_scales: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
    sld_scales: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
    dng_lambda0: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 20.0)
    dng_p_max: tuple[float, ...] = (0.8, 0.99)
    dng_prior: float = 0.25
    dng_temperature: float = 0.25
    dng_offset: float = 0.0
    dng_tracker_ddim: str = "auto"  # the gated flow tracker on DDIM
    dng_min_step_ratio: float = DEFAULT_MIN_STEP_RATIO  # the flow tracker's left-point rule on coarser steps
    sld_threshold: float = 0.04
    sld_s_s: float = 100.0
    sld_beta_m: float = 0.2
    sld_s_m: float = 0.1
    fid_networks: tuple[str, ...] = ("inception", "classifier")
    fid_reference_count: int | None = None  # None: the whole training set without the removed class
    fid_resamples: int = 200  # paired bootstrap resamples of the kept / balanced FIDs (0: point estimates only)
    curve_samples: int = 8  # p(t) / lambda(t) curves per DNG point: half ending in the removed class, half not
    schedule_lambda0: tuple[float, ...] = ()  # the DNG lambda0 values np-schedule follows (empty: every one)
    schedule_p_max: float | None = None  # the DNG p_max np-schedule follows (None: the smallest of dng_p_max)
    decisive_samples: int | None = None  # samples of the decisive points (None: every point has `samples`)
    decisive_np_scales: tuple[float, ...] = ()
    decisive_sld_scales: tuple[float, ...] = ()
    decisive_dng_lambda0: tuple[float, ...] = ()  # DNG at decisive_dng_p_max, and np-schedule following it
    decisive_dng_p_max: tuple[float, ...] = ()

    @property
    def schedule_sources(self) -> tuple[float, ...]:
        """The DNG lambda0 values the np-schedule ablation follows."""
        return self.schedule_lambda0 or self.dng_lambda0

    @property
    def schedule_source_p_max(self) -> float:
        """The DNG p_max the np-schedule ablation follows."""
        return self.schedule_p_max if self.schedule_p_max is not None else min(self.dng_p_max)

    def validate(self) -> None:
        checks = [
            (self.samples >= 1, f"--samples must be >= 1, got {self.samples}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.seed >= 0, f"--seed must be >= 0, got {self.seed}"),
            (set(self.methods) <= set(METHODS), f"--methods must be among {','.join(METHODS)}, got "
                                                f"{','.join(self.methods)}"),
            (set(self.ddim_methods) <= set(METHODS), f"--ddim-methods must be among {','.join(METHODS)}"),
            (set(self.samplers) <= set(SAMPLERS) and self.samplers, f"--samplers must be among {','.join(SAMPLERS)}"),
            (2 <= self.ddpm_steps <= 1000, f"--ddpm-steps must be in 2..1000, got {self.ddpm_steps}"),
            (2 <= self.ddim_steps <= 1000, f"--ddim-steps must be in 2..1000, got {self.ddim_steps}"),
            (self.sampler_variance in SAMPLER_VARIANCES, f"--sampler-variance must be one of {SAMPLER_VARIANCES}"),
            (self.transition_variance in TRANSITION_VARIANCES,
             f"--transition-variance must be one of {TRANSITION_VARIANCES}"),
            (all(s >= 0 for s in self.np_scales + self.sld_scales + self.dng_lambda0), "scales must be >= 0"),
            (all(0 < p < 1 for p in self.dng_p_max), f"--dng-p-max values must be in (0, 1), got {self.dng_p_max}"),
            (0 < self.dng_prior < 1, f"--dng-prior must be in (0, 1), got {self.dng_prior}"),
            (0 <= self.dng_min_step_ratio < 1,
             f"--dng-min-step-ratio must be in [0, 1), got {self.dng_min_step_ratio}"),
            (set(self.fid_networks) <= set(FID_NETWORKS), f"--fid must be among {','.join(FID_NETWORKS)}"),
            (self.fid_reference_count is None or self.fid_reference_count >= 2,
             "--fid-reference-count must be >= 2"),
            (self.curve_samples >= 0, "--curve-samples must be >= 0"),
            (0 <= self.fid_resamples <= 2000, "--fid-resamples must be in 0..2000 (the shared index draws)"),
            (self.decisive_samples is None or self.decisive_samples >= 1, "--decisive-samples must be >= 1"),
            *self._schedule_checks(),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)

    def sampler_methods(self, sampler: str) -> tuple[str, ...]:
        """The guided methods run on ``sampler`` (DDIM: those of ``methods`` also in ``ddim_methods``)."""
        return self.methods if sampler == "ddpm" else tuple(m for m in self.methods if m in self.ddim_methods)

    def _schedule_checks(self) -> list[tuple[bool, str]]:
        """np-schedule reads a finished DNG point of the same sampler: that point must be in the sweep."""
        ablated = [s for s in self.samplers if "np-schedule" in self.sampler_methods(s)]
        if not ablated:
            return []
        if not self.dng_p_max:
            return [(False, "np-schedule follows DNG points: --dng-p-max needs a value")]
        return [
            (all("dng" in self.sampler_methods(s) for s in ablated),
             "np-schedule follows DNG points: run dng wherever np-schedule runs (--methods, --ddim-methods)"),
            (self.schedule_source_p_max in self.dng_p_max,
             f"--schedule-p-max {self.schedule_source_p_max:g} is not among --dng-p-max "
             f"{','.join(f'{p:g}' for p in self.dng_p_max)}"),
            (set(self.schedule_lambda0) <= set(self.dng_lambda0),
             "--schedule-lambda0 values must be among --dng-lambda0"),
        ]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


MNIST_PAPER = RemovalPreset("mnist-paper", "mnist")
CIFAR10_PAPER = RemovalPreset(
    "cifar10-paper", "cifar10", dng_prior=0.01, dng_temperature=0.2, dng_offset=0.0002,
)
# The 2-core CPU: respaced 50-step ancestral sampling, FID references of a fixed 5,000-image subset of the training
# images (TF-Inception costs ~0.1-0.25 s per image on this CPU). Every method on both samplers; 2,048 samples for
# the decisive points (both baselines and, per method, the scales that bracket 1-5% forbidden in the 512-sample
# run of 56d5df6 / 84b56a6), 512 for the rest.
MNIST_CPU = dataclasses.replace(
    MNIST_PAPER, name="mnist-cpu", samples=512, batch_size=256, ddpm_steps=50, ddim_steps=50,
    sampler_variance="beta_tilde",
    np_scales=(0.1, 0.25, 0.5, 1.0, 2.0, 4.0), sld_scales=(0.25, 0.5, 1.0, 2.0, 5.0, 10.0),
    dng_lambda0=(0.5, 1.0, 2.0, 5.0, 10.0), schedule_lambda0=(0.5, 1.0, 2.0, 5.0),
    fid_reference_count=5_000,
    decisive_samples=2048, decisive_np_scales=(0.1, 0.25, 0.5, 1.0), decisive_sld_scales=(0.25, 0.5, 1.0, 2.0),
    decisive_dng_lambda0=(0.5, 1.0, 2.0, 5.0), decisive_dng_p_max=(0.8,),
)
CIFAR10_CPU = dataclasses.replace(
    CIFAR10_PAPER, name="cifar10-cpu", samples=256, batch_size=128, ddpm_steps=50, ddim_steps=50,
    sampler_variance="beta_tilde",
    fid_reference_count=5_000,
)

# Minutes end to end on a CPU (`reproduce-removal --preset tiny`, with the tiny training plan): every method, both
# samplers, the classifier's features only (no Inception), 128 samples per point: it shows the study's machinery
# and report on real MNIST, not a verdict (the intervals say how little 128 samples can tell).
MNIST_TINY = dataclasses.replace(
    MNIST_CPU, name="mnist-tiny", samples=128, batch_size=128, ddpm_steps=20, ddim_steps=20,
    np_scales=(0.5, 2.0), sld_scales=(1.0, 5.0), dng_lambda0=(1.0, 5.0), dng_p_max=(0.8,), schedule_lambda0=(1.0,),
    fid_networks=("classifier",), fid_reference_count=1_000, fid_resamples=50, curve_samples=4,
    decisive_samples=None, decisive_np_scales=(), decisive_sld_scales=(), decisive_dng_lambda0=(),
    decisive_dng_p_max=(),
)

REMOVAL_PRESETS = {p.name: p for p in (MNIST_PAPER, CIFAR10_PAPER, MNIST_CPU, CIFAR10_CPU, MNIST_TINY)}
PRESET_ALIASES = {"tiny": "{dataset}-tiny", "cpu": "{dataset}-cpu", "paper": "{dataset}-paper"}
DEFAULT_REMOVAL_PRESET = {("mnist", "cuda"): "mnist-paper", ("cifar10", "cuda"): "cifar10-paper",
                          ("mnist", "cpu"): "mnist-cpu", ("cifar10", "cpu"): "cifar10-cpu"}


def removal_preset(name: str | None, dataset: str, device_type: str, **overrides) -> RemovalPreset:
    """The named preset (default: the dataset's paper preset on a GPU, its CPU preset elsewhere) with the
    non-None ``overrides`` applied, validated."""
    key = name or DEFAULT_REMOVAL_PRESET[(dataset, "cuda" if device_type == "cuda" else "cpu")]
    key = PRESET_ALIASES.get(key, key).format(dataset=dataset)
    if key not in REMOVAL_PRESETS:
        raise UsageError(f"unknown removal preset {key!r}; choose one of {', '.join(sorted(REMOVAL_PRESETS))}")
    preset = REMOVAL_PRESETS[key]
    if preset.dataset != dataset:
        raise UsageError(f"preset {preset.name} is for {preset.dataset}, not {dataset}")
    preset = dataclasses.replace(preset, **{k: v for k, v in overrides.items() if v is not None})
    preset.validate()
    return preset
