"""Hands the worker's config to a workflow, so the worker, not the starter, decides where to act."""

from __future__ import annotations

from temporalio import activity

from domain.config import CodeBlueConfig, EnvironmentQuery


class EnvironmentActivities:
    def __init__(self, config: CodeBlueConfig) -> None:
        self.config = config

    @activity.defn
    async def worker_config(self, query: EnvironmentQuery) -> CodeBlueConfig:
        return self.config
