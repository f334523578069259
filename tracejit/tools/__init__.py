"""Developer tools that run on top of tracejit (not imported by the JIT itself)."""
