"""The production image holds the product and nothing of the drill world: the wheel the
Dockerfile builds (from exactly what it copies) has no `sandbox/` module and needs none of the
drill emulators, and a `codeblue` without the drill world says so in one line."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from tests.support.deploy import ROOT

DRILL_ONLY = {"kmock", "moto", "prometheus-client"}


def _copied() -> list[str]:
    """What the Dockerfile's build stage copies from the checkout (COPY without --from)."""
    paths: list[str] = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            paths += words[1:-1]
    return paths


def test_the_image_wheel_has_no_drill_code_and_no_drill_dependency(tmp_path: Path) -> None:
    copied = _copied()
    assert "sandbox" not in copied and {"domain", "workflows", "starters", "pyproject.toml"} <= set(copied)
    src = tmp_path / "src"
    src.mkdir()
    for name in copied:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, src / name)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                          "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    [wheel] = (tmp_path / "dist").glob("codeblue-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = Parser().parsestr(z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
    packages = {n.split("/")[0] for n in names if n.endswith(".py")}
    assert packages == {"domain", "activities", "workflows", "worker", "starters"}, packages
    for req in meta.get_all("Requires-Dist") or []:
        name = req.split(";")[0].split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip().lower()
        if name in DRILL_ONLY:
            assert 'extra == "drill"' in req, f"the image would install {req}"


def _without_drill_world(*argv: str) -> subprocess.CompletedProcess:
    """`codeblue ARGV` where the drill world cannot be imported (as in the image)."""
    code = ("import sys; sys.modules['sandbox'] = None; from starters.cli import main; "
            f"sys.argv = ['codeblue', *{list(argv)!r}]; main()")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_without_the_drill_world_drill_and_dev_sandbox_say_so_in_one_line() -> None:
    drill = _without_drill_world("drill", "--json")
    assert drill.returncode == 2 and drill.stdout == ""
    assert len(drill.stderr.strip().splitlines()) == 1 and "drill world" in drill.stderr, drill.stderr
    dev = _without_drill_world("dev", "--sandbox", "bad-deploy", "--port", "1", "--ui-port", "2")
    assert dev.returncode == 1 and "drill world" in dev.stderr and "Traceback" not in dev.stderr, dev.stderr
    assert "Temporal at" not in dev.stderr + dev.stdout  # refused before any server started
    helped = _without_drill_world("--help")
    assert helped.returncode == 0 and "incident" in helped.stdout
