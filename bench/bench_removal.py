"""Samples/s of our class-removal sampler vs the DNG authors' sampling loop, on the same two UNets, in one run.

* authors: a re-implementation (written here, not copied) of ``gen_batch_DNG`` and ``compute_posterior_DNG`` in
  FelixKoulischer/Dynamic-Negative-Guidance, ``utils/Generate_Batch_pretrained.py`` (the loop behind the paper's
  class-removal numbers, Koulischer et al. 2025, Alg. 1-2). Per batch, as there: ``set_seed`` (which also sets
  cudnn deterministic, benchmark off), the initial noise drawn on the host and copied over. Per step, as there:
  fp32 throughout; a host ``ti * torch.ones(N)`` timestep tensor, a ``torch.tensor([beta_t])`` and the
  ``sqrt(1 - abar_t)`` entry copied to the device (three synchronous host-to-device copies); the unconditional
  and the to-forget UNet in two separate calls; ``lambda = lambda0 p / (1 - p)`` per image; the DDPM step with
  variance beta_t (no noise at the last step); the posterior (Alg. 2) from the schedule's 0-dim host tensors
  with variance beta_tilde_t, and its ``assert not torch.isnan(p).any()``: a device-to-host read every step.
  Their loop always runs all T steps; at ``--steps < T`` the same loop walks the respaced timesteps (beta'_t =
  1 - abar_t / abar_prev), with the same per-step work.
* ours: ``train.removal.sampler.sample_batch`` with ``BranchNetworks`` (bf16 autocast on CUDA, fp32 on the
  CPU) and the DNG transition tracker of ``guidance_spec(Point("dng", 5, "ddpm", steps, 0.99), preset)``,
  ``record="none"``: no host synchronisation inside the loop.

Both sample the same random-weight UNets (``--preset``: a ``train.presets.DDPM_PRESETS`` architecture; seed 0
unconditional, seed 1 to-forget) or two trained ``model/`` folders (``--model UNCOND FORGET``), at the same
batch and steps, DNG settings of the matching paper removal preset (lambda0 5, p_max 0.99). Rounds alternate the
order of the two samplers after a short warm-up; the median samples/s of each and their ratio are printed.
A check samples a few images with both in fp32 from the same noise (ours with the authors' beta_tilde tracker
variance) and reports how closely they agree; the timed outputs must be finite.

    python bench/bench_removal.py                     # GPU: mnist UNet, batch 512, T = 1000, 3 rounds
    python bench/bench_removal.py --device cpu        # CPU: mnist-cpu UNet, batch 64, 20 steps
    python bench/bench_removal.py --smoke             # seconds: mnist-tiny, batch 2, 3 steps, 1 round
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from negguide.schedules import DiscreteSchedule  # noqa: E402
from train.hardware import cpu_name  # noqa: E402
from train.presets import DDPM_PRESETS  # noqa: E402
from train.removal.noise import CommonNoise  # noqa: E402
from train.removal.points import Point, guidance_spec  # noqa: E402
from train.removal.presets import CIFAR10_PAPER, MNIST_PAPER, RemovalPreset  # noqa: E402
from train.removal.sampler import BranchNetworks, SamplerSettings, respaced_timesteps, sample_batch  # noqa: E402

LAMBDA0, P_MAX, AUTHORS_P_MIN = 5.0, 0.99, 1e-6
PRESETS = ("mnist-tiny", "mnist-cpu", "mnist", "cifar10")
SEED = 0


# ----------------------------------------------------------------------------------------------- the models
@dataclass
class Models:
    unconditional: torch.nn.Module
    forget: torch.nn.Module
    schedule: DiscreteSchedule
    image_shape: tuple[int, int, int]
    removal: RemovalPreset  # DNG's prior / temperature / offset for this dataset
    label: str


def random_unet(preset: str, seed: int, device: torch.device) -> torch.nn.Module:
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(**DDPM_PRESETS[preset].unet).to(device).eval().requires_grad_(False)


def random_models(preset: str, device: torch.device) -> Models:
    unet = DDPM_PRESETS[preset].unet
    shape = (unet["in_channels"], unet["sample_size"], unet["sample_size"])
    removal = CIFAR10_PAPER if DDPM_PRESETS[preset].dataset == "cifar10" else MNIST_PAPER
    return Models(random_unet(preset, 0, device), random_unet(preset, 1, device), DiscreteSchedule.from_kind(),
                  shape, removal, f"{preset} UNet, random weights")


def trained_models(folders: list[str], device: torch.device) -> Models:
    from train.removal.models import load_study_models

    study = load_study_models(folders[0], folders[1], None, device)
    removal = CIFAR10_PAPER if study.image_shape[0] == 3 else MNIST_PAPER
    return Models(study.unconditional, study.forget, study.schedule, study.image_shape, removal,
                  f"trained: {folders[0]} / {folders[1]}")


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------- the authors' sampling loop
@dataclass
class AuthorsTables:
    """Their ``GaussianDiffusion`` tables as fp32 host tensors, one entry per sampler step (T steps: theirs)."""

    timesteps: list[int]
    betas: torch.Tensor
    alphas: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor  # their ``a_bar_tmin1``: abar of the next step, abar_t itself at the last
    sqrt_1m_alphas_cumprod: torch.Tensor


def authors_tables(schedule: DiscreteSchedule, steps: int) -> AuthorsTables:
    betas_full = schedule.betas.float()
    abar_full = torch.cumprod(1.0 - betas_full, dim=0)
    timesteps = respaced_timesteps(schedule.num_timesteps, steps)
    abar = abar_full[timesteps]
    if steps == schedule.num_timesteps:
        betas = betas_full[timesteps]
    else:  # respaced: beta'_t = 1 - abar_t / abar_prev
        abar_next = torch.cat([abar[1:], torch.ones(1)])
        betas = 1.0 - abar / abar_next
    abar_prev = torch.cat([abar[1:], abar[-1:]])
    return AuthorsTables(timesteps, betas, 1.0 - betas, abar, abar_prev, torch.sqrt(1.0 - abar))


@dataclass(frozen=True)
class AuthorsDNG:
    lambda0: float
    prior: float
    temperature: float
    offset: float
    p_min: float = AUTHORS_P_MIN
    p_max: float = P_MAX


@contextlib.contextmanager
def authors_cudnn_flags():
    """Their ``set_seed`` turns cudnn's deterministic mode on and its autotuner off; restored afterwards."""
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def authors_posterior(tables: AuthorsTables, i: int, p_prev, new_x, x, eps, eps_forget, dng: AuthorsDNG):
    """Alg. 2 as their ``compute_posterior_DNG`` computes it: 0-dim host constants, beta_tilde variance,
    a NaN check read back to the host, then the clamp."""
    a_t, abar_t, abar_prev = tables.alphas[i], tables.alphas_cumprod[i], tables.alphas_cumprod_prev[i]
    sigma_square = (1 - abar_prev) / (1 - abar_t) * (1 - a_t)
    x, new_x = torch.flatten(x, start_dim=1), torch.flatten(new_x, start_dim=1)
    eps, eps_forget = torch.flatten(eps, start_dim=1), torch.flatten(eps_forget, start_dim=1)
    mean = 1 / torch.sqrt(a_t) * (x - (1 - a_t) / torch.sqrt(1 - abar_t) * eps)
    mean_forget = 1 / torch.sqrt(a_t) * (x - (1 - a_t) / torch.sqrt(1 - abar_t) * eps_forget)
    diff = torch.sum((new_x - mean_forget) ** 2, dim=1) - torch.sum((new_x - mean) ** 2, dim=1)
    p = p_prev * torch.exp(1 / (2 * sigma_square) * (-dng.temperature * diff + dng.offset))
    if torch.isnan(p).any():  # their assert: one device-to-host read per step
        raise FloatingPointError("the authors' posterior is NaN (p_max too close to 1?)")
    return torch.clamp(p, min=dng.p_min, max=dng.p_max)


