"""The incident workflow's parts: `state` (its state, carry, helpers and report), `phases`
(diagnostics, assessment, communication, proposals) and `mitigation` (the saga); the workflow
itself, with its run loop and handlers, is `workflows.incident_response`."""
