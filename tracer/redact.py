"""Redaction of secrets in the command lines the tracer records.

Exec arguments often carry credentials. By default the values of arguments
that look like secrets are replaced with REDACTED before anything is
written; --no-redact keeps them, and --redact REGEX adds patterns.
"""

import re

REDACTED = "<redacted>"

# Names of options and variables whose value is a secret.
SECRET_NAME = r"(?:[\w.-]*(?:pass(?:word|wd|phrase)?|secret|token|api[-_]?key|access[-_]?key|auth|credentials?|private[-_]?key|session[-_]?key)[\w.-]*)"

# NAME=VALUE and --NAME=VALUE: the value goes.
_ASSIGNMENT = re.compile(rf"^(?P<keep>-{{0,2}}{SECRET_NAME}[=:])(?P<secret>.+)$", re.IGNORECASE)
# --NAME VALUE: the next argument goes.
_FLAG = re.compile(rf"^-{{1,2}}{SECRET_NAME}$", re.IGNORECASE)
# scheme://user:password@host: the password goes.
_URL_PASSWORD = re.compile(r"(?P<keep>[a-z][a-z0-9+.-]*://[^/\s:@]*:)(?P<secret>[^@/\s]+)(?=@)", re.IGNORECASE)
# AWS access key ids, and values after "Bearer " or "Basic ".
_INLINE = [
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"(?<=Bearer )[\w.~+/=-]+", re.IGNORECASE),
    re.compile(r"(?<=Basic )[\w+/=]+", re.IGNORECASE),
]

PATTERNS_DOC = [
    "NAME=VALUE and --NAME=VALUE where NAME contains pass, password, passwd, passphrase, secret, "
    "token, api_key, access_key, auth, credential(s), private_key or session_key (any case)",
    "the argument after --NAME or -NAME of that kind",
    "the password in scheme://user:password@host",
    "AWS access key ids (AKIA..., ASIA...)",
    "the value after 'Bearer ' or 'Basic '",
]


class Redactor:
    """Replaces secret values in argument lists and command lines."""

    def __init__(self, enabled=True, extra_patterns=()):
        self.enabled = enabled
        self.extra = []
        for pattern in extra_patterns:
            try:
                self.extra.append(re.compile(pattern))
            except re.error as error:
                raise ValueError(f"invalid --redact pattern '{pattern}': {error}") from error

    def text(self, value):
        """Redact secrets that stand inside one string."""
        if not self.enabled:
            return value
        value = _URL_PASSWORD.sub(lambda m: m.group("keep") + REDACTED, value)
        for pattern in _INLINE + self.extra:
            value = pattern.sub(REDACTED, value)
        return value

    def argv(self, arguments):
        """Return a copy of an argument list with secret values replaced."""
        if not self.enabled:
            return list(arguments)
        result = []
        hide_next = False
        for argument in arguments:
            if hide_next:
                result.append(REDACTED)
                hide_next = False
                continue
            assignment = _ASSIGNMENT.match(argument)
            if assignment:
                result.append(assignment.group("keep") + REDACTED)
                continue
            if _FLAG.match(argument):
                hide_next = True
            result.append(self.text(argument))
        return result

    def cmdline(self, line):
        """Redact a command line that was joined with spaces."""
        if not self.enabled:
            return line
        return " ".join(self.argv(line.split(" ")))
