"""One import name, ``adaptive_weights``: the folders strategies/ and tuning/ are its subpackages.

A user's own ``strategies.py`` or ``tuning.py`` must break nothing; the old names are deprecated
aliases of the very same module objects (a second copy would hold registries and classes of its
own), from an installed package and from the repository root alike; an exported name of the
package is never replaced by a submodule of the same name; the installed package list names every
package folder. Fresh interpreters (subprocesses) show what a first import does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _python(code: str, cwd: Path, *args: str) -> dict:
    """Run ``code`` in a fresh interpreter in ``cwd`` (on sys.path, as for any ``python -c``); its
    last stdout line is JSON."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_users_own_strategies_and_tuning_modules_break_nothing(tmp_path: Path) -> None:
    for name in ("strategies", "tuning"):
        (tmp_path / f"{name}.py").write_text(f"raise ImportError('the user\\'s own {name}.py was imported')\n")
    (tmp_path / "sweep.yaml").write_text("data.name: synthetic\nmodel: {n: 1, c: 4}\ntrain.epochs: 1\n"
                                         "strategy.name: [eg, round-robin]\nsweep.paper_grid: false\n")
    code = ("import json, adaptive_weights, adaptive_weights.strategies as s, adaptive_weights.tuning as t; "
            "spec = t.load_sweep('sweep.yaml'); "
            "print(json.dumps({'strategies': s.list_strategies(), 'trials': len(spec.trials)}))")
    out = _python(code, tmp_path)
    assert "round-robin" in out["strategies"] and out["trials"] == 2
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for command in (["strategies"], ["sweep", "sweep.yaml", "--dry-run"]):
        proc = subprocess.run([sys.executable, "-m", "adaptive_weights.cli", *command], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "user's own" not in proc.stderr
    assert "sweep sweep: 2 trials" in proc.stdout


_OLD_NAMES = """
import json, sys, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import strategies, strategies.builtin
    from strategies.builtin import EGStrategy
    from strategies import STRATEGIES, create_strategy
    import tuning.sweepfile
    from tuning import load_sweep
import importlib.util
import adaptive_weights.strategies as new, adaptive_weights.strategies.builtin as new_builtin
import adaptive_weights.tuning as new_tuning
import torch
old_modules = {n: m for n, m in sys.modules.items() if n.split(".")[0] in ("strategies", "tuning")}
runpy_code = importlib.util.find_spec("tuning.demo").loader.get_code("tuning.demo")
print(json.dumps({
    "same": [strategies is new, strategies.builtin is new_builtin, EGStrategy is new_builtin.EGStrategy,
             STRATEGIES is new.STRATEGIES, isinstance(create_strategy("eg", torch.ones(3)), new.Strategy),
             tuning is new_tuning, tuning.sweepfile is sys.modules["adaptive_weights.tuning.sweepfile"],
             load_sweep is new_tuning.load_sweep],
    "copies": sorted(n for n, m in old_modules.items() if sys.modules.get("adaptive_weights." + n) is not m),
    "files": sorted({m.__file__ for m in old_modules.values()} - {m.__file__ for n, m in sys.modules.items()
                                                                   if n.startswith("adaptive_weights.")}),
    "spec_names": [new.__spec__.name, new_builtin.__spec__.name],
    "warnings": [(str(w.message), w.filename) for w in caught if issubclass(w.category, DeprecationWarning)],
    "runpy_file": runpy_code.co_filename == importlib.util.find_spec("adaptive_weights.tuning.demo").origin,
}))
"""


@pytest.mark.parametrize("where", ["installed", "repository root"])
def test_old_names_are_the_new_modules_and_warn_once(where: str, tmp_path: Path) -> None:
    """From the repository root, ``import strategies`` finds the bare folder strategies/ first: it
    must hand over to ``adaptive_weights.strategies`` rather than load its files a second time."""
    out = _python(_OLD_NAMES, REPO if where == "repository root" else tmp_path)
    assert all(out["same"]), out["same"]
    assert out["copies"] == [] and out["files"] == []
    assert out["spec_names"] == ["adaptive_weights.strategies", "adaptive_weights.strategies.builtin"]
    messages = [m for m, _ in out["warnings"]]
    assert len(messages) == 2, messages  # once per old name, on the importing line
    assert "'strategies' is deprecated" in messages[0] and "import 'adaptive_weights.strategies'" in messages[0]
    assert "'tuning' is deprecated" in messages[1] and "import 'adaptive_weights.tuning'" in messages[1]
    assert {f for _, f in out["warnings"]} == {"<string>"}
    assert out["runpy_file"]  # python -m tuning.demo still runs adaptive_weights.tuning.demo


def test_a_source_tree_that_nothing_installed_maps_finds_its_subpackages() -> None:
    """Python runs the repository root without the editable install's mapping (not installed, or
    installed from a wheel): strategies/ and tuning/ beside adaptive_weights/ are still its
    subpackages, and the old names still the same modules."""
    code = """
import json, sys, warnings
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
import adaptive_weights.strategies as new, adaptive_weights.tuning.sweepfile as sweepfile
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import strategies.builtin
print(json.dumps({"files": [new.__file__, sweepfile.__file__], "same": strategies.builtin is sys.modules[
    "adaptive_weights.strategies.builtin"], "eg": "eg" in new.list_strategies()}))
"""
    out = _python(code, REPO)
    assert out["files"] == [str(REPO / "strategies" / "__init__.py"), str(REPO / "tuning" / "sweepfile.py")]
    assert out["same"] and out["eg"]


def test_a_users_own_strategies_package_is_not_taken_for_the_alias(tmp_path: Path) -> None:
    """The alias of submodules (``strategies.builtin``) applies only while ``strategies`` is ours."""
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "__init__.py").write_text("")
    (tmp_path / "strategies" / "builtin.py").write_text("MINE = True\n")
    code = ("import json, adaptive_weights.strategies, strategies.builtin; "
            "print(json.dumps(getattr(strategies.builtin, 'MINE', False)))")
    assert _python(code, tmp_path) is True


