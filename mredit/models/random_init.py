"""Random-weight checkpoint folders in the exact layout, configs and tensor sizes of the real pretrained ones.

``init_random("sd15" | "sd15-ip2p" | "llava-smartedit", out_dir)`` writes, with no download:

- ``sd15``: a Stable Diffusion 1.5 diffusers folder (``unet/ vae/ text_encoder/ tokenizer/ scheduler/
  model_index.json``); ``sd15-ip2p``: the same with InstructPix2Pix's 8-channel UNet ``conv_in``. Both without the
  safety checker and feature extractor, which nothing here loads.
- ``llava-smartedit``: SmartEdit's pretrained parts, ``llava/`` (a LLaVA-1.1 7B folder: LLaMA-7B widths, the
  linear ``mm_projector`` inside the shards, a 32000-token tokenizer) and ``clip-vision/`` (the CLIP ViT-L/14 @ 224
  folder, text and vision towers). ``layers`` keeps the first N LLaMA layers (every width stays), since the full
  7B model does not train in 24 GiB.

The configs are the published ones, shipped as JSON in ``mredit/models/architectures/``; ``tiny`` swaps in small
widths (``tiny.json``) for seconds-long tests of the same layout. The weights are random: these folders check
wiring, shapes, dtypes and memory, they cannot edit anything. So are the tokenizers: a byte-level BPE with
CLIP's 49408 ids (BOS 49406, EOS 49407) and a byte-fallback BPE with LLaMA's 32000 (``<unk> <s> </s>``, then the
256 byte tokens), whose merges are generated (letter and digit strings), not the real vocabularies.

Models are built on the meta device (no init cost) only to list their tensors; each tensor is drawn straight into
a streamed safetensors file (one tensor in memory at a time): matrices N(0, 1/fan_in), embeddings N(0, 0.02),
norms 1, biases 0.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import string
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch import nn
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaForCausalLM

Arch = Literal["sd15", "sd15-ip2p", "llava-smartedit"]
ARCHS: tuple[str, ...] = get_args(Arch)
ARCHITECTURES = Path(__file__).with_name("architectures")
PIPELINE_CLASSES = {"sd15": "StableDiffusionPipeline", "sd15-ip2p": "StableDiffusionInstructPix2PixPipeline"}
LLAVA_SUBFOLDER, CLIP_VISION_SUBFOLDER = "llava", "clip-vision"
# the shard size of the LLaVA folder: a full-depth 7B model in fp16 (13.5 GB) gives two shards, as released
LLAVA_MAX_SHARD_BYTES = 10 * 1024**3
CLIP_BOS, CLIP_EOS, END_OF_WORD = "<|startoftext|>", "<|endoftext|>", "</w>"
CLIP_VOCAB_SIZE, LLAMA_VOCAB_SIZE = 49408, 32000
LLAMA_SPECIALS = ("<unk>", "<s>", "</s>")
EMBEDDING_STD = 0.02
_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def architecture_config(name: str) -> dict[str, Any]:
    """A config shipped in ``mredit/models/architectures/`` (``sd15_unet``, ``llava_7b_v1``, ``tiny``, ...)."""
    return json.loads((ARCHITECTURES / f"{name}.json").read_text())


def _deep_update(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        out[key] = (
            _deep_update(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


# ---- tensors ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a checkpoint and how to draw it: ``init`` is ``normal`` (``std``), ``ones``, ``zeros`` or
    ``constant`` (``value``)."""

    name: str
    shape: tuple[int, ...]
    init: str
    std: float = 0.0
    value: float = 0.0

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.LayerNorm, nn.GroupNorm)) or "RMSNorm" in type(module).__name__


def tensor_specs(model: nn.Module) -> list[TensorSpec]:
    """The state-dict tensors of ``model`` (built on the meta device) with their random init."""
    specs = []
    logit_scale = getattr(getattr(model, "config", None), "logit_scale_init_value", math.log(1 / 0.07))
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            name, shape = f"{module_name}.{param_name}" if module_name else param_name, tuple(param.shape)
            if _is_norm(module):
                specs.append(TensorSpec(name, shape, "ones" if param_name == "weight" else "zeros"))
            elif isinstance(module, nn.Embedding):
                specs.append(TensorSpec(name, shape, "normal", std=EMBEDDING_STD))
            elif param_name == "bias":
                specs.append(TensorSpec(name, shape, "zeros"))
            elif param_name == "logit_scale":
                specs.append(TensorSpec(name, shape, "constant", value=logit_scale))
            elif param.dim() >= 2:  # linear and conv weights: unit-variance outputs for unit-variance inputs
                specs.append(TensorSpec(name, shape, "normal", std=1 / math.sqrt(math.prod(shape[1:]))))
            else:  # learned vectors (CLIP's class embedding)
                specs.append(TensorSpec(name, shape, "normal", std=EMBEDDING_STD))
    expected = set(model.state_dict())
    if {s.name for s in specs} != expected:  # a persistent buffer or a tied weight would need a value of its own
        raise ValueError(
            f"{type(model).__name__}: state dict and parameters differ: {expected ^ {s.name for s in specs}}"
        )
    return specs


