"""The README's "Production" section matches the files it describes."""

from __future__ import annotations

import re

import yaml

from tests.support.deploy import MANIFESTS, ROOT


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"^## Production\n(.*?)(?=^## )", text, flags=re.M | re.S)
    assert m, "README has no Production section"
    return m[1]


def test_every_manifest_and_compose_service_is_described():
    sec = _section()
    for f in MANIFESTS.glob("*.yaml"):
        assert f"`{f.name}`" in sec, f.name
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert "temporal-setup" in sec and "--scale codeblue-worker" in sec
    assert len([s for s in services if s.startswith("codeblue-")]) == 2


def test_every_documented_variable_is_read_by_codeblue():
    sec = _section()
    documented = set(re.findall(r"`((?:TEMPORAL|CODEBLUE)_[A-Z_]+)(?:=[^`]*)?`", sec))
    source = "\n".join(p.read_text() for d in ("domain", "worker", "starters") for p in (ROOT / d).rglob("*.py"))
    example = (ROOT / ".env.example").read_text()
    for var in documented:
        assert f'"{var}"' in source or var in example, f"README documents {var}, nothing reads it"
    for var in ("TEMPORAL_TLS_CERT", "TEMPORAL_TLS_KEY", "TEMPORAL_TLS_CA", "TEMPORAL_API_KEY", "CODEBLUE_METRICS_BIND"):
        assert var in documented, var
