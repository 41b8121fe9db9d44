"""Command-line tests that need no root: usage errors and the commands without BPF."""

from click.testing import CliRunner

from tracer.cli import main


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_presets_lists_opsworks_roles():
    result = invoke("presets")
    assert result.exit_code == 0
    assert "opsworks:" in result.output
    for role in ("master", "keep_alive", "statistics", "process_command"):
        assert f"  {role} " in result.output


def test_role_without_regex_is_usage_error():
    result = invoke("trace", "--role", "justaname")
    assert result.exit_code == 2
    assert "'justaname' is not NAME=REGEX" in result.output


def test_role_with_bad_regex_names_rule():
    result = invoke("trace", "--role", "web=([")
    assert result.exit_code == 2
    assert "role 'web': invalid regular expression" in result.output


def test_unknown_preset_lists_known():
    result = invoke("trace", "--preset", "nosuch")
    assert result.exit_code == 2
    assert "unknown preset 'nosuch'; known presets:" in result.output
    assert "opsworks" in result.output


def test_rotation_needs_output():
    result = invoke("trace", "--rotate-size", "10M")
    assert result.exit_code == 2
    assert "--rotate-size and --rotate-interval need -o FILE" in result.output


def test_bad_rotate_size():
    result = invoke("trace", "-o", "x.msgpack", "--rotate-size", "lots")
    assert result.exit_code == 2
    assert "is not a size" in result.output


def test_ringbuf_pages_power_of_two():
    result = invoke("check", "--ringbuf-pages", "3")
    assert result.exit_code == 2
    assert "3 is not a power of two" in result.output


def test_bad_redact_pattern():
    result = invoke("trace", "--redact", "([")
    assert result.exit_code == 2
    assert "invalid --redact pattern" in result.output


def test_demo_configure_after_end():
    result = invoke("demo", "--duration", "100", "--configure-at", "200")
    assert result.exit_code == 2
    assert "is not before the end of the scenario" in result.output


def test_report_missing_file(tmp_path):
    result = invoke("report", str(tmp_path / "absent.msgpack"))
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert "absent.msgpack" in result.output
