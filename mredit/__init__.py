"""mredit: instruction-based image editing with multi-reward conditioning (arXiv 2411.04713), on Lightning."""

__version__ = "0.1.0"
