"""``nandoctor schema``: print the JSON Schema of the network spec."""

from __future__ import annotations

import click

from nandoctor.cli.common import CONTEXT


@click.command(context_settings=CONTEXT)
def schema():
    """Print the JSON Schema of the network spec.

    \b
    Example:
      nandoctor schema > nandoctor.schema.json
    """
    import json

    from nandoctor.spec.models import json_schema

    click.echo(json.dumps(json_schema(), indent=2))
