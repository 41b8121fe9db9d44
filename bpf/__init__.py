"""The BPF C sources that BCC compiles, shipped as package data (tracer.bpf)."""
