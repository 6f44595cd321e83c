"""Open incidents that read the same worker config hold one object between them (each copy
was ~24 KiB of a thousand-incident worker), never one that differs in value."""

from __future__ import annotations

from domain.config import CodeBlueConfig
from workflows.steps import SHARED_CONFIGS_MAX, shared_config, shared_config_count


def test_equal_configs_share_one_object_and_a_different_one_is_its_own():
    first = shared_config(CodeBlueConfig())
    again = shared_config(CodeBlueConfig.model_validate_json(CodeBlueConfig().model_dump_json()))
    assert again is first
    other = CodeBlueConfig.model_validate({"mitigation": {"scale_replicas": 7}})
    got = shared_config(other)
    assert got is other and got.mitigation.scale_replicas == 7
    assert shared_config(CodeBlueConfig()) is first


def test_the_table_stays_small_when_configs_keep_changing():
    configs = [CodeBlueConfig.model_validate({"mitigation": {"scale_replicas": n}}) for n in range(2, 40)]
    for c in configs:
        assert shared_config(c).mitigation.scale_replicas == c.mitigation.scale_replicas
    assert shared_config_count() <= SHARED_CONFIGS_MAX


def test_a_config_in_use_outlives_a_stream_of_others():
    """Many differing configs (other tests' workers, a rollout) must not evict the one read now."""
    mine = shared_config(CodeBlueConfig())
    for n in range(2, 2 + 3 * SHARED_CONFIGS_MAX):
        shared_config(CodeBlueConfig.model_validate({"mitigation": {"scale_replicas": n}}))
        assert shared_config(CodeBlueConfig()) is mine