def test_the_exported_train_is_always_the_function(tmp_path: Path) -> None:
    """``train`` is a function and ``adaptive_weights.training`` its module; importing the module
    (or its deprecated name ``adaptive_weights.train``) never puts a module in the function's place."""
    code = """
import json, warnings
from adaptive_weights import train as first
import adaptive_weights as aw, adaptive_weights.training as module
after_module = aw.train
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from adaptive_weights.train import build_run
    import adaptive_weights.train
from adaptive_weights import train as last
print(json.dumps({"same": [first is module.train, after_module is module.train, build_run is module.build_run,
                           aw.train is module.train, last is module.train, callable(last)],
                  "warnings": [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]}))
"""
    out = _python(code, tmp_path)
    assert all(out["same"]), out["same"]
    assert len(out["warnings"]) == 1 and "import 'adaptive_weights.training'" in out["warnings"][0]


def test_no_exported_name_is_also_a_submodule() -> None:
    """An exported name that is also a submodule's name is the module after any import of it."""
    import pkgutil

    import adaptive_weights

    for package in ("adaptive_weights", "adaptive_weights.strategies", "adaptive_weights.tuning",
                    "adaptive_weights.data", "adaptive_weights.gradients", "adaptive_weights.models",
                    "adaptive_weights.objectives"):
        module = __import__(package, fromlist=["_"])
        submodules = {m.name for m in pkgutil.iter_modules(module.__path__)}
        if package == "adaptive_weights":
            submodules |= {"strategies", "tuning"}  # mapped from the top-level folders
        assert set(getattr(module, "__all__", ())) & submodules == set(), package
    assert adaptive_weights.__all__


def _pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_the_installed_package_list_names_every_package_folder() -> None:
    """The list is explicit (a mapped folder cannot be found by packages.find): a new package
    folder missing from it would be left out of a wheel."""
    setuptools = _pyproject()["tool"]["setuptools"]
    mapping = {"adaptive_weights.strategies": "strategies", "adaptive_weights.tuning": "tuning",
               "strategies": "adaptive_weights/_legacy/strategies", "tuning": "adaptive_weights/_legacy/tuning"}
    assert setuptools["package-dir"] == mapping
    folders = {}
    for top, name in (("adaptive_weights", "adaptive_weights"), ("strategies", "adaptive_weights.strategies"),
                      ("tuning", "adaptive_weights.tuning")):
        for init in sorted((REPO / top).rglob("__init__.py")):
            rel = init.parent.relative_to(REPO / top)
            if rel.parts[:1] != ("_legacy",):
                folders[".".join((name, *rel.parts))] = init.parent
    assert sorted(setuptools["packages"]) == sorted([*folders, "strategies", "tuning"])


def test_builtin_strategies_are_entry_points_of_the_new_name() -> None:
    entry_points = _pyproject()["project"]["entry-points"]["adaptive_weights.strategies"]
    assert all(v.startswith("adaptive_weights.strategies.builtin:") for v in entry_points.values())


def test_ray_and_torchjd_are_extras_that_dev_installs() -> None:
    """Ray Tune (``[tune]``) and TorchJD (``[multitask]``) only some commands need; ``make demo`` and
    ``make test`` install ``[dev]``, which holds every extra."""
    project = _pyproject()["project"]
    assert not [d for d in project["dependencies"] if d.startswith(("ray", "torchjd"))]
    extras = project["optional-dependencies"]
    assert extras["tune"] == ["ray[tune]>=2.40"] and extras["multitask"][0].startswith("torchjd[")
    assert "adaptive-weights[tune,optuna,hyperopt,multitask]" in extras["dev"]
