"""Trains, evaluates and applies the colorization GAN of Nazeri et al. (2018): `python main.py --help`.

The program itself is `colorize/cli.py`; `pip install -e .` also installs it as the `colorize` command.
"""

from colorize import cli

__doc__ = cli.__doc__  # noqa: A001 (absl's --help shows the main module's docstring)

if __name__ == "__main__":
  cli.run()
