"""One of several processes that promote at the same moment.

Usage: promote_worker.py TRACKING_URI ARTIFACTS_URI|- SYNC_DIR INDEX
Logs a file of its own, writes SYNC_DIR/ready-INDEX, waits for SYNC_DIR/go, promotes an
artifact version without a name and prints the name it got.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ensign import tracking

tracking_uri, artifacts_uri, sync_dir, index = sys.argv[1:5]
sync = Path(sync_dir)
data = sync / f"data-{index}.bin"
data.write_bytes(f"bytes of worker {index}\n".encode() * 1000)
run = tracking.init(
    project="race",
    name=f"worker-{index}",
    tracking_uri=tracking_uri,
    artifacts_uri=None if artifacts_uri == "-" else artifacts_uri,
)
tracking.log_metric("acc", 0.5 + int(index) / 100)
tracking.log_artifact_ref(data, name="data")
run.flush()  # uploaded and recorded: what follows is the promotion alone
(sync / f"ready-{index}").touch()
while not (sync / "go").exists():
    time.sleep(0.001)
version = tracking.promote_to_artifact_version(when="acc >= 0.5")
tracking.end()
assert version is not None
print(version.name, flush=True)