@torch.no_grad()
def authors_batch(models: Models, tables: AuthorsTables, dng: AuthorsDNG, n: int, device: torch.device,
                  seed: int = SEED, initial_noise: torch.Tensor | None = None, step_noise=None,
                  lambdas: list | None = None) -> torch.Tensor:
    """Their ``generate_batch`` -> ``gen_batch_DNG``. For the agreement check only: ``initial_noise`` and
    ``step_noise(i)`` replace their draws, ``lambdas`` collects each step's guidance scales."""
    with authors_cudnn_flags():
        torch.manual_seed(seed)
        if initial_noise is None:
            initial_noise = torch.randn((n, *models.image_shape))  # on the host, as their generate_batch
        x = initial_noise.to(device)
        p = dng.prior * torch.ones(n).to(device)
        last = len(tables.timesteps) - 1
        for i, t in enumerate(tables.timesteps):
            t_axis = t * torch.ones(n).to(device)
            beta = torch.tensor([float(tables.betas[i])]).to(device)
            sqrt_1m_abar = tables.sqrt_1m_alphas_cumprod[i].to(device)
            eps = models.unconditional(x, t_axis).sample
            eps_forget = models.forget(x, t_axis).sample
            lam = (dng.lambda0 * p / (1 - p))[:, None, None, None]
            if lambdas is not None:
                lambdas.append(lam.flatten())
            guided = eps - lam * (eps_forget - eps)
            b = beta[:, None, None, None]
            new_x = (x - b / sqrt_1m_abar * guided) / torch.sqrt(1.0 - beta)[:, None, None, None]
            if i != last:
                z = torch.randn_like(x) if step_noise is None else step_noise(i)
                new_x = new_x + torch.sqrt(beta)[:, None, None, None] * z
            p = authors_posterior(tables, i, p, new_x, x, eps, eps_forget, dng)
            x = new_x
    return x


