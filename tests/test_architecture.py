"""The layout of agent/ as DESIGN §3 draws it, guarded so a future import or a growing module fails CI.

import-linter checks the contracts in .importlinter (layers, no folder cycles,
no Pillow or workloads in the core, sans-IO protocol cores); the tests below
check the same graph independently with the standard library's ast, and what
importing a part actually loads.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "agent"
MAX_TOP_LEVEL_MODULES = 6
MAX_MODULE_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(module: str, path: Path) -> set[str]:
    """Every agent.* module ``module`` imports, at any depth in the file (lazy imports included)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "agent" or name.startswith("agent.")}


def _folder(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _in_a_fresh_interpreter(check: str) -> None:
    """Run ``check`` of this module in a new Python: CPython 3.11's ast.parse can fail with "AST constructor
    recursion depth mismatch" once any test in the process caught a RecursionError (deeply nested JSON)."""
    result = subprocess.run([sys.executable, "-c", f"import tests.test_architecture as t; t.{check}()"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]


def test_import_linter_contracts_hold():
    _in_a_fresh_interpreter("check_import_linter_contracts")


def test_no_import_cycle_between_folders():
    _in_a_fresh_interpreter("check_no_import_cycle_between_folders")


def test_rfb_imports_neither_asyncio_nor_socket():
    _in_a_fresh_interpreter("check_rfb_imports_neither_asyncio_nor_socket")


def check_import_linter_contracts() -> None:
    from importlinter.cli import lint_imports

    assert lint_imports(config_filename=str(ROOT / ".importlinter"), no_cache=True) == 0


def check_no_import_cycle_between_folders() -> None:
    modules = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in modules.items():
        source = _folder(module)
        for target in _imports(module, path):
            dest = _folder(target)
            if source and dest and dest != source and f"agent.{dest}" in modules:
                graph[source].add(dest)
    # depth-first search for a back edge; report the cycle it closes
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle between folders: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def check_rfb_imports_neither_asyncio_nor_socket() -> None:
    for module, path in _modules().items():
        if module.startswith("agent.rfb"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                     for alias in node.names}
            names |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                      if isinstance(node, ast.ImportFrom) and not node.level}
            assert not names & {"asyncio", "socket", "selectors"}, (module, names)


def test_importing_the_core_loads_neither_pillow_nor_workloads():
    script = ("import sys, agent.encode, agent.rfb, agent.rfb.client, agent.rfb.server, agent.secure, "
              "agent.relay, agent.capture, agent.changes, agent.service; "
              "bad = sorted(m for m in sys.modules if m == 'PIL' or m.startswith(('PIL.', 'agent.workloads'))); "
              "print(','.join(bad))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_rfb_alone_loads_no_asyncio():
    script = "import sys, agent.rfb.server, agent.rfb.client; print('asyncio' in sys.modules, 'socket' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_few_modules_at_the_top_and_none_too_long():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
    long = {str(path.relative_to(ROOT)): n for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_tests_mirror_the_package():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} - {"_native"}
    missing = sorted(f for f in folders if not (ROOT / "tests" / f).is_dir())
    assert not missing, f"no tests/<folder> for: {missing}"
