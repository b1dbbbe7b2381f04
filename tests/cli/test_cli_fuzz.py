"""CLI arguments, fuzzed (issue 21): seeded random mutations of real command lines, each
with one bad argument (an unknown option or command, a value of the wrong type, a
choice that does not exist, a missing argument). Each ends in click's usage error
(exit status 2, one ``Error:`` line naming the problem, no traceback) before any command
runs: no cluster is contacted and no state file is written. In process, no cluster."""

from __future__ import annotations

import random
import string

from click.testing import CliRunner

from rafka.cli.main import cli

FUZZ_SEED = 777
FUZZ_CASES = 300
COMMANDS = [
    (["topics", "create", "t"], {"--partitions": int, "--replication-factor": int}),
    (["produce", "t"], {"--partition": int, "--acks": ("0", "1", "all")}),
    (["consume", "t"], {"--partition": int, "--offset": int, "--max-messages": int, "--timeout-s": float,
                        "--format": ("raw", "json")}),
    (["groups", "describe", "g"], {"--format": ("table", "json")}),
    (["bench", "produce"], {"--records": int, "--record-size": int, "--acks": ("0", "1", "all"),
                            "--compression": ("none", "lz4", "zstd"), "--mode": ("send", "batch")}),
    (["up"], {"--brokers": int, "--wire-port": int, "--num-cpus": int}),
    (["connect", "start"], {"--port": int}),
    (["connect", "restart", "c"], {"--task": int}),
]


def _bad_value(kind, rng: random.Random) -> str:
    if kind is int:
        return rng.choice(["abc", "1.5", "", "0x", "--", "1e3", "ten", "\u0663\u0663x"])
    if kind is float:
        return rng.choice(["abc", "", "1,5", "nan-ish", "--"])
    return rng.choice(["ALL", "2", "", "gzip", "raw,json", "-1"])


def _mutated(rng: random.Random) -> list[str]:
    base, options = rng.choice(COMMANDS)
    argv = list(base)
    kind = rng.randrange(4)
    if kind == 0:  # an option that does not exist
        argv.append("--" + "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 12))) + "-x")
    elif kind == 1:  # a value of the wrong type or outside the choices
        option = rng.choice(sorted(options))
        argv += [option, _bad_value(options[option], rng)]
    elif kind == 2:  # a command that does not exist
        argv = [argv[0], "no-such-" + "".join(rng.choice(string.ascii_lowercase) for _ in range(5))]
        if argv[0] in ("produce", "consume", "up"):
            argv = ["no-such-command-" + argv[1][-5:]]
    else:  # an option without its value
        argv.append(rng.choice(sorted(options)))
    return argv


def test_fuzzed_command_lines_end_in_a_usage_error_and_change_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("RAFKA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")  # nothing listens: a command that ran would fail loudly
    rng = random.Random(FUZZ_SEED)
    runner = CliRunner()
    for case in range(FUZZ_CASES):
        argv = _mutated(rng)
        result = runner.invoke(cli, argv)
        assert result.exit_code == 2, f"case {case}: rafka {argv} -> {result.exit_code}: {result.output}"
        assert isinstance(result.exception, SystemExit), f"case {case}: rafka {argv} raised {result.exception!r}"
        assert "Traceback" not in result.output
        assert "Error:" in result.output, f"case {case}: rafka {argv}: {result.output}"
    assert not (tmp_path / "home").exists(), "a usage error wrote rafka's state"
