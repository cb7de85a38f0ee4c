"""The testbed's measuring instrument: a CNN that reads a 32x32 scene back into its labels.

Outputs, for each of the 30 (shape, colour) objects, whether it is present, its size and its texture, plus the
background's kind and tone. Translation-invariant by construction (global max and mean pooling over a
convolutional trunk): an object is recognised wherever it is. Trained on rendered scenes of every object pair
(held-out pairs included: it must measure them) with mild noise and blur, so that it reads generated images,
which are never pixel-exact, as it reads renders. Turned into text (:func:`detection_caption`) it is DNP's
captioner.

    detector = load_detector("models/shapes-t2i/detector")
    found = detector.detect(images)          # images: float in [-1, 1], (B, 3, 32, 32)
    found[0]  -> {"objects": [{"shape": "circle", "colour": "red", "size": "large", "texture": "plain"}],
                  "background": "horizontal", "tone": "grey"}
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from train.errors import UsageError
from train.t2i.captions import full_caption
from train.t2i.scenes import (
    BACKGROUNDS,
    COLOURS,
    MAX_OBJECTS,
    OBJECTS,
    SHAPES,
    SIZES,
    TEXTURES,
    TONES,
    Scenes,
    render,
    sample_scenes,
    to_unit,
)
from train.t2i.stage import Stage

N_OBJ = len(OBJECTS)
HEADS = {"presence": N_OBJ, "size": N_OBJ * len(SIZES), "texture": N_OBJ * len(TEXTURES),
         "background": len(BACKGROUNDS), "tone": len(TONES)}
WEIGHTS, CONFIG = "model.safetensors", "config.json"
KIND = "negguide-shapes-detector"  # what negguide.generate's load_captioner recognises


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Detector(nn.Module):
    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.width = width
        self.trunk = nn.Sequential(
            _conv(3, w), _conv(w, w), nn.MaxPool2d(2),  # 16x16
            _conv(w, 2 * w), _conv(2 * w, 2 * w), nn.MaxPool2d(2),  # 8x8
            _conv(2 * w, 4 * w), _conv(4 * w, 4 * w), _conv(4 * w, 4 * w),
        )
        self.head = nn.Sequential(nn.Linear(8 * w, 8 * w), nn.ReLU(inplace=True), nn.Linear(8 * w, sum(HEADS.values())))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        f = self.trunk(x)
        return torch.cat([f.amax(dim=(2, 3)), f.mean(dim=(2, 3))], dim=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.head(self.pooled(x)).float()
        parts = dict(zip(HEADS, out.split(list(HEADS.values()), dim=1), strict=True))
        parts["size"] = parts["size"].view(-1, N_OBJ, len(SIZES))
        parts["texture"] = parts["texture"].view(-1, N_OBJ, len(TEXTURES))
        return parts

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """The head's hidden layer (after its ReLU) for float images in [-1, 1]: the detector-feature FID's space."""
        self.eval()
        device = next(self.parameters()).device
        return torch.cat([self.head[:2](self.pooled(images[i:i + batch_size].to(device, torch.float32))).cpu()
                          for i in range(0, len(images), batch_size)])

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor, batch_size: int = 512) -> dict[str, torch.Tensor]:
        """Per image: presence [B, 30] (sigmoid), size [B, 30, 2] and texture [B, 30, 3] (softmax per object),
        background [B, 5] and tone [B, 3] (softmax); float images in [-1, 1]."""
        self.eval()
        device = next(self.parameters()).device
        parts = [self(images[i:i + batch_size].to(device, torch.float32)) for i in range(0, len(images), batch_size)]
        out = {k: torch.cat([p[k] for p in parts]).cpu() for k in HEADS}
        return {"presence": out["presence"].sigmoid(), "size": out["size"].softmax(-1),
                "texture": out["texture"].softmax(-1), "background": out["background"].softmax(-1),
                "tone": out["tone"].softmax(-1)}

    @torch.no_grad()
    def detect(self, images: torch.Tensor, batch_size: int = 512, max_objects: int | None = None) -> list[dict]:
        """What each image shows, as plain Python (see the module docstring). ``max_objects``: keep only that many
        of the most probable objects (a caption of the testbed's language holds at most 3)."""
        self.eval()
        device = next(self.parameters()).device
        found = []
        for start in range(0, len(images), batch_size):
            parts = self(images[start:start + batch_size].to(device, torch.float32))
            present = parts["presence"] > 0
            if max_objects is not None:  # the objects outside each image's top max_objects logits drop out
                kth = parts["presence"].topk(min(max_objects, N_OBJ), dim=1).values[:, -1:]
                present &= parts["presence"] >= kth
            size, texture = parts["size"].argmax(-1), parts["texture"].argmax(-1)
            for i in range(present.shape[0]):
                objects = [{"shape": OBJECTS[o][0], "colour": OBJECTS[o][1], "size": SIZES[int(size[i, o])],
                            "texture": TEXTURES[int(texture[i, o])]} for o in present[i].nonzero().flatten().tolist()]
                found.append({"objects": objects, "background": BACKGROUNDS[int(parts["background"][i].argmax())],
                              "tone": TONES[int(parts["tone"][i].argmax())]})
        return found


def targets(scenes: Scenes) -> dict[str, torch.Tensor]:
    """The heads' training targets: presence (B, 30) in {0, 1}; size / texture (B, 30) indices, -1 where the
    object is absent (ignored by the loss); background, tone (B,)."""
    n = len(scenes)
    presence = torch.zeros(n, N_OBJ)
    size = torch.full((n, N_OBJ), -1, dtype=torch.long)
    texture = torch.full((n, N_OBJ), -1, dtype=torch.long)
    rows = torch.arange(n)
    for k in range(scenes.obj.shape[1]):
        here = scenes.obj[:, k] >= 0
        o = scenes.obj[here, k]
        presence[rows[here], o] = 1.0
        size[rows[here], o] = scenes.size[here, k]
        texture[rows[here], o] = scenes.texture[here, k]
    return {"presence": presence, "size": size, "texture": texture, "background": scenes.background,
            "tone": scenes.tone}


def detector_loss(parts: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> torch.Tensor:
    ce = nn.functional.cross_entropy
    loss = nn.functional.binary_cross_entropy_with_logits(parts["presence"], target["presence"]) * N_OBJ
    loss = loss + ce(parts["size"].reshape(-1, len(SIZES)), target["size"].flatten(), ignore_index=-1)
    loss = loss + ce(parts["texture"].reshape(-1, len(TEXTURES)), target["texture"].flatten(), ignore_index=-1)
    return loss + ce(parts["background"], target["background"]) + ce(parts["tone"], target["tone"])


def degrade(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """What generated images show and renders do not: per image, Gaussian noise of std up to 0.04 and a blur
    of random strength (a mix with a 3x3 binomial blur of weight up to 0.35; more blur erases the 2-pixel dots
    and stripes the texture labels need)."""
    n = x.shape[0]
    kernel = torch.tensor([1.0, 2.0, 1.0])
    kernel = (kernel[:, None] * kernel[None, :] / 16).expand(3, 1, 3, 3)
    blurred = nn.functional.conv2d(nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    mix = 0.35 * torch.rand(n, 1, 1, 1, generator=g)
    noise = 0.04 * torch.rand(n, 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g)
    return ((1 - mix) * x + mix * blurred + noise).clamp(-1, 1)


class DetectorStage(Stage):
    name = "detector"
    salt = 1

    @staticmethod
    def schedule_of(preset):
        return preset.detector

    def config(self):
        return {"detector_width": self.preset.detector_width, "seed": self.preset.seed}

    def build(self):
        return nn.ModuleDict({"detector": Detector(self.preset.detector_width)})

    def data(self, g):
        scenes = sample_scenes(g, self.schedule.batch_size)  # every pair: the instrument must see them all
        return degrade(to_unit(render(scenes)), g), targets(scenes)

    def loss(self, nets, data, g, autocast):
        x, target = data
        return self.scored(nets, x.to(self.device), target, autocast)

    def scored(self, nets, x: torch.Tensor, target: dict[str, torch.Tensor], autocast) -> torch.Tensor:
        """The detector's loss on images ``x`` against their exact labels (`targets` of their scenes)."""
        target = {k: v.to(self.device) for k, v in target.items()}
        with autocast():
            parts = nets["detector"](x)
        return detector_loss(parts, target)

    def export(self, nets, folder: Path) -> None:
        save_detector(nets["detector"], folder)


def save_detector(detector: Detector, folder: Path) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in detector.state_dict().items()}, folder / WEIGHTS)
    labels = {"shapes": SHAPES, "colours": COLOURS, "sizes": SIZES, "textures": TEXTURES,
              "backgrounds": BACKGROUNDS, "tones": TONES}
    (folder / CONFIG).write_text(json.dumps({"kind": KIND, "width": detector.width, **labels}, indent=1))


def load_detector(folder: str | Path, device: str | torch.device = "cpu") -> Detector:
    """A saved detector (safetensors only), in eval mode; its label lists must be this code's."""
    from train.model_dir import verify_hashes

    folder = Path(folder)
    if not (folder / WEIGHTS).is_file() or not (folder / CONFIG).is_file():
        raise UsageError(f"{folder} is not a detector folder (needs {WEIGHTS} and {CONFIG})")
    verify_hashes(folder)
    config = json.loads((folder / CONFIG).read_text())
    if config.get("kind") != KIND:
        raise UsageError(f"{folder} is not a shapes-testbed detector (config.json kind {config.get('kind')!r})")
    labels = {"shapes": SHAPES, "colours": COLOURS, "sizes": SIZES, "textures": TEXTURES, "backgrounds": BACKGROUNDS,
              "tones": TONES}
    if any(tuple(config.get(k, ())) != v for k, v in labels.items()):
        raise UsageError(f"{folder} was trained on other labels than this version's scenes")
    detector = Detector(config["width"])
    detector.load_state_dict(load_file(folder / WEIGHTS))
    return detector.to(device).eval()


def detection_caption(found: dict) -> str:
    """A detection as a caption of the testbed's language (every object fully, then the background): DNP's
    caption of a diffusion-negative sample. Detect with ``max_objects=MAX_OBJECTS`` (:func:`image_captions`):
    the language, and the 32-token text encoder, hold at most three objects."""
    return full_caption(found)


def image_captions(detector: Detector, images: torch.Tensor) -> list[str]:
    """Each image in [-1, 1] as a caption of the testbed's language (its three most probable objects at most)."""
    return [detection_caption(f) for f in detector.detect(images, max_objects=MAX_OBJECTS)]


def scene_detection(scenes: Scenes, i: int) -> dict:
    """Scene i's labels in the detector's output format (what a perfect detector returns)."""
    d = scenes.describe(i)
    objects = sorted(({k: o[k] for k in ("shape", "colour", "size", "texture")} for o in d["objects"]),
                     key=lambda o: OBJECTS.index((o["shape"], o["colour"])))
    return {"objects": objects, "background": d["background"], "tone": d["tone"]}
