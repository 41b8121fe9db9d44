"""agent-tracer: attribute what an agent's process tree does to its roles, with eBPF."""

__version__ = "0.1.0"
