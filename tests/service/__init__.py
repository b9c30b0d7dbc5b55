"""Service tests: the HTTP app in-process, backends against the stand-in TF Serving, CLI commands."""
