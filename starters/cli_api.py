"""`codeblue api`: serve the HTTP API (uvicorn) against $TEMPORAL_ADDRESS."""

from __future__ import annotations

import typer

from starters.cli_common import cli_config, err, exit_now, fail, temporal_client
from worker.heap import settle_heap


def api_cmd(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8080, "--port", min=1, max=65535),
    config: str | None = typer.Option(None, "--config", "-c", help="YAML config (default: $CODEBLUE_CONFIG)."),
    alert_spool: str | None = typer.Option(
        None, "--alert-spool", help="SQLite file for accepted alerts (overrides api.alert_spool; one per API process)."),
) -> None:
    """HTTP API with bearer tokens (OpenAPI at /docs); Ctrl-C stops."""
    import uvicorn

    from domain.config import ConfigError, TemporalSettings
    from domain.identity import ENV_KEY, IdentityKeyError, keyring_from_env
    from starters.api.alert_spool import SpoolError
    from starters.api.app import ApiSettings, create_app
    from starters.api.auth import TokenBook
    from worker.codec import CodecKeyError, codec_from_env

    cfg = cli_config(config)
    if alert_spool:
        cfg.api.alert_spool = alert_spool
    try:
        codec_from_env()  # a bad key fails here, in one line, not on the first request
        if not keyring_from_env().can_sign:  # the workers would refuse every alert and command: lose none
            fail(f"no operator key: set ${ENV_KEY} (or $CODEBLUE_OPERATOR_KEY_FILE) as on the workers; "
                 "without it every alert and command this API accepted would be refused")
        tokens = TokenBook.from_config(cfg.api)
        settings = ApiSettings(config=cfg, temporal=TemporalSettings.from_env(), tokens=tokens)
        app = create_app(lambda: temporal_client(via=None), settings)
    except (ConfigError, CodecKeyError, SpoolError, IdentityKeyError) as e:
        fail(str(e))
        return
    if not len(tokens):
        err.print(f"warning: no API tokens configured (api.tokens or ${cfg.api.tokens_env}); every call gets 401")
    if cfg.api.alert_spool:
        err.print(f"Alerts are spooled in {app.state.alert_spool.path} ({app.state.alert_spool.backlog} waiting)")
    err.print(f"CodeBlue API on http://{host}:{port} (OpenAPI at /docs), Temporal {settings.temporal.address}")
    settle_heap()  # what is imported now lives as long as the process: out of the collector's sight
    # Access logs carry method, path and status only: never headers, so never tokens.
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
    exit_now(0)
