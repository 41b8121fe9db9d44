"""Exit codes of agent-tracer, from BSD's sysexits.h where one fits."""

OK = 0
ERROR = 1  # an expected failure: the message says what happened
USAGE = 2  # a bad option or argument (click's own code)
UNAVAILABLE = 69  # EX_UNAVAILABLE: no BPF, no tracefs, no headers, no bcc, missing tracepoint
CANT_CREATE = 73  # EX_CANTCREAT: the output file cannot be created
IO_ERROR = 74  # EX_IOERR: writing the output failed, e.g. the disk is full
NO_PERMISSION = 77  # EX_NOPERM: not root, or root without the capabilities BPF needs
