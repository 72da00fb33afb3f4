"""Reverse-process samplers, one algorithm per file."""

from ddpmlab.samplers.ddpm import ddpm_chain, ddpm_sample

__all__ = ["ddpm_chain", "ddpm_sample"]
