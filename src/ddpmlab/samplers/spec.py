"""A sampling request, checked once before any work: :class:`SamplerSpec`."""

from __future__ import annotations

from dataclasses import dataclass

RTOL = ATOL = 1e-5  # the ODE's tolerances: Song et al. 2021's for the likelihood


@dataclass(frozen=True)
class SamplerSpec:
    """Which sampler, and how: the one object every sampling path takes.

    name: a sampler of :data:`ddpmlab.samplers.registry.SAMPLERS` (ddpm, ddim, dpm_solver,
        ode).
    steps: K in 1..T visited timesteps (None: all T); not for the adaptive ode.
    spacing: which K timesteps (``ddpmlab.samplers.spacing``; None: the run's default for the
        sampler and its prediction).
    eta: DDIM's eta (0 deterministic, 1 ancestral).
    rtol, atol: the ODE solver's tolerances (ode only).

    :func:`ddpmlab.samplers.registry.check` refuses a bad request with one line and returns
    the number of network evaluations per sample's step count K.
    """

    name: str = "ddpm"
    steps: int | None = None
    spacing: str | None = None
    eta: float = 0.0
    rtol: float = RTOL
    atol: float = ATOL

    @classmethod
    def of(cls, sampler: str | SamplerSpec) -> SamplerSpec:
        """A spec from a sampler name (its defaults) or a spec itself."""
        return sampler if isinstance(sampler, SamplerSpec) else cls(sampler)
