"""ddpmlab: denoising diffusion probabilistic models, every step shown."""
