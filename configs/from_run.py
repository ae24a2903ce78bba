"""The config an existing run last trained with, as the base for overrides:

    python main.py --config=configs/from_run.py:runs/mine --config.num_train_steps=8000

main.py uses it by itself when --workdir names a run and --config is left out, so
`python main.py --workdir=runs/mine --config.num_train_steps=8000` does the same.
"""

from colorize.runs import run_setup


def get_config(workdir: str):
  saved = run_setup.latest_config(workdir) if workdir else None
  if saved is None:
    raise run_setup.UsageError(
      f"configs/from_run.py:{workdir} names no run (no config.json): pass the folder of a run after the colon."
    )
  return run_setup.config_from_dict(saved)
