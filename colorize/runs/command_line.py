"""main.py's command line as a user meets it: every mistake one line and one hint, exit status 2."""

import difflib
import os
import re
import sys

from absl import app
from absl import flags

import colorize

FLAGS = flags.FLAGS



def program() -> str:
  """How the user started the program: `main.py` (python main.py) or `colorize` (the installed command)."""
  return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "main.py"


def hint() -> str:
  started = "python main.py" if program() == "main.py" else program()
  return f"Run `{started} --help` for the modes, their flags and an example of each."


def exit_with_usage_error(message: str):
  """A command-line mistake: one line saying what and how to fix it, one hint line, exit 2."""
  print(f"{program()}: error: {message}\n{hint()}", file=sys.stderr, flush=True)
  sys.exit(2)


def exit_with_error(message: str):
  """A problem outside the command line (the dataset): one line saying what and how to fix it, exit 1."""
  print(f"{program()}: error: {message}", file=sys.stderr, flush=True)
  sys.exit(1)


def config_path(argv: list) -> str | None:
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg.split("=", 1)[1]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def missing_config_file_message(path: str) -> str | None:
  """None when `path` is a file, else the error with the closest config file's name."""
  if os.path.isfile(path):
    return None
  folder = os.path.dirname(path) or "."
  candidates = sorted(n for n in os.listdir(folder) if n.endswith(".py")) if os.path.isdir(folder) else []
  close = difflib.get_close_matches(os.path.basename(path), candidates, n=1)
  hint = f"did you mean {os.path.join(os.path.dirname(path), close[0])}?" if close else "pass a file of configs/."
  return f"--config={path} does not exist: {hint}"


def unknown_field_message(error: BaseException, argv: list) -> str | None:
  """ml_collections' chained error for --config.FIELD=VALUE with an unknown FIELD, in one line."""
  match = re.search(r'Did you mean "([^"]+)" instead of "([^"]+)"', str(error))
  while error.__cause__ or error.__context__:  # The innermost KeyError holds the bare name.
    error = error.__cause__ or error.__context__
  name = match.group(2) if match else (error.args[0] if isinstance(error, KeyError) and error.args else None)
  if not isinstance(name, str):
    return None
  written = [a[len("--config.") :].split("=")[0] for a in argv if a.startswith("--config.")]
  path = next((w for w in written if w.split(".")[-1] == name), name)
  prefix = path[: -len(name)]
  hint = f"did you mean {prefix}{match.group(1)}?" if match else nested_field_hint(path)
  return f"--config.{path}: the config has no field {path}; {hint}"


def nested_field_hint(path: str) -> str:
  """The field of `path`'s section in configs/default.py closest to its last name (`lr` reads as
  learning rate), or the section's fields."""
  from colorize.runs import run_record
  from configs import default

  section, _, leaf = path.rpartition(".")
  fields = list(run_record.flat(default.get_config()))
  siblings = [f[len(section) + 1 :] for f in fields if f.startswith(section + ".")] if section else fields
  close = difflib.get_close_matches(leaf, siblings, n=1, cutoff=0.6)
  close = close or [name for name in siblings if leaf == "lr" and "learning_rate" in name]
  if close:
    return f"did you mean {' or '.join(f'{section}.{name}' if section else name for name in close)}?"
  if section and siblings:
    return f"{section} has {', '.join(siblings)} (configs/default.py)."
  return "configs/default.py lists every field."


HELP_FLAGS = ("--help", "-h", "-?", "--helpshort", "--helpfull")


def enum_value_message(error: BaseException) -> str | None:
  """absl's message for a value outside an enum flag's choices, with the closest choice."""
  match = re.search(r"flag --(\w+)=([^:]*): value should be one of <([^>]*)>", str(error))
  if not match:
    return None
  name, value, choices = match.group(1), match.group(2), match.group(3).split("|")
  close = difflib.get_close_matches(value, choices, n=1)
  hint = f"did you mean --{name}={close[0]}?" if close else f"use one of {', '.join(choices)}."
  return f"--{name}={value} is not one of {', '.join(choices)}: {hint}"


RUN_CONFIG = os.path.join(colorize.REPO, "configs", "from_run.py")


def flag_value(argv: list, name: str) -> str | None:
  """The value of --name=VALUE or --name VALUE in `argv`, the last one given."""
  value = None
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{name}="):
      value = arg.split("=", 1)[1]
    elif arg == f"--{name}" and i + 1 < len(argv):
      value = argv[i + 1]
  return value


def with_run_config(argv: list) -> list:
  """--config.FIELD overrides without --config apply to the run that --workdir names: its config
  (configs/from_run.py) is the base. absl knows --config.FIELD only once --config is given."""
  if config_path(argv) or not any(arg.startswith("--config.") for arg in argv):
    return argv
  workdir = flag_value(argv, "workdir")
  if not workdir:
    exit_with_usage_error("--config.FIELD overrides need --config=configs/<name>.py, or --workdir=RUN of a run.")
  if not os.path.isfile(os.path.join(workdir, "config.json")):
    exit_with_usage_error(
      f"--workdir={workdir} holds no run (no config.json) for the --config.FIELD overrides: "
      "pass --config=configs/<name>.py to start one."
    )
  return [argv[0], f"--config={RUN_CONFIG}:{workdir}", *argv[1:]]


def parse_command_line(argv: list) -> list:
  """absl's flag parsing, each mistake told in one line (exit 2) instead of a traceback."""
  if help_flag := next((a for a in argv[1:] if a in HELP_FLAGS), None):
    app.usage(shorthelp=help_flag != "--helpfull", writeto_stdout=True, exitcode=0)  # absl's own exits 1.
  argv = with_run_config(argv)
  path = config_path(argv)
  if path and (message := missing_config_file_message(path.split(":", 1)[0])):  # "file.py:argument"
    exit_with_usage_error(message)
  try:
    return FLAGS(argv)
  except flags.Error as error:
    exit_with_usage_error(enum_value_message(error) or str(error))
  except (AttributeError, KeyError) as error:  # A --config.FIELD override of a field that does not exist.
    exit_with_usage_error(unknown_field_message(error, argv) or str(error))
