"""The import rule: each layer imports only its own and lower layers, with no cycles, and importing is cheap.

    modeling_lpllm <- dataset_scripts <- lpllm <- lpllm.evaluation <- lpllm.training <- lpllm.baselines <- lpllm.cli

`lpllm` is the package's `__init__` (and any submodule no other layer names): every `lpllm.*` import runs it first, so
it sits below them. `modeling_lpllm` is saved beside checkpoints as remote code and loaded where only transformers
is installed, so it imports nothing else of ours or of the project's dependencies.
"""

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]
LAYERS = (
    "modeling_lpllm",
    "dataset_scripts",
    "lpllm",
    "lpllm.evaluation",
    "lpllm.training",
    "lpllm.baselines",
    "lpllm.cli",
)
REMOTE_CODE = "modeling_lpllm"
# What `pip install transformers torch` brings (numpy, tokenizers, huggingface_hub, safetensors are transformers'
# own requirements); PIL is what transformers' image processors need. Remote code can count on nothing else.
REMOTE_CODE_IMPORTS = frozenset(
    {"torch", "transformers", "numpy", "tokenizers", "huggingface_hub", "safetensors", "PIL"}
)
# The training and evaluation stacks: none of them may load when the package or its command line is imported
# (accelerate is not listed: transformers itself imports it where it is installed).
HEAVY_MODULES = ("trl", "peft", "datasets", "evaluate", "matplotlib", "albumentations", "cv2")


@dataclass(frozen=True)
class Import:
    file: Path
    line: int
    importer: str
    target: str

    def where(self, root: Path) -> str:
        return f"{self.file.relative_to(root)}:{self.line}"


def layer_of(module: str, layers) -> int | None:
    """Index in `layers` of the longest layer that is `module` or a package above it; None outside every layer."""
    matches = [index for index, layer in enumerate(layers) if module == layer or module.startswith(layer + ".")]
    return max(matches, key=lambda index: len(layers[index])) if matches else None


