"""Standard image-editing metrics beside the judge: the MagicBrush and Emu Edit protocols (``mredit eval``).

``metrics`` holds the formulas and the image preprocessing, ``encoders`` the CLIP and DINO models (transformers),
``evaluate`` the batched run over a benchmark (``results.json`` + ``report.md``), ``benchmarks`` the MagicBrush and
Emu Edit converters into the benchmark file, ``compare`` the table and chart across result folders.
See docs/eval.md.
"""

DEFAULT_CLIP = "openai/clip-vit-base-patch32"  # CLIP ViT-B/32, the MagicBrush script's clip.load("ViT-B/32")
DEFAULT_DINO = "facebook/dino-vits16"  # DINO ViT-S/16, the MagicBrush script's torch.hub dino_vits16
