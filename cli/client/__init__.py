"""The `mandala` client commands: generate, jobs, show and all, talking to the REST API only."""
