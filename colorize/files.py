"""New files written whole or not at all: a hidden temporary file beside the target, renamed when complete."""

import os
import secrets


def partial_beside(target: str, suffix: str = "") -> str:
  """Creates a new, empty, hidden file of a unique name in `target`'s folder (`.NAME.XXXXXXXX.partial`
  + `suffix`) with the permissions a new file gets (the umask's), and returns its path.

  Unique, so no file of the folder is touched; hidden, so a later run over the folder does not
  take a leftover for an input. Unlike `tempfile.mkstemp` (0600), the renamed result is as
  readable as any other output."""
  folder, name = os.path.split(target)
  while True:
    path = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.partial{suffix}")
    try:
      os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
      return path
    except FileExistsError:
      continue


def remove_if_there(path: str) -> None:
  if os.path.exists(path):
    os.remove(path)
