"""Copy the diffusers reference keys that ddpmlab's tests use into tests/data.

The full reference (``diffusers_ref.npz``, computed with diffusers 0.42.1 and torch 2.13.0 on
CPU) lives outside the project; the tests load only this subset, so the checkout is
self-contained. Arrays are copied unchanged (exact float32 / int64); ``__meta_json__`` is kept
with its ``keys`` description narrowed to the copied keys.

Usage: python tests/data/make_subset.py [path/to/diffusers_ref.npz]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

SOURCE = Path("/work/shared/reference/diffusers_ref.npz")
TARGET = Path(__file__).with_name("diffusers_ref_subset.npz")

SCHEDULE_CASES = [
    f"T{T}_{name}" for T in (1000, 150) for name in ("linear", "squaredcos_cap_v2", "sigmoid")
] + ["T150_linear_rescaled"]
STEP_CASES = ["linear", "squaredcos_cap_v2", "sigmoid"]
PREDICTION_CASES = ["v_prediction", "sample"]  # DDPM steps of the x0 and v parameterisations
LEARNED_RANGE_CASES = ["linear", "squaredcos_cap_v2"]  # Improved DDPM variances (later issue)
LOOP_CASES = [f"ddpm{n}_{name}" for n in (1000, 100) for name in ("linear", "squaredcos_cap_v2")]
DDIM_LOOP_CASES = [f"ddim50_eta0_{name}" for name in ("linear", "squaredcos_cap_v2")]
DPM_LOOP_CASES = [f"dpmpp2m20_{name}" for name in ("linear", "squaredcos_cap_v2")]
DDIM_STEP_QUANTITIES = ("all_timesteps", "timesteps", "prev_timesteps", "x_t", "eps",
                        "prev_sample_eta0", "pred_x0", "variance_noise", "prev_sample_eta1")


def wanted_keys() -> list[str]:
    keys = [f"schedule__{c}__{q}" for c in SCHEDULE_CASES for q in ("betas", "alphas_cumprod")]
    keys += [f"add_noise__T1000_squaredcos_cap_v2__{q}" for q in ("x0", "noise", "timesteps",
                                                                  "x_t", "velocity")]
    keys += ["ddpm_step__timesteps", "ddpm_step__inputs__x_t", "ddpm_step__inputs__model_output"]
    keys += [
        f"ddpm_step__T1000_{c}_epsilon_clip0__{q}"
        for c in STEP_CASES
        for q in ("mean", "pred_x0", "var_fixed_small", "var_fixed_large")
    ]
    keys += [
        f"ddpm_step__T1000_linear_{c}_clip0__{q}"
        for c in PREDICTION_CASES
        for q in ("mean", "pred_x0", "var_fixed_small", "var_fixed_large")
    ]
    keys += ["ddpm_step__inputs__var_values"]
    keys += [
        f"ddpm_step__T1000_{c}_learned_range__{q}"
        for c in LEARNED_RANGE_CASES
        for q in ("log_variance", "mean", "prev_sample_with_noise", "noise_z")
    ]
    keys += [
        f"ddim_step__T1000_{c}_N50_leading__{q}" for c in STEP_CASES for q in DDIM_STEP_QUANTITIES
    ]
    keys += [f"toy__gaussian__{q}" for q in ("mu", "std", "x_T")]
    keys += [f"toy__{c}__{q}" for c in LOOP_CASES for q in ("noises", "final", "timesteps")]
    keys += [f"toy__{c}__{q}" for c in DDIM_LOOP_CASES for q in ("trajectory", "timesteps")]
    keys += [f"toy__{c}__{q}" for c in DPM_LOOP_CASES for q in ("final", "timesteps")]
    return keys


def main(source: Path = SOURCE) -> None:
    with np.load(source) as ref:
        keys = wanted_keys()
        arrays = {k: ref[k] for k in keys}
        meta = json.loads(str(ref["__meta_json__"]))
    meta["keys"] = {k: meta["keys"][k] for k in keys}
    meta["subset_note"] = (
        "subset of diffusers_ref.npz for ddpmlab's tests, made by tests/data/make_subset.py"
    )
    arrays["__meta_json__"] = np.array(json.dumps(meta))
    np.savez_compressed(TARGET, **arrays)
    print(f"wrote {TARGET} ({TARGET.stat().st_size / 1e6:.2f} MB, {len(keys)} arrays)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE)
