"""`memory-leak`: api-gateway v1.6.0 leaks; its pods' memory climbs toward the 512Mi limit.

The leak itself is played by the drill driver (it raises the tag's reported memory while
CodeBlue samples), since the emulator reports a fixed figure per tag."""

from __future__ import annotations

from domain.config import CodeBlueConfig, MemoryConfig
from sandbox.scenario_kit import GATEWAY, NAMESPACE, SandboxEnvironment, Scenario, seed_bad_release

LEAKY_TAG = "v1.6.0"
START_MI = 380


async def seed_memory_leak(env: SandboxEnvironment) -> None:
    env.cluster.behaviour.memory_by_tag[LEAKY_TAG] = f"{START_MI}Mi"
    await seed_bad_release(env, current_tag=LEAKY_TAG)


def leak(env: SandboxEnvironment, step_mi: int = 15, cap_mi: int = 505) -> int:
    """One step of the leak: the tag's pods report `step_mi` more (up to `cap_mi`)."""
    cur = int(env.cluster.behaviour.memory_by_tag[LEAKY_TAG].removesuffix("Mi"))
    new = min(cur + step_mi, cap_mi)
    env.cluster.behaviour.memory_by_tag[LEAKY_TAG] = f"{new}Mi"
    return new


def configure_memory(cfg: CodeBlueConfig, env: SandboxEnvironment) -> CodeBlueConfig:
    return cfg.model_copy(update={"memory": MemoryConfig(samples=3, sample_interval_seconds=3, scale_replicas=10, max_replicas=12)})


SCENARIO = Scenario(
    name="memory-leak",
    description=f"{GATEWAY} {LEAKY_TAG} in {NAMESPACE} leaks memory toward its 512Mi limit; "
                "the IC scales to 10 and restarts, then resolves (scale back)",
    title="api-gateway memory climbing",
    severity="P2",
    driver="memory-leak",
    seed=seed_memory_leak,
    configure=configure_memory,
)
