"""Choosing the image defaults by measurement: candidate settings trained on one data set.

    python bench/image_defaults.py digits A B C      # candidates by name (see CANDIDATES)
    python bench/image_defaults.py digits --list

Each candidate is ``ddpmlab.train_run`` with the data set's defaults and the candidate's settings
over them, figures off, evaluation on (1,000 samples against the held-out sets, beside the
floors). Reports training seconds, evaluation seconds and the image metrics; appends to
bench/results/image_defaults.json. Training seconds are only comparable on a quiet machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import ddpmlab
from ddpmlab.config import merge
from ddpmlab.runs.evaluation import read_evaluation

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "image_defaults.json"


def unet(base: int, mult: tuple[int, ...], blocks: int = 1, attention: tuple[int, ...] = (),
         middle: bool = False, dropout: float = 0.0) -> dict:
    return {"name": "unet", "unet": {"base_channels": base, "channel_mult": list(mult),
                                     "num_res_blocks": blocks,
                                     "attention_resolutions": list(attention),
                                     "middle_attention": middle, "dropout": dropout}}


CANDIDATES: dict[str, dict] = {
    "u32": {"model": unet(32, (1, 2))},
    "u32_b64": {"model": unet(32, (1, 2)), "train": {"batch_size": 64}},
    "u24": {"model": unet(24, (1, 2))},
    "u16": {"model": unet(16, (1, 2))},
    "u32_mid": {"model": unet(32, (1, 2), middle=True)},
    "u32_T100": {"model": unet(32, (1, 2)), "diffusion": {"timesteps": 100}},
    "u32_lr1e-3": {"model": unet(32, (1, 2)), "train": {"lr": 1e-3}},
    "u32_lr4e-3": {"model": unet(32, (1, 2)), "train": {"lr": 4e-3}},
    "u32_ema999": {"model": unet(32, (1, 2)), "train": {"ema_decay": 0.999}},
    "u32_v": {"model": unet(32, (1, 2)), "diffusion": {"prediction": "v"}},
    "seed32": {"model": {"name": "seed_unet", "seed_unet": {"poolings": 2, "base_width": 32}}},
    "seed32_lr5e-4": {"model": {"name": "seed_unet", "seed_unet": {"poolings": 2,
                                                                   "base_width": 32}},
                      "train": {"lr": 5e-4}},
    "u24_lr1e-3": {"model": unet(24, (1, 2)), "train": {"lr": 1e-3}},
    "seed32_1": {"model": {"name": "seed_unet", "seed_unet": {"poolings": 1, "base_width": 32}}},
    # the precision and the loss weight (bench/precision.py times their steps)
    "fp32": {"train": {"precision": "fp32"}},
    "bf16": {"train": {"precision": "bf16"}},
    "bf16_minsnr5": {"train": {"precision": "bf16"}, "diffusion": {"min_snr_gamma": 5.0}},
    "fp32_minsnr5": {"train": {"precision": "fp32"}, "diffusion": {"min_snr_gamma": 5.0}},
    # free at a training step: attention in the 7 x 7 middle block and a longer weight
    # average, then the loss weight on top of them
    "mid_ema999": {"model": {"unet": {"middle_attention": True}}, "train": {"ema_decay": 0.999}},
    "mid_ema999_minsnr5": {"model": {"unet": {"middle_attention": True}},
                           "train": {"ema_decay": 0.999}, "diffusion": {"min_snr_gamma": 5.0}},
    # twice the updates on the same images (a step of 32 costs 1.05x the per-image time of 64)
    "mid_ema999_minsnr5_b32": {"model": {"unet": {"middle_attention": True}},
                               "train": {"ema_decay": 0.999, "batch_size": 32, "steps": 8000},
                               "diffusion": {"min_snr_gamma": 5.0}},
    # a class embedding (labels dropped 10 % of the time, Ho & Salimans 2022): the samples
    # drawn in the data's class proportions, without guidance
    "cond": {"model": {"conditional": True}},
    "cond_minsnr5": {"model": {"conditional": True}, "diffusion": {"min_snr_gamma": 5.0}},
    "cond_mid_ema999_minsnr5": {"model": {"conditional": True,
                                          "unet": {"middle_attention": True}},
                                "train": {"ema_decay": 0.999},
                                "diffusion": {"min_snr_gamma": 5.0}},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data")
    p.add_argument("names", nargs="*")
    p.add_argument("--steps", type=int, nargs="*", default=[None],
                   help="training steps (default: the data set's)")
    p.add_argument("--seeds", type=int, nargs="*", default=[0])
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: the data set's)")
    p.add_argument("--keep", type=Path, default=None,
                   help="keep each run in this folder (NAME_STEPS_SEED), to sample it again; "
                   "a run already there is evaluated again, not trained again")
    p.add_argument("--list", action="store_true")
    args = p.parse_args()
    if args.list:
        print("\n".join(f"{k}: {v}" for k, v in CANDIDATES.items()))
        return
    for name, steps, seed in itertools.product(args.names, args.steps, args.seeds):
        train = {"seed": seed} | ({"steps": steps} if steps else {}) | (
            {"threads": args.threads} if args.threads else {})
        over = merge(CANDIDATES[name], {"train": train})
        config = ddpmlab.default_config(args.data, over)
        with tempfile.TemporaryDirectory() as tmp:
            out = (args.keep / f"{name}_{config.train.steps}_{seed}" if args.keep
                   else Path(tmp) / "run")
            # a run kept before is evaluated again (finished first if it was cut short); its
            # training seconds are then unknown
            again = args.keep is not None and (out / "checkpoint.safetensors").is_file()
            start = time.perf_counter()
            run = ddpmlab.train_run(config, out, resume=again, progress=False, figures=False,
                                    evaluate=False)
            trained = None if again else time.perf_counter() - start
            start = time.perf_counter()
            ddpmlab.evaluate_run(run)
            evaluated = time.perf_counter() - start
            m = read_evaluation(out).metrics
        params = sum(p.numel() for p in run.model.parameters())
        row = {"data": args.data, "name": name, "steps": config.train.steps, "seed": seed,
               "threads": config.train.threads,
               "params": params, "train_s": trained, "eval_s": evaluated,
               **{k: v["value"] for k, v in m.items()},
               **{f"{k}_floor": v["floor"] for k, v in m.items()}}
        # read again just before writing: two runs of this bench may share the file
        rows = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
        rows.append(row)
        RESULTS.write_text(json.dumps(rows, indent=1))
        fd = m.get("fd", {})
        print(f"{name:<12} steps {config.train.steps:>5} {params / 1e6:.2f}M train "
              f"{'-' if trained is None else f'{trained:.1f}'} s eval {evaluated:5.1f} s | fd "
              f"{fd.get('value', 0):6.2f}"
              f" / {fd.get('floor', 0):.2f} = {fd.get('ratio') or 0:.2f} | confident "
              f"{m['confident']['value']:.3f} ({m['confident']['floor']:.3f}) | tv "
              f"{m['class_tv']['value']:.3f} all {m['class_tv_all']['value']:.3f} "
              f"({m['class_tv_all']['floor']:.3f}) | 1nna {m['1nna']['value']:.3f} | memorised "
              f"{m['memorised']['value']:.3f}", flush=True)


if __name__ == "__main__":
    main()
