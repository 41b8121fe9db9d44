"""The systemd unit that `agent-tracer install-service` installs, shipped as package data (tracer.deploy)."""
