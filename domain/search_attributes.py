"""Custom search attributes: what the Temporal UI and `codeblue incident list` filter on."""

from temporalio.common import SearchAttributeKey

SEVERITY = SearchAttributeKey.for_keyword("CodeBlueSeverity")
PHASE = SearchAttributeKey.for_keyword("CodeBluePhase")
SERVICE = SearchAttributeKey.for_keyword("CodeBlueService")
COMMANDER = SearchAttributeKey.for_keyword("CodeBlueCommander")

ALL = [SEVERITY, PHASE, SERVICE, COMMANDER]
