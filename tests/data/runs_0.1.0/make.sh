#!/usr/bin/env bash
# Makes the runs in this folder with ddpmlab 0.1.0 at commit 2a762a1 (the layout before the
# runs/, cli/ and train/ packages), so that tests/test_old_runs.py checks that today's code
# opens, samples and resumes them as that code did:
#   git worktree add /tmp/ddpmlab-2a762a1 2a762a1
#   PYTHONPATH=/tmp/ddpmlab-2a762a1/src bash tests/data/runs_0.1.0/make.sh
set -euo pipefail
cd "$(dirname "$0")"
rm -rf points images expected && mkdir expected
printf "[data]\nn_train = 600\nheldout = 400\n[train]\nsnapshots = [40]\n" > /tmp/tiny.toml
python -c "import numpy as np; rng = np.random.default_rng(0); \
np.save('blocks.npy', (rng.random((48, 1, 8, 8)) > 0.5).astype(np.float32))"
python -m ddpmlab.cli train moons --out points --config /tmp/tiny.toml --steps 40 \
    --timesteps 20 --hidden 16 --batch-size 64 --quiet --no-eval --no-figures --checkpoint-every 20
python -m ddpmlab.cli train blocks.npy --out images --steps 4 --timesteps 10 --width 8 \
    --batch-size 8 --quiet --no-eval --no-figures --checkpoint-every 2
python - <<'PY'
import hashlib, json, shutil, subprocess, sys
import numpy as np
from safetensors import safe_open
from ddpmlab.run import open_run
points, images = open_run("points"), open_run("images")
np.savez("expected/samples.npz", points_ddpm=points.sample(64, 3),
         points_ddim5=points.sample(64, 3, "ddim", 5),
         points_dpm5=points.sample(64, 3, "dpm_solver", 5),
         images_ddpm=images.sample(4, 3), images_ddim3=images.sample(4, 3, "ddim", 3))
digests = {}
for name, steps in (("points", 60), ("images", 6)):
    copy = f"/tmp/resumed_{name}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(name, copy)
    subprocess.run([sys.executable, "-m", "ddpmlab.cli", "train", "--out", copy, "--resume",
                    "--steps", str(steps), "--quiet", "--no-eval", "--no-figures"], check=True)
    shutil.copy(f"{copy}/loss.csv", f"expected/{name}_resumed_loss.csv")
    h = hashlib.sha256()
    with safe_open(f"{copy}/checkpoint.safetensors", "pt") as f:
        for k in sorted(k for k in f.keys() if k.startswith("ema")):
            h.update(k.encode())
            h.update(f.get_tensor(k).numpy().tobytes())
    digests[name] = h.hexdigest()
json.dump(digests, open("expected/resumed_ema_sha256.json", "w"), indent=1)
PY
