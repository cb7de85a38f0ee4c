"""Stage `diffusion`: the testbed's text encoder and UNet, trained together on captioned scenes.

Latent diffusion as in Stable Diffusion 1.x: the frozen VAE of stage `vae` encodes each batch of generated
scenes, a CLIP text encoder (3 layers, trained from scratch with the UNet) reads the captions through the
testbed's word-level tokenizer, and a UNet2DConditionModel predicts the noise (epsilon) at uniformly drawn
timesteps of SD's scaled-linear schedule, with min-SNR-gamma loss weighting (Hang et al. 2023) and
`cfg_dropout` of the captions replaced by "" for classifier-free guidance. The export is a complete
`StableDiffusionPipeline` folder (no safety checker): `NegGuidePipeline.from_pretrained(folder)` loads it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor
from diffusers.training_utils import compute_snr
from transformers import CLIPTextConfig, CLIPTextModel

from train.errors import UsageError
from train.sampling import save_grid
from train.t2i.captions import captions_for
from train.t2i.scenes import held_out_pairs, render, sample_scenes, to_unit
from train.t2i.stage import Stage
from train.t2i.tokenizer import MAX_LENGTH, load_tokenizer, save_tokenizer

# Stable Diffusion 1.x's noise schedule and DDIM settings: the testbed behaves like SD in every scheduler.
SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "prediction_type": "epsilon", "clip_sample": False, "steps_offset": 1}
DEFAULT_CFG = 7.5  # chosen over 4 on an intermediate checkpoint (docs/t2i/testbed.md); the quality bar uses it
PREVIEW_PROMPTS = (
    "a red circle", "a blue square and a yellow triangle", "a green cross on a black background",
    "a purple diamond, a cyan circle and a red square", "a striped yellow square on horizontal stripes",
    "a dotted blue circle on a checkered background", "two shapes on a cloudy background",
    "a large red triangle and a small green circle on a white background",
)


def text_encoder_config(preset, tokenizer) -> CLIPTextConfig:
    return CLIPTextConfig(vocab_size=len(tokenizer), max_position_embeddings=MAX_LENGTH,
                          bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id, **preset.text)


def fast_attention(unet: UNet2DConditionModel) -> None:
    """Plain matmul-softmax attention for CPU training: PyTorch's fused SDPA kernel's backward pass was the slower
    one in profiles of these short sequences (32 text tokens) and small heads (docs/training.md)."""
    unet.set_attn_processor(AttnProcessor())


class WarmStart:
    """A trained testbed model whose UNet and text encoder start the diffusion stage (`--diffusion-init`): e.g. a
    CPU-trained model continued on a GPU. Its optimizer state is not in a model folder, so AdamW and the EMA start
    afresh (the LR warm-up runs again). It must have been trained on this run's VAE and tokenizer."""

    PARTS = {"unet": "unet/diffusion_pytorch_model.safetensors", "text_encoder": "text_encoder/model.safetensors"}

    def __init__(self, model: Path, vae_dir: Path, tokenizer_dir: Path):
        import hashlib

        from safetensors.torch import load_file

        from train.checkpoint import sha256_file

        missing = [name for name in [*self.PARTS.values(), "vae/diffusion_pytorch_model.safetensors",
                                     "tokenizer/vocab.json"] if not (model / name).is_file()]
        if missing:
            raise UsageError(f"--diffusion-init {model}: not a testbed model folder (missing {', '.join(missing)})")
        ours = load_file(vae_dir / "diffusion_pytorch_model.safetensors")
        theirs = load_file(model / "vae" / "diffusion_pytorch_model.safetensors")
        if ours.keys() != theirs.keys() or any(not torch.equal(ours[k].to(v.dtype), v) for k, v in theirs.items()):
            raise UsageError(f"--diffusion-init {model}: its VAE is not this run's ({vae_dir}); its latents would "
                             "mean something else")
        if (model / "tokenizer" / "vocab.json").read_text() != (tokenizer_dir / "vocab.json").read_text():
            raise UsageError(f"--diffusion-init {model}: its tokenizer's vocabulary is not this run's")
        self.model = model
        hashes = "".join(sha256_file(model / name) for name in self.PARTS.values())
        self.digest = hashlib.sha256(hashes.encode()).hexdigest()[:16]

    def load_into(self, nets: torch.nn.ModuleDict) -> None:
        """Copy the weights in (float32, whatever they were stored in); the networks must be the preset's."""
        from safetensors.torch import load_file

        for part, name in self.PARTS.items():
            weights = {k: v.float() for k, v in load_file(self.model / name).items()}
            try:
                nets[part].load_state_dict(weights, strict=True)
            except RuntimeError as err:
                raise UsageError(f"--diffusion-init {self.model}: its {part} is not the preset's network: "
                                 f"{str(err).splitlines()[0]}") from err


