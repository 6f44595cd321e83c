"""`bad-deploy`: revision 12 crash-loops; the IC approves the rollback to 11."""

from sandbox.scenario_kit import BAD_TAG, Scenario, seed_bad_release

SCENARIO = Scenario(
    name="bad-deploy",
    description=(
        f"release revision 12 ({BAD_TAG}) went out 12 minutes ago; api-gateway pods crash-loop "
        "and log connection errors; revision 11 was good"
    ),
    title="api-gateway crash-looping after deploy; patients cannot load records",
    severity="P0",
    driver="incident",
    approve=("rollback",),
    seed=seed_bad_release,
)
