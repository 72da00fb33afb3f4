"""Shapes from a word and a silhouette, and the score figure, with the real command.

    python bench/shapes.py        # three `ddpmlab train` runs, about 1.5 minutes on 2 cores

1. `ddpmlab train text:DDPM` and `ddpmlab train star.png` (a silhouette drawn here: a
   five-pointed star beside a disc) with default settings, each in a fresh process timed
   from start to exit (training, evaluation, every figure and the GIF), quality beside its
   floor as bench/quality.py reports it; their samples.png copied to docs/figures/.
2. `ddpmlab train gaussians8`: its score.png (learned beside exact) copied to docs/figures/,
   the mean cosine error at each noise level, and the seconds the score figure takes (its
   fields and its drawing) beside the run's wall time.

Timings on a shared machine are under load unless it was quiet. Writes
bench/results/shapes.json.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw
from quality import train  # bench/quality.py: the real command, timed

import ddpmlab
from ddpmlab import viz
from ddpmlab.reports import report_for

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"


def star_png(path: Path, size: int = 200) -> Path:
    """A black five-pointed star and a grey disc on white: two shapes, two darknesses."""
    im = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(im)
    cx, cy, outer, inner = size * 0.4, size * 0.45, size * 0.38, size * 0.15
    points = [(cx + (outer if k % 2 == 0 else inner) * math.sin(k * math.pi / 5),
               cy - (outer if k % 2 == 0 else inner) * math.cos(k * math.pi / 5))
              for k in range(10)]
    draw.polygon(points, fill=0)
    draw.ellipse([size * 0.72, size * 0.7, size * 0.92, size * 0.9], fill=128)
    im.save(path)
    return path


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()
    out: dict = {}
    FIGURES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        star = star_png(tmp_path / "star.png")
        shutil.copy(star, FIGURES / "silhouette.png")
        for label, data, figure in (("text:DDPM", "text:DDPM", "text_ddpm_samples.png"),
                                    ("star.png", str(star), "silhouette_samples.png"),
                                    ("gaussians8", "gaussians8", None)):
            run_dir = tmp_path / f"run-{label.replace(':', '-')}"
            row = train(data, run_dir, [])
            out[label] = row
            print(f"{label:12s}: {row['seconds']:5.1f} s  1-NNA {row['1nna']:.3f} (floor "
                  f"{row['1nna_floor']:.3f})  W1 {row['w1_ratio']:.2f} x floor", flush=True)
            if figure:
                shutil.copy(run_dir / "figures" / "samples.png", FIGURES / figure)
        run = ddpmlab.open_run(tmp_path / "run-gaussians8")
        start = time.perf_counter()
        levels, errors = report_for(run).score_field(seed=0)  # the figures' seed: same numbers
        fields = time.perf_counter() - start
        viz.plot_score_field(levels, tmp_path / "score.png",
                             viz.frame_limits([lv.grid for lv in levels]),
                             rows=list(levels[0].fields))
        drawing = time.perf_counter() - start - fields
        shutil.copy(tmp_path / "run-gaussians8" / "figures" / "score.png",
                    FIGURES / "score_gaussians8.png")
        out["score"] = {"cos_error": errors, "seconds_fields": fields,
                        "seconds_drawing": drawing,
                        "run_seconds": out["gaussians8"]["seconds"]}
        print("gaussians8 score field, mean cosine error (1 - cos over the noised held-out "
              "data): " + ", ".join(f"t = {t}: {e:.4f}" for t, e in errors.items()))
        print(f"score figure: fields {fields:.2f} s + drawing {drawing:.2f} s of the run's "
              f"{out['gaussians8']['seconds']:.1f} s")
    path = ROOT / "bench" / "results" / "shapes.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
