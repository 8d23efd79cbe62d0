"""The documentation keeps up with the code: every environment variable a
command reads is explained in docs/configuration.md and listed in .env.example,
and the links between the README and docs/ lead to files that exist."""

import re
from pathlib import Path

import click

from common.cli import environment_variables
from common.ops import status, web, webhook_server

ROOT = Path(__file__).resolve().parents[2]


def envvars_of(command: click.Command) -> set[str]:
    """The environment variables of a click command's options, subcommands included."""
    names = set()
    for param in command.params:
        envvar = param.envvar
        if envvar:
            names.update([envvar] if isinstance(envvar, str) else envvar)
    for sub in getattr(command, "commands", {}).values():
        names |= envvars_of(sub)
    return names


def every_variable() -> set[str]:
    return environment_variables() | envvars_of(status.main) | envvars_of(web.main) | envvars_of(webhook_server.main)


def test_the_variables_are_found():
    names = every_variable()
    assert {"DATABASE_URL", "WHATSAPP_TOKEN", "PARTITIONS", "WEB_PORT", "WEB_MAX_BODY"} <= names


def test_every_variable_is_documented_in_configuration_md():
    text = (ROOT / "docs" / "configuration.md").read_text()
    missing = sorted(name for name in every_variable() if f"`{name}`" not in text)
    assert not missing, f"docs/configuration.md does not explain {missing}"


def test_every_variable_is_in_env_example():
    text = (ROOT / ".env.example").read_text()
    missing = sorted(
        name for name in every_variable() if not re.search(rf"^(# ?)?{re.escape(name)}=", text, re.MULTILINE)
    )
    assert not missing, f".env.example has no line (active or commented) for {missing}"


def test_relative_links_in_readme_and_docs_lead_to_files():
    pages = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            path = target.split("#", 1)[0]
            if not path or re.match(r"[a-z]+:", path):
                continue
            if not (page.parent / path).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, f"links to nothing: {broken}"


def test_readme_stays_short_and_starts_with_its_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150
    commands = [line.split("#")[0].strip() for line in lines if line.startswith("scripts/")]
    assert commands[:2] == ["scripts/demo", "scripts/test"]