def authors_dng(preset: RemovalPreset) -> AuthorsDNG:
    return AuthorsDNG(LAMBDA0, preset.dng_prior, preset.dng_temperature, preset.dng_offset)


# ----------------------------------------------------------------------------------------------------- ours
def our_spec(preset: RemovalPreset, steps: int):
    return guidance_spec(Point("dng", LAMBDA0, "ddpm", steps, P_MAX), preset)


def our_batch(networks: BranchNetworks, models: Models, spec, steps: int, n: int, noise: CommonNoise,
              record: str = "none"):
    """The samples and the batch's GuidanceRun."""
    sampler = SamplerSettings("ddpm", steps, models.removal.sampler_variance)
    x, run, _ = sample_batch(networks, models.schedule, spec, sampler, range(n), noise, record=record)
    return x, run


# ---------------------------------------------------------------------------------------------------- timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> tuple[float, torch.Tensor]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def samplers(models: Models, batch: int, steps: int, device: torch.device) -> dict:
    """name -> a function sampling one batch at ``steps`` steps."""
    tables, dng = authors_tables(models.schedule, steps), authors_dng(models.removal)
    autocast = torch.bfloat16 if device.type == "cuda" else None
    networks = BranchNetworks(models.unconditional, models.forget, autocast)
    spec = our_spec(models.removal, steps)
    noise = CommonNoise(SEED, models.image_shape, device)
    return {"authors": lambda: authors_batch(models, tables, dng, batch, device),
            "ours": lambda: our_batch(networks, models, spec, steps, batch, noise)[0]}


def measure(models: Models, args, device: torch.device, report) -> None:
    """samples/s of each sampler per round, rounds alternating the order; stops early past ``--max-seconds``."""
    warm = samplers(models, args.batch, min(args.steps, 3), device)  # kernels and allocations of the batch
    for fn in warm.values():
        timed(fn, device)
    runs = samplers(models, args.batch, args.steps, device)
    rates = {name: [] for name in runs}
    finite = {name: True for name in runs}
    started = time.perf_counter()
    for r in range(args.rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            seconds, x = timed(runs[name], device)
            rates[name].append(args.batch / seconds)
            finite[name] &= bool(torch.isfinite(x).all())
        print(f"round {r + 1}: authors {rates['authors'][-1]:.2f}, ours {rates['ours'][-1]:.2f} samples/s",
              flush=True)
        report(rates, all(finite.values()))
        elapsed = time.perf_counter() - started
        if args.max_seconds and elapsed * (r + 2) / (r + 1) > args.max_seconds:
            break


def near_copy(model: torch.nn.Module, scale: float = 0.03, seed: int = 5) -> torch.nn.Module:
    """``model`` with its weights perturbed by ``scale`` of each tensor's spread: a to-forget network whose
    predictions stay close to the unconditional ones, so DNG's posterior moves gradually instead of falling to
    p_min at the first step (as it does between two unrelated random networks)."""
    near = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in near.parameters():
            if p.numel() > 1:
                p.add_(torch.randn(p.shape, generator=generator).to(p.device) * scale * p.std())
    return near


def agreement(models: Models, steps: int, device: torch.device, n: int = 4) -> dict:
    """Both samplers in fp32 from the same noise, ours with the authors' tracker variance (beta_tilde): the
    largest differences of the samples and of the per-step guidance scales. Random models use a near copy of
    the unconditional UNet as the to-forget network."""
    if models.label.endswith("random weights"):
        models = dataclasses.replace(models, forget=near_copy(models.unconditional))
    preset = dataclasses.replace(models.removal, transition_variance="beta_tilde")
    noise = CommonNoise(SEED + 1, models.image_shape, device)
    indices = range(n)
    networks = BranchNetworks(models.unconditional, models.forget, None)
    ours, run = our_batch(networks, models, our_spec(preset, steps), steps, n, noise, record="per_image")
    lambdas: list[torch.Tensor] = []
    theirs = authors_batch(models, authors_tables(models.schedule, steps), authors_dng(preset), n, device,
                           initial_noise=noise.initial(indices), step_noise=lambda i: noise.step(indices, i),
                           lambdas=lambdas)
    our_lambdas = torch.tensor([r["lambda"] for r in run.records if "lambda" in r], dtype=torch.float64)
    their_lambdas = torch.stack(lambdas).double().cpu()
    return {"steps": steps, "samples": n, "max_abs_diff": float((ours - theirs).abs().max()),
            "max_abs_sample": float(theirs.abs().max()),
            "max_lambda_diff": float((our_lambdas - their_lambdas).abs().max()),
            "lambda_range": [float(their_lambdas.min()), float(their_lambdas.max())]}


# ---------------------------------------------------------------------------------------------------- report
def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {cpu_name()}, {torch.get_num_threads()} threads"


def summary(rates: dict[str, list[float]]) -> dict:
    medians = {name: statistics.median(values) for name, values in rates.items() if values}
    ratio = medians["ours"] / medians["authors"] if len(medians) == 2 else None
    return {"median_samples_per_s": medians, "ratio": ratio}


def print_table(result: dict) -> None:
    med, rates = result["median_samples_per_s"], result["samples_per_s"]
    rows = [("authors' loop (gen_batch_DNG)", "fp32", "authors"),
            ("ours (sample_batch, DNG transition)", result["our_precision"], "ours")]
    print(f"| sampler | precision | samples/s (median of {len(rates['authors'])}) | rounds | vs authors |")
    print("| --- | --- | --- | --- | --- |")
    for label, precision, name in rows:
        ratio = med[name] / med["authors"]
        rounds = ", ".join(f"{v:.2f}" for v in rates[name])
        print(f"| {label} | {precision} | {med[name]:.2f} | {rounds} | {ratio:.2f}x |")
    print(f"device: {result['device']}; torch {result['torch']}; {result['models']} "
          f"({result['parameters'] / 1e6:.2f} M parameters each); batch {result['batch']}, {result['steps']} steps "
          f"of T = {result['T']}; outputs finite: {result['finite']}")
    check = result.get("agreement")
    if check:
        print(f"check (fp32, same noise, {check['samples']} samples x {check['steps']} steps, tracker variance "
              f"beta_tilde as the authors): max |ours - authors| = {check['max_abs_diff']:.2e} "
              f"(samples up to {check['max_abs_sample']:.2f}); guidance scales {check['lambda_range'][0]:.3g} to "
              f"{check['lambda_range'][1]:.3g}, max difference {check['max_lambda_diff']:.2e}")


def write_json(path: Path | None, result: dict) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1))


