"""Files for running agent-tracer as a service, installed as the package data tracer.packaging."""
