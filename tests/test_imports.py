"""The package's import graph: no module imports one that imports it back, at any depth, and each
subpackage imports only from the floors below it (docs/development.md draws them)."""

import ast
import os

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "colorize")

# Each subpackage and the floor it stands on: a module may import from its own subpackage, from
# the package's root modules (floor 0) and from lower floors, never from a higher or equal one.
# The package's root modules are the foundations (floor 0), but for the program itself, `cli`, the top.
TOP = "cli"
FLOORS = {"": 0, "runs": 1, "data": 2, "networks": 2, "training": 3, "colouring": 3, "measuring": 4, "exporting": 4}


def module_names() -> dict:
  """{dotted module name below colorize: its file}, e.g. {'training.steps': '.../training/steps.py'}."""
  found = {}
  for folder, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith(".py") and name != "__init__.py":
        relative = os.path.relpath(os.path.join(folder, name[:-3]), PACKAGE)
        found[relative.replace(os.sep, ".")] = os.path.join(folder, name)
  return found


def imported_modules(path: str) -> set:
  """The colorize modules (dotted, below colorize) that a file imports anywhere: at the top or in a function."""
  found = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "colorize":
      prefix = node.module[len("colorize.") :] if node.module != "colorize" else ""
      found |= {f"{prefix}.{alias.name}".strip(".") for alias in node.names} | ({prefix} if prefix else set())
    elif isinstance(node, ast.Import):
      found |= {alias.name[len("colorize.") :] for alias in node.names if alias.name.startswith("colorize.")}
  return found


def import_graph() -> dict:
  modules = module_names()
  return {m: imported_modules(path) & set(modules) - {m} for m, path in sorted(modules.items())}


def subpackage(module: str) -> str:
  return module.rpartition(".")[0]


def floor(module: str) -> int:
  return max(FLOORS.values()) + 1 if module == TOP else FLOORS[subpackage(module)]


def find_cycle(graph: dict) -> list | None:
  """One cycle of `graph` as a list of modules, or None (depth-first search, colouring nodes)."""
  state, trail = {}, []

  def visit(node):
    state[node] = "open"
    trail.append(node)
    for other in sorted(graph[node]):
      if state.get(other) == "open":
        return trail[trail.index(other) :] + [other]
      if other not in state and (cycle := visit(other)):
        return cycle
    state[node] = "done"
    trail.pop()
    return None

  for node in graph:
    if node not in state and (cycle := visit(node)):
      return cycle
  return None


def upward_imports(graph: dict) -> list:
  """(importer, imported) pairs that reach into another subpackage on the same or a higher floor."""
  return sorted(
    (module, other)
    for module, others in graph.items()
    for other in others
    if subpackage(other) != subpackage(module) and floor(other) >= floor(module)
  )


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import():
  assert find_cycle({"bundle": {"inference"}, "inference": {"bundle"}}) == ["bundle", "inference", "bundle"]
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_module_of_the_package_imports_itself_back():
  graph = import_graph()
  assert graph["networks.inference"] >= {"runs.bundle", "runs.checkpoint"}  # The graph sees the package's imports.
  assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_every_subpackage_has_a_floor_and_imports_only_from_below():
  graph = import_graph()
  assert {subpackage(m) for m in graph} == set(FLOORS)
  assert upward_imports({"training.train": {"measuring.evaluate"}, "measuring.evaluate": set()}) == [
    ("training.train", "measuring.evaluate")
  ]
  assert upward_imports(graph) == []


def test_no_module_is_over_450_lines():
  lengths = {m: sum(1 for _ in open(path)) for m, path in module_names().items()}
  assert {m: n for m, n in lengths.items() if n > 450} == {}


def test_docs_development_draws_every_module_of_the_house():
  with open(os.path.join(os.path.dirname(PACKAGE), "docs", "development.md")) as f:
    text = f.read()
  missing = [m for m, path in module_names().items() if os.path.basename(path) not in text]
  assert missing == [], "docs/development.md's table of floors lacks these modules"
