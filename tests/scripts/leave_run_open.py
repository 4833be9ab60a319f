"""Start a run, log to it and never call end(): exit normally, raise, or be interrupted.

Usage: leave_run_open.py TRACKING_URI {exit|raise|interrupt}
Prints the run's id on the first line of stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ensign import tracking

tracking_uri, mode = sys.argv[1], sys.argv[2]
run = tracking.init(project="exits", tracking_uri=tracking_uri)
print(run.uuid, flush=True)
tracking.log_params(lr=0.1, mode=mode)
for step in range(200):
    tracking.log_metric("loss", 1.0 / (step + 1))
tracking.log_outputs(result="left open")
model = Path(tracking_uri).parent / f"model-{mode}.bin"
model.write_bytes(mode.encode() * 100_000)
tracking.log_model_ref(model)  # still uploading when the script ends
if mode == "raise":
    raise RuntimeError("boom from the script")
if mode == "interrupt":
    raise KeyboardInterrupt