def draw(spec: TensorSpec, dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    if spec.init == "normal":
        return torch.empty(spec.shape).normal_(0.0, spec.std, generator=generator).to(dtype)
    if spec.init == "constant":
        return torch.full(spec.shape, spec.value, dtype=dtype)
    return (torch.ones if spec.init == "ones" else torch.zeros)(spec.shape, dtype=dtype)


def write_safetensors(
    path: Path, specs: list[TensorSpec], dtype: torch.dtype, generator: torch.Generator, metadata: dict[str, str]
) -> None:
    """Write a safetensors file whose tensors are drawn one at a time: the header (names, dtypes, shapes, offsets)
    is known from the specs, so the data streams out and memory holds one tensor, not the checkpoint."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for spec in specs:
        size = spec.numel * itemsize
        header[spec.name] = {
            "dtype": _SAFETENSORS_DTYPES[dtype],
            "shape": list(spec.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for spec in specs:
            f.write(draw(spec, dtype, generator).contiguous().view(-1).view(torch.uint8).numpy().data)


# ---- tokenizers -----------------------------------------------------------------------------------------------
def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins of the bytes (GPT-2/CLIP byte-level BPE), in CLIP's vocabulary order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    codes = printable + [256 + i for i in range(len(extra))]
    return [chr(c) for c in codes]


def _string_merges(first: Iterator[tuple[str, str]], symbols: str, word_end: str = "") -> Iterator[tuple[str, str]]:
    """Merges building every string of ``symbols`` up to three long (after the ``first`` ones); with ``word_end``
    each merge also comes in a word-final form."""
    yield from first
    for length in (1, 2):
        for prefix in ("".join(p) for p in itertools.product(symbols, repeat=length)):
            for symbol in symbols:
                yield prefix, symbol
                if word_end:
                    yield prefix, symbol + word_end


def clip_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's id layout (256 byte symbols, the same ending a word, 48894 merges, BOS 49406, EOS 49407) with
    generated merges: lower-case letter and digit strings up to three long."""
    alphabet = _byte_alphabet()
    tokens = alphabet + [c + END_OF_WORD for c in alphabet]
    count = CLIP_VOCAB_SIZE - len(tokens) - 2
    merges = list(
        itertools.islice(_string_merges(iter(()), string.ascii_lowercase + string.digits, END_OF_WORD), count)
    )
    tokens += [left + right for left, right in merges] + [CLIP_BOS, CLIP_EOS]
    return {token: i for i, token in enumerate(tokens)}, merges


def write_clip_tokenizer(folder: Path) -> None:
    """SD1.5's tokenizer files (``vocab.json``, ``merges.txt``, ``tokenizer_config.json``,
    ``special_tokens_map.json``) over the synthetic vocabulary; ``CLIPTokenizer.from_pretrained`` reads them."""
    vocab, merges = clip_vocabulary()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    config = architecture_config("clip_tokenizer")
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    specials = {k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))


def llama_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """LLaMA's id layout (``<unk> <s> </s>``, the byte tokens ``<0x00>``..``<0xFF>``, then pieces; 32000 in all)
    with generated pieces: the word-start marker, letters, digits and punctuation, then strings of them."""
    bytes_ = [f"<0x{b:02X}>" for b in range(256)]
    singles = ["▁", *string.ascii_letters, *string.digits, *string.punctuation]
    word_starts = (("▁", c) for c in string.ascii_letters + string.digits)
    count = LLAMA_VOCAB_SIZE - len(LLAMA_SPECIALS) - len(bytes_) - len(singles)
    merges = list(itertools.islice(_string_merges(word_starts, string.ascii_lowercase + string.digits), count))
    tokens = [*LLAMA_SPECIALS, *bytes_, *singles, *(left + right for left, right in merges)]
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != LLAMA_VOCAB_SIZE:
        raise AssertionError(f"the LLaMA vocabulary has {len(vocab)} distinct tokens")
    return vocab, merges


