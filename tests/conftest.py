"""Shared test settings: tiny configs that train in seconds on a CPU, a compilation cache."""

import contextlib
import fcntl
import io
import json
import os
import runpy
import shutil
import socket
import subprocess
import sys
import tempfile
import traceback
import warnings

# Tests compile far more than they run (tiny networks, a few steps): XLA:CPU without LLVM's
# optimisations compiles a training step in half the time. Set before JAX starts its backend;
# subprocesses inherit it. Results stay XLA's own: no test compares against a stored number.
# (XLA:CPU's older loop emitters, --xla_cpu_use_fusion_emitters=false, compile a third faster but
# round differently on one device than on eight: the multi-device tests then fail.)
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
# The tests run on the CPU: JAX then skips probing for accelerator plugins, 0.4 s of every
# subprocess the tests start (they inherit it).
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np
import orbax.checkpoint as ocp
import pytest
from absl import flags
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

from colorize import REPO
from colorize.runs import checkpoint
from configs import test as test_preset

# Grain reads its settings from absl flags, which main.py parses and pytest does not: defaults.
flags.FLAGS.mark_as_parsed()

# Tests compile the same tiny programs many times over: a persistent compilation cache for the
# session turns each repeat into a lookup. pytest's main process makes the folder, hands it to the
# xdist workers and to subprocesses (through the environment), and removes it at the end.
_CACHE_VARIABLE = "COLORIZE_TEST_JAX_CACHE"
_OWN_CACHE = _CACHE_VARIABLE not in os.environ  # False in a subprocess of a test: its parent's folder.


def _use_cache(folder: str) -> None:
  os.environ[_CACHE_VARIABLE] = folder
  # Subprocesses (`main.py` runs, multi-process tests) read JAX's settings from the environment.
  os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
  jax.config.update("jax_compilation_cache_dir", folder)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


if not _OWN_CACHE:
  _use_cache(os.environ[_CACHE_VARIABLE])


def pytest_configure(config):
  worker = getattr(config, "workerinput", None)
  if worker is not None:
    _use_cache(worker[_CACHE_VARIABLE])
  elif _OWN_CACHE:
    _use_cache(tempfile.mkdtemp(prefix="colorize-jax-cache-"))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
  """An xdist worker shares the main process's cache folder (and does not remove it)."""
  node.workerinput[_CACHE_VARIABLE] = os.environ[_CACHE_VARIABLE]


def pytest_unconfigure(config):
  """The session's compilation cache goes with it: nothing left in the temporary folder."""
  if _OWN_CACHE and getattr(config, "workerinput", None) is None:
    shutil.rmtree(os.environ.pop(_CACHE_VARIABLE, ""), ignore_errors=True)


def tiny_config(**overrides):
  """configs/test.py (16 px, width 4, batch 4) with `overrides` (dotted names for nested fields)."""
  config = test_preset.get_config()
  config.update_from_flattened_dict(overrides)
  return config


