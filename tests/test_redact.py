"""Unit tests of secret redaction in exec arguments and command lines (no root needed)."""

import pytest

from tracer.redact import REDACTED, Redactor

AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"


@pytest.fixture
def redactor():
    return Redactor()


@pytest.mark.parametrize(
    "argument, expected",
    [
        ("--password=hunter2", f"--password={REDACTED}"),
        ("-password=hunter2", f"-password={REDACTED}"),
        ("token=abc", f"token={REDACTED}"),
        ("DB_PASSWORD=hunter2", f"DB_PASSWORD={REDACTED}"),
        ("--api-key=k123", f"--api-key={REDACTED}"),
        ("--access_key=k123", f"--access_key={REDACTED}"),
        ("client_secret:s3cr3t", f"client_secret:{REDACTED}"),
        ("--Auth-Token=xyz", f"--Auth-Token={REDACTED}"),
        ("--passphrase=open sesame", f"--passphrase={REDACTED}"),
        ("--private-key=/dev/stdin", f"--private-key={REDACTED}"),
    ],
)
def test_assignment_value_redacted(redactor, argument, expected):
    assert redactor.argv([argument]) == [expected]


@pytest.mark.parametrize("flag", ["--password", "-password", "--token", "--secret", "--credentials"])
def test_value_after_flag_redacted(redactor, flag):
    assert redactor.argv(["tool", flag, "hunter2", "next"]) == ["tool", flag, REDACTED, "next"]


def test_flag_as_last_argument_kept(redactor):
    assert redactor.argv(["tool", "--password"]) == ["tool", "--password"]


def test_only_next_argument_redacted(redactor):
    result = redactor.argv(["--token", "abc", "--token", "def", "plain"])
    assert result == ["--token", REDACTED, "--token", REDACTED, "plain"]


def test_url_password_redacted(redactor):
    result = redactor.argv(["git", "clone", "https://user:pw@host/repo.git"])
    assert result == ["git", "clone", f"https://user:{REDACTED}@host/repo.git"]


def test_url_password_inside_argument(redactor):
    result = redactor.argv(["--remote=origin,https://deploy:p4ss@git.example/x"])
    assert result == [f"--remote=origin,https://deploy:{REDACTED}@git.example/x"]


def test_url_without_password_kept(redactor):
    urls = ["https://host/path", "https://user@host/", "http://host:8080/x"]
    assert redactor.argv(urls) == urls


@pytest.mark.parametrize("key_id", [AWS_KEY_ID, "ASIAIOSFODNN7EXAMPL2"])
def test_aws_key_id_redacted(redactor, key_id):
    assert redactor.argv([key_id]) == [REDACTED]
    assert redactor.argv([f"key={key_id},region=us-east-1"]) == [f"key={REDACTED},region=us-east-1"]


def test_aws_key_id_prefix_kept(redactor):
    # Not a key id: 15 characters after AKIA instead of 16.
    assert redactor.argv(["AKIAIOSFODNN7EXAMPL"]) == ["AKIAIOSFODNN7EXAMPL"]


@pytest.mark.parametrize("scheme", ["Bearer", "Basic", "bearer"])
def test_bearer_and_basic_value_redacted(redactor, scheme):
    result = redactor.argv(["curl", "-H", f"X-Upstream: {scheme} dXNlcjpwdw=="])
    assert result == ["curl", "-H", f"X-Upstream: {scheme} {REDACTED}"]


def test_authorization_header_redacted(redactor):
    # "Authorization:" is itself a secret name, so everything after it goes.
    result = redactor.argv(["curl", "-H", "Authorization: Bearer dXNlcjpwdw=="])
    assert result == ["curl", "-H", f"Authorization:{REDACTED}"]


def test_plain_arguments_kept(redactor):
    argv = ["/usr/bin/chef-solo", "-c", "/var/lib/solo.rb", "--user=alice", "--count=5", "-j", "node.json"]
    assert redactor.argv(argv) == argv


def test_argv_returns_copy(redactor):
    argv = ["--password=hunter2"]
    redactor.argv(argv)
    assert argv == ["--password=hunter2"]


def test_cmdline_redacted(redactor):
    line = f"deploy --password hunter2 token=abc https://user:pw@host/ {AWS_KEY_ID}"
    result = redactor.cmdline(line)
    assert result == f"deploy --password {REDACTED} token={REDACTED} https://user:{REDACTED}@host/ {REDACTED}"


def test_cmdline_without_secret_kept(redactor):
    line = "opsworks-agent: keep_alive of master 15330"
    assert redactor.cmdline(line) == line


def test_disabled_keeps_everything():
    redactor = Redactor(enabled=False, extra_patterns=[r"hunter\d"])
    argv = ["--password=hunter2", "--token", "abc", "https://user:pw@host/", AWS_KEY_ID]
    assert redactor.argv(argv) == argv
    assert redactor.cmdline(" ".join(argv)) == " ".join(argv)
    assert redactor.text("hunter2") == "hunter2"


def test_disabled_argv_returns_copy():
    argv = ["--password=hunter2"]
    result = Redactor(enabled=False).argv(argv)
    assert result == argv
    assert result is not argv


def test_extra_pattern_redacts_match_only():
    redactor = Redactor(extra_patterns=[r"hunter\d"])
    assert redactor.argv(["login", "hunter7", "hunterx"]) == ["login", REDACTED, "hunterx"]


def test_extra_pattern_inside_argument():
    redactor = Redactor(extra_patterns=[r"(?<=db=)\w+"])
    assert redactor.argv(["--opts=db=prod1,ro"]) == [f"--opts=db={REDACTED},ro"]


def test_several_extra_patterns():
    redactor = Redactor(extra_patterns=[r"alpha\d", r"beta\d"])
    assert redactor.argv(["alpha1", "beta2", "gamma3"]) == [REDACTED, REDACTED, "gamma3"]


def test_extra_pattern_in_cmdline():
    redactor = Redactor(extra_patterns=[r"hunter\d"])
    assert redactor.cmdline("login hunter7 now") == f"login {REDACTED} now"


def test_default_keeps_extra_pattern_text(redactor):
    assert redactor.argv(["login", "hunter7"]) == ["login", "hunter7"]


def test_invalid_extra_pattern_rejected():
    with pytest.raises(ValueError, match=r"invalid --redact pattern '\(unclosed'"):
        Redactor(extra_patterns=["(unclosed"])
