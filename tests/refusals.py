"""The CLI's way of refusing bad input, checked in one place."""

from leap_ray.cli import main


def assert_refused(capsys, argv: list[str], expected: str) -> None:
    """`main(argv)` refuses as an expected error should: exit code 2 and one line,
    'error: ...', that contains `expected`."""
    capsys.readouterr()  # what came before is not this refusal's
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err and "\n" not in err, err