@pytest.fixture
def config():
  return tiny_config()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
  """One tiny GAN run (2 steps at 16 px) shared by the tests that only read a trained run.

  Trained once per session, by whichever xdist worker asks first (the others wait on a lock),
  and copied for each worker: tests of two workers never write into the same folder."""
  from colorize.training import train

  session = tmp_path_factory.getbasetemp()
  session = session.parent if os.environ.get("PYTEST_XDIST_WORKER") else session  # The workers' common folder.
  shared = session / "trained_run_shared"
  with open(session / "trained_run.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not (shared / "trained").exists():
      shutil.rmtree(shared, ignore_errors=True)  # A half-made run of a worker that failed.
      train.train_and_evaluate(tiny_config(num_train_steps=2), str(shared))
      (shared / "trained").touch()
  workdir = tmp_path_factory.mktemp("trained_run")
  shutil.copytree(shared, workdir, dirs_exist_ok=True, ignore=shutil.ignore_patterns("trained"))
  return str(workdir)


def params_of(workdir):
  """(newest step, the restored generator and discriminator items) of a run's checkpoints."""
  manager = ocp.CheckpointManager(checkpoint.checkpoint_dir(workdir), item_names=checkpoint.ITEMS)
  step = manager.latest_step()
  restored = manager.restore(
    step, args=ocp.args.Composite(generator=ocp.args.StandardRestore(), discriminator=ocp.args.StandardRestore())
  )
  return step, restored


def train_losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return {row["step"]: row["train/g_loss"] for row in rows if "train/g_loss" in row}


def assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


def subprocess_env(devices: int | None = None) -> dict:
  """The environment of a test's subprocess: the checkout importable, the tests' XLA flags and
  compilation cache, and `devices` CPU devices if given."""
  xla_flags = os.environ["XLA_FLAGS"]
  if devices is not None:
    xla_flags = f"{xla_flags} --xla_force_host_platform_device_count={devices}"
  return dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS=xla_flags)


def run_main(*args: str) -> subprocess.CompletedProcess:
  """`python main.py ARGS` from the checkout, run in this process: a subprocess would spend seconds
  importing JAX and the program for each of the many command-line tests. The program's flags,
  log settings and JAX's collectives setting are global: each run starts from the flags'
  defaults, and what it changed is put back (the flags left parsed, as Grain needs them)."""
  from absl import logging as absl_logging

  out, err, cwd, argv = io.StringIO(), io.StringIO(), os.getcwd(), sys.argv
  handler = absl_logging.get_absl_handler().python_handler
  saved = handler.stream, absl_logging.get_verbosity(), jax.config.jax_cpu_collectives_implementation
  flags.FLAGS.unparse_flags()
  for name in [name for name in flags.FLAGS if name.startswith("config.")]:
    delattr(flags.FLAGS, name)  # The last run's config overrides: the config file defines its own.
  sys.argv = ["main.py", *args]  # runpy replaces argv[0] alone.
  os.chdir(REPO)
  try:
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _python_warnings_to(err):
      handler.stream = err  # The program's log lines, where a process's stderr would have them.
      try:
        runpy.run_path(os.path.join(REPO, "main.py"), run_name="__main__")  # Its own __main__ and argv[0].
        code = 0
      except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
        if isinstance(exit_.code, str):
          print(exit_.code, file=sys.stderr)  # As Python does for sys.exit("message").
      except Exception:  # As an uncaught exception ends a process: its traceback, status 1.
        traceback.print_exc()
        code = 1
  finally:
    sys.argv = argv
    os.chdir(cwd)
    handler.stream = saved[0]
    absl_logging.set_verbosity(saved[1])
    jax.config.update("jax_cpu_collectives_implementation", saved[2])
    if not flags.FLAGS.is_parsed():  # A run that stopped while parsing (--help, a flag mistake).
      flags.FLAGS.mark_as_parsed()
  return subprocess.CompletedProcess(["main.py", *args], code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _python_warnings_to(stream):
  """Warnings shown as a fresh `python` process shows them (its default filters), on `stream`."""
  with warnings.catch_warnings():
    warnings.resetwarnings()
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
      warnings.simplefilter("ignore", category)
    warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: stream.write(
      warnings.formatwarning(message, category, filename, lineno, line)
    )
    yield


def free_port() -> int:
  """A TCP port the OS says is free, for a multi-process coordinator."""
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    return probe.getsockname()[1]


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
  if not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("COLORIZE_REQUIRE_BROWSER"):
    pytest.skip("needs chromium and chromium-driver (apt-get install chromium chromium-driver)")
  downloads = tmp_path_factory.mktemp("downloads")
  options = Options()
  options.binary_location = CHROMIUM
  for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=900,760"):
    options.add_argument(argument)
  driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
  driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
  driver.downloads = downloads
  yield driver
  driver.quit()
