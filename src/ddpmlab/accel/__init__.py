"""The measured fast paths of training and sampling (bench/README.md, "Performance"): hand-derived
gradients and sampling passes of the point MLPs (:mod:`ddpmlab.accel.mlp`), and Adam on flat
parameter buffers (:mod:`ddpmlab.accel.adam`). Each is checked against its plain-torch
counterpart in tests/test_fast.py."""