def module_files(root: Path, layers) -> dict[str, Path]:
    """Every module of the layers' top-level packages under `root`: dotted name -> file."""
    modules = {}
    for package in sorted({layer.split(".")[0] for layer in layers}):
        for file in sorted((root / package).rglob("*.py")):
            parts = list(file.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = file
    return modules


def imports_of(module: str, file: Path, modules) -> list[Import]:
    """Every import in `file`, at any depth (functions and `if` blocks included), relative ones resolved.

    `from X import name` counts as importing `X.name` when that is a module, else `X`."""
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), filename=str(file))):
        if isinstance(node, ast.Import):
            found += [Import(file, node.lineno, module, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                found.append(Import(file, node.lineno, module, candidate if candidate in modules else source))
    return found


def find_cycles(graph: dict[str, dict[str, Import]]) -> list[list[Import]]:
    """One cycle (as the imports that form it) per back edge of a depth-first walk of `graph`."""
    cycles, state = [], {}

    def visit(module, path):
        state[module] = "open"
        for target, edge in sorted(graph.get(module, {}).items()):
            if state.get(target) == "open":
                start = next(index for index, step in enumerate(path) if step.importer == target) if path else 0
                cycles.append(path[start:] + [edge])
            elif target not in state:
                visit(target, path + [edge])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    return cycles


def check_layers(root: Path, layers=LAYERS, remote_code=REMOTE_CODE, remote_code_imports=REMOTE_CODE_IMPORTS):
    """Problems with the import rule in the packages under `root`, one line each, naming file, line and import:
    upward imports, imports in `remote_code` of anything but itself, the standard library and `remote_code_imports`,
    and import cycles between modules."""
    root = Path(root)
    modules = module_files(root, layers)
    problems, graph = [], {}
    for module, file in modules.items():
        own = layer_of(module, layers)
        for edge in imports_of(module, file, modules):
            target = layer_of(edge.target, layers)
            if target is not None and target > own:
                problems.append(
                    f"{edge.where(root)}: {module} (layer {layers[own]}) imports {edge.target}, "
                    f"of the higher layer {layers[target]}"
                )
            top = edge.target.split(".")[0]
            if (
                remote_code is not None
                and own == layers.index(remote_code)
                and target is None
                and top not in sys.stdlib_module_names
                and top not in remote_code_imports
            ):
                problems.append(f"{edge.where(root)}: {module} is remote code and imports {edge.target}")
            if edge.target in modules and edge.target != module:
                graph.setdefault(module, {}).setdefault(edge.target, edge)
    for cycle in find_cycles(graph):
        chain = " -> ".join([cycle[0].importer] + [edge.target for edge in cycle])
        places = ", ".join(edge.where(root) for edge in cycle)
        problems.append(f"import cycle {chain} ({places})")
    return problems


def test_the_tree_follows_the_import_rule():
    problems = check_layers(REPO)
    assert not problems, "\n".join(["the import rule is broken:", *problems])


def test_the_checker_reports_upward_imports_cycles_and_remote_code_imports(tmp_path):
    files = {
        "base/__init__.py": "from .model import Model\n",
        "base/model.py": "import os\nimport numpy\nimport requests\n\n\ndef build():\n    from top.cli import main\n",
        "top/__init__.py": "",
        "top/cli/__init__.py": "from ..tools import helper\nfrom base import model\n",
        "top/tools/__init__.py": "from .a import x\n",
        "top/tools/a.py": "x = 1\n\n\ndef late():\n    from top.tools.b import y\n",
        "top/tools/b.py": "from . import a\ny = 2\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    problems = check_layers(
        tmp_path, layers=("base", "top", "top.tools", "top.cli"), remote_code="base", remote_code_imports={"numpy"}
    )
    assert problems == [
        "base/model.py:3: base.model is remote code and imports requests",
        "base/model.py:7: base.model (layer base) imports top.cli, of the higher layer top.cli",
        "import cycle base.model -> top.cli -> base.model (base/model.py:7, top/cli/__init__.py:2)",
        "import cycle top.tools.a -> top.tools.b -> top.tools.a (top/tools/a.py:5, top/tools/b.py:1)",
    ]


def test_relative_imports_resolve_against_the_package(tmp_path):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("from . import leaf\nfrom .. import other\n")
    (tmp_path / "pkg" / "sub" / "leaf.py").write_text("from ..other import thing\nfrom . import missing\n")
    (tmp_path / "pkg" / "other.py").write_text("thing = 1\n")
    modules = module_files(tmp_path, ("pkg",))
    targets = {
        module: [edge.target for edge in imports_of(module, file, modules)] for module, file in modules.items()
    }
    assert targets == {
        "pkg": [],
        "pkg.other": [],
        "pkg.sub": ["pkg.sub.leaf", "pkg.other"],
        "pkg.sub.leaf": ["pkg.other", "pkg.sub"],
    }


IMPORT_ALONE = """
import gc, json, sys, time
start = time.perf_counter()
import {module}
seconds = time.perf_counter() - start
torch = sys.modules.get("torch")
weights = sum(isinstance(obj, torch.nn.Parameter) for obj in gc.get_objects()) if torch else 0
print(json.dumps({{"modules": sorted(sys.modules), "seconds": seconds, "weights": weights}}))
"""


@pytest.fixture(scope="module")
def imported_alone():
    """For each layer, what importing it alone in a fresh Python loads; the layers are imported side by side."""
    processes = {
        layer: subprocess.Popen(
            [sys.executable, "-c", IMPORT_ALONE.format(module=layer)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for layer in LAYERS
    }
    loaded = {}
    for layer, process in processes.items():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, f"import {layer} failed:\n{stderr[-3000:]}"
        loaded[layer] = json.loads(stdout.splitlines()[-1])
    return loaded


@pytest.mark.parametrize("layer", LAYERS)
def test_each_layer_imports_alone_without_loading_a_higher_one(imported_alone, layer):
    own = LAYERS.index(layer)
    higher = [
        module
        for module in imported_alone[layer]["modules"]
        if (index := layer_of(module, LAYERS)) is not None and index > own
    ]
    assert not higher, f"import {layer} loads {higher}"
    # transformers builds parameterless activation modules at import; a model would bring weights.
    assert imported_alone[layer]["weights"] == 0, f"import {layer} builds a model"


@pytest.mark.parametrize("layer", ["lpllm", "lpllm.cli", "modeling_lpllm", "dataset_scripts"])
def test_importing_the_entry_layers_is_light(imported_alone, layer):
    loaded = imported_alone[layer]
    heavy = [name for name in HEAVY_MODULES if name in loaded["modules"]]
    if layer == "dataset_scripts":  # the data builders write datasets and decode images with OpenCV
        heavy = [name for name in heavy if name not in ("datasets", "cv2")]
    assert not heavy, f"import {layer} loads {heavy}"
    if layer.startswith("lpllm"):  # `lpllm --help` must answer at once: no torch, no transformers
        assert "torch" not in loaded["modules"] and "transformers" not in loaded["modules"]
        assert loaded["seconds"] < 5, loaded["seconds"]
