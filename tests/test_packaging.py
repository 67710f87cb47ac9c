"""The wheel: three top-level packages, the `lpllm` command, and evaluation that runs from an installed copy alone;
scripts/install.sh: the CPU build of torch only where no torch is installed."""

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from test_eval_helpers import write_crop_folder
from tiny_lpllm import save_tiny_checkpoint


REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"lpllm", "modeling_lpllm", "dataset_scripts"}


def run(command, **kwargs) -> subprocess.CompletedProcess:
    completed = subprocess.run(list(map(str, command)), capture_output=True, text=True, timeout=600, **kwargs)
    assert completed.returncode == 0, f"{command} failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-3000:]}"
    return completed


def copy_project(destination: Path) -> Path:
    """What a build of the checkout reads: its top-level files and every top-level package (a folder with an
    `__init__.py`), without caches. Building a copy keeps `build/` out of the checkout and stale files out of the
    wheel."""
    destination.mkdir()
    for path in REPO.iterdir():
        if path.is_file():
            shutil.copy2(path, destination / path.name)
        elif (path / "__init__.py").is_file():
            shutil.copytree(path, destination / path.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return destination


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = copy_project(work / "source")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", work / "dist", source])
    (built,) = (work / "dist").glob("lpllm-*.whl")
    return built


def wheel_files(wheel: Path) -> dict[str, str]:
    """The wheel's files as listed in its RECORD -> the text of its .dist-info files (empty for the rest)."""
    with zipfile.ZipFile(wheel) as archive:
        (record,) = [name for name in archive.namelist() if name.endswith(".dist-info/RECORD")]
        names = [line.split(",")[0] for line in archive.read(record).decode().splitlines() if line]
        return {name: archive.read(name).decode() if ".dist-info/" in name else "" for name in names}


def test_the_wheel_holds_three_packages_the_metrics_module_and_the_lpllm_command(wheel):
    files = wheel_files(wheel)
    top_level = {name.split("/")[0].removesuffix(".py") for name in files if ".dist-info/" not in name}
    assert top_level == PACKAGES
    # Every module of the three packages is inside, data builders' shell scripts included.
    for package in PACKAGES:
        for path in (REPO / package).rglob("*"):
            if path.suffix in (".py", ".sh") and "__pycache__" not in path.parts:
                assert path.relative_to(REPO).as_posix() in files, path
    assert "lpllm/evaluation/plate_metrics.py" in files
    (entry_points,) = [text for name, text in files.items() if name.endswith(".dist-info/entry_points.txt")]
    parser = configparser.ConfigParser()
    parser.read_string(entry_points)
    assert dict(parser["console_scripts"]) == {"lpllm": "lpllm.cli:console_main"}


@pytest.mark.slow
def test_the_installed_wheel_evaluates_a_saved_model_from_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python, lpllm = venv / "bin" / "python", venv / "bin" / "lpllm"
    run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel])

    # The dependencies come from this interpreter's site-packages; the project only from the venv (`.pth` files, the
    # editable install's among them, are read in site directories only, not on PYTHONPATH).
    dependencies = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(dependencies)}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    modules = ["lpllm.cli", "modeling_lpllm", "dataset_scripts", "lpllm.evaluation.plate_metrics"]
    where = run(
        [python, "-c", f"import importlib.util, json; print(json.dumps([importlib.util.find_spec(name).origin "
         f"for name in {modules}]))"],
        cwd=elsewhere, env=env,
    )  # fmt: skip
    for name, file in zip(modules, json.loads(where.stdout.splitlines()[-1])):
        assert Path(file).is_relative_to(venv), f"{name} comes from {file}, not from the venv"

    assert "eval" in run([lpllm, "--help"], cwd=elsewhere, env=env).stdout

    save_tiny_checkpoint(tmp_path / "model")
    crops = write_crop_folder(tmp_path / "crops", [("images/a.png", "AB123", "ok"), ("images/b.png", "CD456", "ok")])
    output = tmp_path / "report"
    run(
        [lpllm, "eval", "--model_name_or_path", tmp_path / "model", "--dataset_name", crops, "--output_dir", output,
         "--batch_size", "2", "--latency_runs", "0", "--log_level", "WARNING"],
        cwd=elsewhere, env=env,
    )  # fmt: skip
    results = json.loads((output / "results.json").read_text(encoding="utf-8"))
    assert results["dataset"]["num_evaluated"] == 2 and results["model"]["paradigm"] == "VLM + CMRM"
    assert 0.0 <= results["accuracy"] <= 1.0


FAKE_PYTHON = """#!/usr/bin/env bash
# Stands in for python: records each call, answers as the test's FAKE_TORCH and FAKE_CPU_INDEX say, installs nothing.
echo "$*" >> "$FAKE_LOG"
case "$*" in
    "-c import torch") [ "$FAKE_TORCH" = installed ] ;;
    "-c import torch; print(torch.__version__)") echo 2.5.0+cu121 ;;
    *"--index-url https://download.pytorch.org/whl/cpu "*) [ "$FAKE_CPU_INDEX" = reachable ] ;;
esac
"""


@pytest.mark.parametrize(
    "torch, cpu_index, torch_installs",
    [
        ("installed", "reachable", []),
        ("missing", "reachable", ["cpu index"]),
        ("missing", "unreachable", ["cpu index", "configured index"]),
    ],
)
def test_install_script_takes_the_cpu_build_of_torch_only_where_none_is_installed(
    tmp_path, torch, cpu_index, torch_installs
):
    script = REPO / "scripts" / "install.sh"
    (version,) = re.findall(r'^torch_version="(.+)"$', script.read_text(), flags=re.MULTILINE)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("python", FAKE_PYTHON), ("apt-get", "#!/bin/sh\n"), ("sudo", '#!/bin/sh\n"$@"\n')):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "calls.log"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_LOG": str(log)}
    env.update(FAKE_TORCH=torch, FAKE_CPU_INDEX=cpu_index)
    completed = run(["bash", script, "test"], cwd=tmp_path, env=env)
    calls = log.read_text().splitlines()

    torch_calls = [call for call in calls if call.startswith("-m pip install ") and call.endswith(f" torch=={version}")]
    assert [
        "cpu index" if "--index-url https://download.pytorch.org/whl/cpu " in call else "configured index"
        for call in torch_calls
    ] == torch_installs
    assert "-m pip install --quiet -e .[test]" in calls
    if torch == "installed":
        assert "keeping the installed torch 2.5.0+cu121" in completed.stdout
    elif cpu_index == "reachable":
        assert "installed torch 2.5.0+cu121 with https://download.pytorch.org/whl/cpu as the index" in completed.stdout
        assert not completed.stderr
    else:
        assert "installing it from pip's configured index instead" in completed.stderr