# ------------------------------------------------------------------------------------------------------ main
def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--preset", choices=PRESETS, help="UNet architecture (default: mnist on a GPU, mnist-cpu on a CPU)")
    ap.add_argument("--model", nargs=2, metavar=("UNCOND", "FORGET"), help="two trained model/ folders instead")
    ap.add_argument("--batch", type=int, help="samples per batch (default: 512 on a GPU, 64 on a CPU)")
    ap.add_argument("--steps", type=int, help="sampler steps (default: T = 1000 on a GPU, 20 on a CPU)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-seconds", type=float, help="start no further round that would end past this")
    ap.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    ap.add_argument("--check-steps", type=int, help="steps of the agreement check (default: min(steps, 100); 0: off)")
    ap.add_argument("--smoke", action="store_true", help="mnist-tiny, batch 2, 3 steps, 1 round, on the CPU")
    ap.add_argument("--json", type=Path, help="also write the results here (after every round)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.device, args.preset, args.batch, args.steps, args.rounds = "cpu", "mnist-tiny", 2, 3, 1
    args.device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    gpu = args.device.type == "cuda"
    args.preset = args.preset or ("mnist" if gpu else "mnist-cpu")
    args.batch = args.batch or (512 if gpu else 64)
    args.steps = args.steps or (1000 if gpu else 20)
    args.check_steps = min(args.steps, 100) if args.check_steps is None else args.check_steps
    if args.batch < 1 or args.rounds < 1 or not 2 <= args.steps <= 1000:
        ap.error("--batch and --rounds must be >= 1, --steps in 2..1000")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    models = trained_models(args.model, device) if args.model else random_models(args.preset, device)
    result = {"device": device_description(device), "torch": torch.__version__, "models": models.label,
              "parameters": parameter_count(models.unconditional), "batch": args.batch, "steps": args.steps,
              "T": models.schedule.num_timesteps,
              "our_precision": "bf16 autocast" if device.type == "cuda" else "fp32", "authors_precision": "fp32"}

    def report(rates, finite):
        result.update(samples_per_s=rates, finite=finite, **summary(rates))
        write_json(args.json, result)

    measure(models, args, device, report)
    if args.check_steps:
        result["agreement"] = agreement(models, args.check_steps, device)
        write_json(args.json, result)
    print_table(result)
    if not result["finite"]:
        raise SystemExit("a sampler produced non-finite samples")
    return result


if __name__ == "__main__":
    main()
