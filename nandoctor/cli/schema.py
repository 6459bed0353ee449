"""``nandoctor schema``: print the JSON Schema of the network spec, or its Markdown reference."""

from __future__ import annotations

import click

from nandoctor.cli.common import CONTEXT


@click.command(context_settings=CONTEXT)
@click.option(
    "--markdown",
    is_flag=True,
    help="Print the spec reference (every key's type, default, range, meaning) as Markdown.",
)
def schema(markdown: bool):
    """Print the JSON Schema of the network spec (or, with --markdown, its reference).

    \b
    Examples:
      nandoctor schema > nandoctor.schema.json
      nandoctor schema --markdown > docs/spec.md
    """
    if markdown:
        from nandoctor.spec.reference import markdown_reference

        click.echo(markdown_reference(), nl=False)
        return
    import json

    from nandoctor.spec.models import json_schema

    click.echo(json.dumps(json_schema(), indent=2))