def write_llama_tokenizer(folder: Path) -> None:
    """A ``LlamaTokenizer`` (byte-fallback BPE, ``tokenizer.json``) over the synthetic 32000-token vocabulary."""
    from transformers import LlamaTokenizer

    vocab, merges = llama_vocabulary()
    config = architecture_config("llama_tokenizer")
    options = {k: v for k, v in config.items() if k != "tokenizer_class"}
    tokenizer = LlamaTokenizer(vocab=vocab, merges=merges, **options)
    tokenizer.save_pretrained(folder)


# ---- components -----------------------------------------------------------------------------------------------
@dataclass
class Component:
    """One model folder of a checkpoint: its config file, the weights to draw and how they are named on disk."""

    subfolder: str
    config: dict[str, Any]
    model: nn.Module  # on the meta device
    dtype: torch.dtype
    weights_name: str  # diffusion_pytorch_model.safetensors or model.safetensors
    extra: list[TensorSpec] = field(default_factory=list)
    max_shard_bytes: int | None = None

    def specs(self) -> list[TensorSpec]:
        return tensor_specs(self.model) + self.extra

    @property
    def num_parameters(self) -> int:
        return sum(spec.numel for spec in self.specs())

    @property
    def num_bytes(self) -> int:
        return self.num_parameters * torch.empty((), dtype=self.dtype).element_size()


def _meta(build: Any) -> nn.Module:
    with torch.device("meta"):
        return build()


def sd15_components(ip2p: bool, tiny: bool = False) -> list[Component]:
    tiny_overrides = architecture_config("tiny") if tiny else {}
    unet_config = _deep_update(architecture_config("sd15_unet"), tiny_overrides.get("unet", {}))
    if ip2p:  # InstructPix2Pix: the source latents are concatenated to the noisy ones
        unet_config["in_channels"] = 2 * unet_config["in_channels"]
    vae_config = _deep_update(architecture_config("sd15_vae"), tiny_overrides.get("vae", {}))
    text_config = _deep_update(architecture_config("sd15_text_encoder"), tiny_overrides.get("text_encoder", {}))
    return [
        Component(
            "unet",
            unet_config,
            _meta(lambda: UNet2DConditionModel.from_config(unet_config)),
            torch.float32,
            "diffusion_pytorch_model.safetensors",
        ),
        Component(
            "vae",
            vae_config,
            _meta(lambda: AutoencoderKL.from_config(vae_config)),
            torch.float32,
            "diffusion_pytorch_model.safetensors",
        ),
        Component(
            "text_encoder",
            text_config,
            _meta(lambda: CLIPTextModel(CLIPTextConfig.from_dict(text_config))),
            torch.float32,
            "model.safetensors",
        ),
    ]


def llava_components(layers: int | None = None, tiny: bool = False) -> list[Component]:
    tiny_overrides = architecture_config("tiny") if tiny else {}
    llava_config = _deep_update(architecture_config("llava_7b_v1"), tiny_overrides.get("llava", {}))
    full_depth = llava_config["num_hidden_layers"]
    if layers is not None:
        if not 1 <= layers <= full_depth:
            raise ValueError(f"--layers must be in [1, {full_depth}] (the LLaMA's depth), got {layers}")
        llava_config["num_hidden_layers"] = layers
    clip_config = _deep_update(architecture_config("clip_vit_large_patch14"), tiny_overrides.get("clip", {}))
    llm = _meta(lambda: LlamaForCausalLM(LlamaConfig.from_dict({**llava_config, "model_type": "llama"})))
    hidden, vision = llava_config["hidden_size"], llava_config["mm_hidden_size"]
    # LLaVA-1.1 keeps its projector, one Linear (vision -> LLM width), inside the LLM's shards
    projector = [
        TensorSpec("model.mm_projector.weight", (hidden, vision), "normal", std=1 / math.sqrt(vision)),
        TensorSpec("model.mm_projector.bias", (hidden,), "zeros"),
    ]
    return [
        Component(
            LLAVA_SUBFOLDER,
            llava_config,
            llm,
            _DTYPES[llava_config["torch_dtype"]],
            "model.safetensors",
            projector,
            LLAVA_MAX_SHARD_BYTES,
        ),
        Component(
            CLIP_VISION_SUBFOLDER,
            clip_config,
            _meta(lambda: CLIPModel(CLIPConfig.from_dict(clip_config))),
            torch.float32,
            "model.safetensors",
        ),
    ]


