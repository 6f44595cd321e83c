"""Hands the worker's config to a workflow, so the worker, not the starter, decides where to act."""

from __future__ import annotations

from temporalio import activity

from domain.config import CodeBlueConfig, EnvironmentQuery


class EnvironmentActivities:
    def __init__(self, config: CodeBlueConfig) -> None:
        self.config = config

    @activity.defn
    async def worker_config(self, query: EnvironmentQuery) -> CodeBlueConfig:
        """The result is kept in history: no credential travels (CodeBlueConfig.for_history)."""
        return self.config.for_history()