class DiffusionStage(Stage):
    name = "diffusion"
    salt = 3
    uses_ema = True
    lr_decay = "constant"

    def __init__(self, preset, device, vae_dir: Path, tokenizer_dir: Path, init_dir: Path | None = None):
        super().__init__(preset, device)
        self.vae = AutoencoderKL.from_pretrained(vae_dir).to(device).eval().requires_grad_(False)
        self.tokenizer_dir = save_tokenizer(tokenizer_dir)
        self.tokenizer = load_tokenizer(self.tokenizer_dir)
        self.noise = DDPMScheduler(**SCHEDULE)
        self.held_out = held_out_pairs(preset.held_out_fraction)
        self.init = WarmStart(Path(init_dir), Path(vae_dir), Path(tokenizer_dir)) if init_dir else None

    @staticmethod
    def schedule_of(preset):
        return preset.diffusion

    def config(self):
        p = self.preset
        return {"unet": p.unet, "text": p.text, "seed": p.seed, "cfg_dropout": p.cfg_dropout,
                "snr_gamma": p.snr_gamma, "ema_decay": p.ema_decay, "held_out_fraction": p.held_out_fraction,
                "schedule_noise": SCHEDULE, "vae_scaling_factor": self.vae.config.scaling_factor,
                **({"init": self.init.digest} if self.init else {})}

    def build(self):
        unet = UNet2DConditionModel(**self.preset.unet)
        if self.device.type == "cpu":
            fast_attention(unet)
        nets = torch.nn.ModuleDict({"unet": unet,
                                    "text_encoder": CLIPTextModel(text_encoder_config(self.preset, self.tokenizer))})
        if self.init:
            self.init.load_into(nets)
        return nets

    def data(self, g):
        """Scenes rendered, and their captions (`cfg_dropout` of them empty) as token ids."""
        n = self.schedule.batch_size
        scenes = sample_scenes(g, n, self.held_out)
        captions = captions_for(scenes, int(torch.randint(0, 2**62, (1,), generator=g)))
        dropped = (torch.rand(n, generator=g) < self.preset.cfg_dropout).tolist()
        captions = ["" if drop else c for c, drop in zip(captions, dropped, strict=True)]
        ids = self.tokenizer(captions, padding="max_length", max_length=MAX_LENGTH, truncation=True,
                             return_tensors="pt").input_ids
        return to_unit(render(scenes)), ids

    def loss(self, nets, data, g, autocast):
        x, ids = (t.to(self.device) for t in data)
        with torch.no_grad():
            posterior = self.vae.encode(x).latent_dist
            eps_latent = torch.randn(posterior.mean.shape, generator=g).to(self.device)
            latents = (posterior.mean + posterior.std * eps_latent) * self.vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=g).to(self.device)
        t = torch.randint(0, self.noise.config.num_train_timesteps, (len(x),), generator=g).to(self.device)
        noisy = self.noise.add_noise(latents, noise, t)
        with autocast():
            hidden = nets["text_encoder"](ids)[0]
            pred = nets["unet"](noisy, t, encoder_hidden_states=hidden).sample
        per_sample = (pred.float() - noise).pow(2).mean(dim=(1, 2, 3))
        if self.preset.snr_gamma > 0:
            snr = compute_snr(self.noise, t)
            per_sample = per_sample * torch.clamp(snr, max=self.preset.snr_gamma) / snr
        return per_sample.mean()

    def pipeline(self, nets, tokenizer=None):
        from diffusers import StableDiffusionPipeline

        return StableDiffusionPipeline(
            vae=self.vae, text_encoder=nets["text_encoder"], tokenizer=tokenizer or self.tokenizer, unet=nets["unet"],
            scheduler=DDIMScheduler(**SCHEDULE, set_alpha_to_one=False), safety_checker=None,
            feature_extractor=None, requires_safety_checker=False)

    @torch.no_grad()
    def preview(self, nets, step, run_dir):
        pipe = self.pipeline(nets)
        pipe.set_progress_bar_config(disable=True)
        g = [torch.Generator().manual_seed(i) for i in range(len(PREVIEW_PROMPTS))]
        images = pipe(list(PREVIEW_PROMPTS), num_inference_steps=25, guidance_scale=DEFAULT_CFG, generator=g,
                      output_type="pt").images
        save_grid(images * 2 - 1, run_dir / "samples" / f"step-{step:06d}.png", columns=len(PREVIEW_PROMPTS))

    def export(self, nets, folder: Path) -> None:
        # a tokenizer never called: a used one writes the training's padding and truncation into tokenizer.json
        pipe = self.pipeline(nets, load_tokenizer(self.tokenizer_dir))
        pipe.save_pretrained(folder, safe_serialization=True)
        save_tokenizer(folder / "tokenizer")  # vocab.json + merges.txt: what transformers 4's CLIPTokenizer reads
        # negguide's per-model defaults (negguide/generate/model_defaults.py); the detector joins the folder later
        (folder / "negguide.json").write_text(json.dumps(
            {"guidance_scale": DEFAULT_CFG, "steps": 50, "captioner": "detector",
             "testbed": {"preset": self.preset.name, "held_out_fraction": self.preset.held_out_fraction}}, indent=1))