def components(arch: Arch, layers: int | None = None, tiny: bool = False) -> list[Component]:
    """The model folders of ``arch`` (configs and meta-device models), without writing anything."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    if arch == "llava-smartedit":
        return llava_components(layers, tiny)
    if layers is not None:
        raise ValueError(f"--layers truncates the LLaMA of llava-smartedit; {arch} is written whole")
    return sd15_components(arch == "sd15-ip2p", tiny)


def parameter_counts(arch: Arch, layers: int | None = None, tiny: bool = False) -> dict[str, int]:
    """Parameters per model folder (computed on the meta device: nothing is allocated)."""
    return {component.subfolder: component.num_parameters for component in components(arch, layers, tiny)}


def _shards(specs: list[TensorSpec], itemsize: int, max_bytes: int | None) -> list[list[TensorSpec]]:
    shards: list[list[TensorSpec]] = [[]]
    size = 0
    for spec in specs:
        nbytes = spec.numel * itemsize
        if max_bytes is not None and shards[-1] and size + nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(spec)
        size += nbytes
    return shards


def write_component(component: Component, root: Path, generator: torch.Generator) -> Path:
    folder = root / component.subfolder
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(component.config, indent=2) + "\n")
    itemsize = torch.empty((), dtype=component.dtype).element_size()
    shards = _shards(component.specs(), itemsize, component.max_shard_bytes)
    metadata = {"format": "pt"}
    if len(shards) == 1:
        write_safetensors(folder / component.weights_name, shards[0], component.dtype, generator, metadata)
        return folder
    stem, suffix = component.weights_name.rsplit(".", 1)
    weight_map, total = {}, 0
    for index, shard in enumerate(shards, start=1):
        name = f"{stem}-{index:05d}-of-{len(shards):05d}.{suffix}"
        write_safetensors(folder / name, shard, component.dtype, generator, metadata)
        weight_map.update({spec.name: name for spec in shard})
        total += sum(spec.numel for spec in shard) * itemsize
    index_file = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / f"{component.weights_name}.index.json").write_text(json.dumps(index_file, indent=2) + "\n")
    return folder


def check_empty_folder(out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ValueError(f"output folder {out_dir} exists and is not empty")
    return out_dir


def _check_disk(out_dir: Path, needed: int) -> None:
    existing = next(p for p in (out_dir, *out_dir.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if needed * 1.02 > free:
        raise ValueError(f"{out_dir}: needs {needed / 1024**3:.1f} GiB, only {free / 1024**3:.1f} GiB free there")


def _write_model_index(arch: str, root: Path) -> None:
    index = {
        "_class_name": PIPELINE_CLASSES[arch],
        "_diffusers_version": architecture_config("sd15_unet")["_diffusers_version"],
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", architecture_config("sd15_scheduler")["_class_name"]],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (root / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def init_random(arch: str, out_dir: Path, layers: int | None = None, tiny: bool = False, seed: int = 0) -> Path:
    """Write the random-weight folder of ``arch`` to ``out_dir`` (which must not exist or be empty); returns it.

    Args:
        arch: ``sd15`` (Stable Diffusion 1.5), ``sd15-ip2p`` (its InstructPix2Pix form, 8-channel ``conv_in``) or
            ``llava-smartedit`` (``llava/`` LLaVA-1.1 7B and ``clip-vision/`` CLIP ViT-L/14, for SmartEdit).
        out_dir: the output folder.
        layers: keep the first N LLaMA layers (``llava-smartedit`` only); every width stays.
        tiny: the same layout at tiny widths (``architectures/tiny.json``), written in seconds.
        seed: the seed of the random weights.
    """
    parts = components(arch, layers, tiny)  # type: ignore[arg-type]
    out_dir = check_empty_folder(out_dir)
    _check_disk(out_dir, sum(component.num_bytes for component in parts))
    out_dir.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    for component in parts:
        folder = write_component(component, out_dir, generator)
        if component.subfolder == "text_encoder":
            write_clip_tokenizer(out_dir / "tokenizer")
        elif component.subfolder == LLAVA_SUBFOLDER:
            write_llama_tokenizer(folder)
        elif component.subfolder == CLIP_VISION_SUBFOLDER:
            write_clip_tokenizer(folder)  # the hub folder of CLIP keeps its tokenizer at the top
            (folder / "preprocessor_config.json").write_text(
                json.dumps(architecture_config("clip_image_processor"), indent=2)
            )
    if arch in PIPELINE_CLASSES:
        (out_dir / "scheduler").mkdir()
        (out_dir / "scheduler" / "scheduler_config.json").write_text(
            json.dumps(architecture_config("sd15_scheduler"), indent=2)
        )
        _write_model_index(arch, out_dir)
    return out_dir
