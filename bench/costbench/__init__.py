"""agent-tracer's side-by-side cost benchmark; bench/run is its command."""
