"""docker-compose.yml, .env.example and the Dockerfile: the stack a team starts with
`docker compose up` (there is no Docker engine here, so the structure is what is checked)."""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml

from domain import search_attributes as sa
from domain.config import CodeBlueConfig, TemporalSettings, load_config
from tests.support.deploy import ROOT

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
SERVICES = {"postgresql", "temporal", "temporal-setup", "temporal-ui", "redis", "codeblue-worker", "codeblue-api"}
CODEBLUE = ("codeblue-worker", "codeblue-api")
ONE_SHOT = {"temporal-setup"}
_VAR = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?P<rest>[^}]*)\}")
_SECRETISH = re.compile(r"PASSWORD|PWD|SECRET|TOKEN|API_KEY|ROUTING_KEY|CODEC_KEY|ACCESS_KEY")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _resolve(value: str, env: dict[str, str]) -> str:
    """Compose interpolation of `${VAR:-default}` with an empty .env."""
    def sub(m: re.Match) -> str:
        rest = m["rest"]
        if rest.startswith(":-") or rest.startswith("-"):
            return env.get(m["name"]) or rest.split("-", 1)[1]
        return env.get(m["name"], "")
    return _VAR.sub(sub, value)


def _env_vars_codeblue_reads() -> set[str]:
    """Every environment variable name the code base reads, from the sources themselves."""
    names: set[str] = set()
    for pkg in ("domain", "worker", "activities", "starters"):
        for f in (ROOT / pkg).rglob("*.py"):
            text = f.read_text()
            names |= set(re.findall(r"(?:environ|env)\.get\(\s*\"([A-Z][A-Z0-9_]+)\"", text))
            names |= set(re.findall(r"\"((?:CODEBLUE|TEMPORAL)_[A-Z0-9_]+)\"", text))
    return names


def test_the_stack_has_every_service(compose):
    assert set(compose["services"]) == SERVICES


def test_every_image_is_pinned(compose):
    for name, svc in compose["services"].items():
        image = svc.get("image")
        assert image, f"{name} has no image"
        repo, _, tag = image.rpartition(":")
        assert "@sha256:" in image or (repo and tag and tag != "latest" and re.search(r"\d", tag)), f"{name}: {image}"


def test_temporal_persists_to_the_postgres_service_and_the_ui_points_at_it(compose):
    s = compose["services"]
    t = _env(s["temporal"])
    assert s["temporal"]["image"].startswith("temporalio/auto-setup:")
    assert t["DB"] == "postgres12" and t["POSTGRES_SEEDS"] == "postgresql"
    assert s["temporal"]["depends_on"]["postgresql"]["condition"] == "service_healthy"
    assert s["temporal-ui"]["image"].startswith("temporalio/ui:")
    assert _env(s["temporal-ui"])["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert s["postgresql"]["volumes"], "Temporal's data survives a restart"


def test_search_attributes_are_registered_once_temporal_is_healthy(compose):
    setup = compose["services"]["temporal-setup"]
    assert setup["depends_on"]["temporal"]["condition"] == "service_healthy"
    assert setup["restart"] == "no"
    script = "\n".join(setup["command"])
    loop = re.search(r"for name in ([^;]+);", script)
    assert loop
    names = set(loop[1].split())
    assert names == {k.name for k in sa.ALL}
    assert "--type Keyword" in script and "search-attribute list" in script  # idempotent


def test_every_long_running_service_has_a_health_check(compose):
    for name, svc in compose["services"].items():
        if name in ONE_SHOT:
            continue
        hc = svc.get("healthcheck")
        assert hc and hc.get("test"), f"{name} has no health check"


def test_codeblue_services_get_codeblues_settings(compose, tmp_path, monkeypatch):
    known = _env_vars_codeblue_reads()
    for name in CODEBLUE:
        svc = compose["services"][name]
        env = _env(svc)
        assert {"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_TASK_QUEUE", "CODEBLUE_CONFIG"} <= set(env)
        unknown = {k for k in env if k.startswith(("CODEBLUE_", "TEMPORAL_")) and k not in known}
        assert not unknown, f"{name}: CodeBlue reads no {unknown}"
        for k, v in env.items():
            monkeypatch.setenv(k, _resolve(v, {}))
        s = TemporalSettings.from_env()
        host, port = s.address.rsplit(":", 1)
        assert host in compose["services"] and port == "7233"
        assert (s.namespace, s.task_queue) == ("default", "codeblue")
        # CODEBLUE_CONFIG names a file mounted from the repo, and that file is a valid config
        short = [_VAR.sub(lambda m: "${" + m["name"] + "}", v) for v in svc["volumes"]]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in short}
        source = mounts[env["CODEBLUE_CONFIG"]]
        cfg = load_config(ROOT / source)
        assert isinstance(cfg, CodeBlueConfig)
        assert cfg.kubernetes.kubeconfig is not None
        assert mounts[cfg.kubernetes.kubeconfig] == "${CODEBLUE_KUBECONFIG_FILE}"
        deps = svc["depends_on"]
        assert deps["temporal-setup"]["condition"] == "service_completed_successfully"
        assert svc["cap_drop"] == ["ALL"] and svc["read_only"] is True


def test_two_workers_and_the_api(compose):
    s = compose["services"]
    assert s["codeblue-worker"]["command"] == ["worker"]
    assert s["codeblue-worker"]["deploy"]["replicas"] == 2
    assert "ports" not in s["codeblue-worker"], "replicas cannot share a host port"
    assert s["codeblue-api"]["command"][0] == "api"
    bind = _env(s["codeblue-worker"])["CODEBLUE_METRICS_BIND"]
    assert bind.rsplit(":", 1)[1] in " ".join(s["codeblue-worker"]["healthcheck"]["test"])


def test_no_secret_value_is_in_the_compose_file(compose):
    referenced: set[str] = set()
    for name, svc in compose["services"].items():
        for k, v in _env(svc).items():
            referenced |= {m["name"] for m in _VAR.finditer(v)}
            if _SECRETISH.search(k):
                assert _VAR.fullmatch(v.strip()) or v.startswith("$$"), f"{name}: {k} is inline, not from .env"
        for v in svc.get("command") or []:
            assert not re.search(r"(?i)password\s*[=:]\s*\w", v) or "$$" in v
    text = COMPOSE.read_text()
    referenced |= {m["name"] for m in _VAR.finditer(text)}
    example = dict(
        line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#")
    )
    missing = referenced - set(example)
    assert not missing, f".env.example lacks {missing}"
    for k, v in example.items():
        if _SECRETISH.search(k):
            assert v == "", f".env.example holds a value for {k}"
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    for name in CODEBLUE:
        assert compose["services"][name]["env_file"] == [".env"]


def test_the_dockerfile_is_multi_stage_pinned_and_runs_as_non_root():
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, flags=re.M | re.I)
    assert len(stages) >= 2
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, flags=re.M))
    for image, _ in stages:
        image = _VAR.sub(lambda m: args.get(m["name"], ""), image)
        assert re.search(r":\S*\d", image) and not image.endswith(":latest"), image
    final = text[text.rfind("\nFROM "):]
    user = re.findall(r"^USER\s+(\S+)", final, flags=re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert "COPY --from=build" in final
    assert re.search(r'^ENTRYPOINT \["codeblue"\]', final, flags=re.M)
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for pkg in {p.split(".")[0] for p in packages} - {"sandbox"}:  # the drill world stays out (test_deploy_image.py)
        assert f"COPY {pkg} {pkg}" in text, f"{pkg} is not in the image"
