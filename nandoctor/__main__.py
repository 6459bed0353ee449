"""``python -m nandoctor`` and the ``nandoctor`` command."""


def entry() -> None:
    """Signals first (see :func:`nandoctor.interrupt.exit_on_signals`), then the command line."""
    from nandoctor.interrupt import exit_on_signals

    exit_on_signals()
    from nandoctor.cli import main

    main()


if __name__ == "__main__":
    entry()
