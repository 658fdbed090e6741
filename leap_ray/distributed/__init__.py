"""The distributed layer: the only code that starts Ray or makes actors. `launch.py` connects
to (or starts) Ray, checks resources and makes each role remote; the roles are plain classes,
one file each (`worker.py`, `server.py` with its `ledger.py`, `telemetry.py`); `pool.py` keeps
task workers busy; `signals.py` is the stop contract of every long command. `train`,
`evaluate` and `finetune` all go through it; a new Ray role is a file here and a factory in
`launch.py`."""
