"""The package's import graph: no module imports one that imports it back, at any depth."""

import ast
import os

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "colorize")


def imported_modules(path: str) -> set:
  """The colorize modules that a file imports anywhere: at the top or inside a function."""
  found = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.ImportFrom) and node.module == "colorize":
      found |= {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("colorize."):
      found.add(node.module.split(".")[1])
    elif isinstance(node, ast.Import):
      found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("colorize.")}
  return found


def import_graph() -> dict:
  modules = {name[:-3] for name in os.listdir(PACKAGE) if name.endswith(".py") and name != "__init__.py"}
  return {m: imported_modules(os.path.join(PACKAGE, f"{m}.py")) & modules - {m} for m in sorted(modules)}


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


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import():
  assert find_cycle({"bundle": {"inference"}, "inference": {"bundle"}}) == ["bundle", "inference", "bundle"]
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_module_of_the_package_imports_itself_back():
  graph = import_graph()
  assert graph["inference"] >= {"bundle", "checkpoint"}  # The graph sees the package's imports.
  assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
