"""Pulumi's Automation API, the aws target's one boundary: open a stack, set its config,
run the engine, and turn every failure into one line that says what to do.

The library drives the ``pulumi`` CLI as a subprocess (argument lists it builds itself),
so everything here also runs against a stand-in CLI in the tests. Failure texts matched
below are the CLI's own (pulumi/pulumi pkg/backend/backenderr, pkg/secrets/passphrase,
pkg/workspace/config.go); the research notes are in the aws issue's closing note.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from provisioning import __version__
from provisioning.errors import BuildfleetError, ConfigError
from provisioning.extras import AWS, require
from provisioning.project import WRITTEN_MARK, check_project_name, project_document, written_header
from provisioning.settings import NAMESPACE, pulumi_config_value
from provisioning.targets.changes import ChangePreview

INSTALL = "install it (https://www.pulumi.com/docs/install/)"
# CLI text -> what the user should do. The CLI run non-interactively cannot prompt for either.
HINTS = (
    (
        "PULUMI_ACCESS_TOKEN must be set",
        "the Pulumi CLI is not logged in: run `pulumi login` (Pulumi Cloud), `pulumi login --local` (state in "
        "~/.pulumi) or `pulumi login s3://BUCKET`, or set PULUMI_ACCESS_TOKEN",
    ),
    (
        "passphrase must be set",
        "this stack's secrets are passphrase-protected and buildfleet runs Pulumi non-interactively: export "
        "PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE",
    ),
    ("incorrect passphrase", "PULUMI_CONFIG_PASSPHRASE(_FILE) does not decrypt this stack: use the stack's passphrase"),
)


# The resource plugins the program's providers need, with the Python package whose version they take.
PLUGINS = (("aws", "pulumi-aws"), ("tls", "pulumi-tls"))


class PulumiFailed(BuildfleetError):
    """The Pulumi CLI (through the Automation API) refused or failed; the message says why."""


class StackNotFound(PulumiFailed):
    """The backend has no stack of that name (the CLI's "no stack named ... found")."""


def stack_file(project_dir: Path, stack: str) -> Path:
    return project_dir / f"Pulumi.{stack}.yaml"


def _cli_error(error: Exception) -> str:
    """The CLI's own error line out of an Automation API exception (its str holds stdout and stderr)."""
    text = str(error)
    stderr = text.split(" stderr:", 1)[1] if " stderr:" in text else text
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or [type(error).__name__])[-1].removeprefix("error:").strip()


def explain(error: Exception, what: str, stack: str) -> PulumiFailed:
    """One line for any Automation API failure: a known cause with its fix, else the CLI's error."""
    if isinstance(error, FileNotFoundError):
        return PulumiFailed(f"the Pulumi CLI is not on PATH: {INSTALL}, log in, and set AWS credentials")
    if type(error).__name__ == "InvalidVersionError":
        return PulumiFailed(f"the Pulumi CLI on PATH is not one the Automation API accepts ({error}): {INSTALL}")
    line = _cli_error(error)
    for needle, hint in HINTS:
        if needle in line:
            return PulumiFailed(f"{what} on stack {stack!r}: {hint}")
    if "no stack named" in line:
        return StackNotFound(
            f"stack {stack!r} does not exist in the current Pulumi backend (pulumi stack ls); "
            "buildfleet down never creates one: check --stack and your pulumi login"
        )
    return PulumiFailed(f"{what} on stack {stack!r} failed: {line}")


def run(operation: Callable[[], Any], what: str, stack: str) -> Any:
    try:
        return operation()
    except BuildfleetError:
        raise
    except Exception as error:  # CommandError and friends, InvalidVersionError, FileNotFoundError
        raise explain(error, what, stack) from None


def check_project(project_dir: Path, stack: str) -> None:
    """What the CLI would refuse without a prompt, said before anything runs (or is written)."""
    if not project_dir.is_dir():
        raise ConfigError(f"--project-dir {project_dir} is not a directory")
    pulumi_yaml = project_dir / "Pulumi.yaml"
    if pulumi_yaml.is_file():
        check_project_name(_yaml(pulumi_yaml), str(pulumi_yaml))
    if needs_passphrase(project_dir, stack) and not has_passphrase():
        raise ConfigError(f"{HINTS[1][1]} (stack {stack!r} uses the passphrase secrets provider)")


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path} is not a readable Pulumi.yaml: {error}") from None


def ensure_project(project_dir: Path) -> Path:
    """The project file the CLI reads beside the user's stack files: written when missing, and
    rewritten when an earlier buildfleet wrote it and this one declares other keys."""
    path = project_dir / "Pulumi.yaml"
    if path.is_file():
        text = path.read_text()
        current = _yaml(path)
        check_project_name(current, str(path))
        if not text.startswith(WRITTEN_MARK) or current == project_document():
            return path
    path.write_text(written_header(__version__) + yaml.safe_dump(project_document(), sort_keys=False, width=1000))
    return path


def has_passphrase() -> bool:
    return "PULUMI_CONFIG_PASSPHRASE" in os.environ or "PULUMI_CONFIG_PASSPHRASE_FILE" in os.environ


def needs_passphrase(project_dir: Path, stack: str) -> bool:
    """A stack file with an encryption salt, or a new stack on a self-managed (file/s3) backend."""
    path = stack_file(project_dir, stack)
    if path.is_file():
        return "encryptionsalt:" in path.read_text()
    return backend_url().startswith(("file://", "s3://", "gs://", "azblob://"))


def backend_url() -> str:
    if os.environ.get("PULUMI_BACKEND_URL"):
        return os.environ["PULUMI_BACKEND_URL"]
    credentials = Path(os.environ.get("PULUMI_HOME", Path.home() / ".pulumi")) / "credentials.json"
    try:
        return str(json.loads(credentials.read_text()).get("current") or "")
    except (OSError, ValueError):
        return ""


def open_stack(stack: str, project_dir: Path, create: bool) -> Any:
    """The user directory's stack running buildfleet's own program (an inline program: nothing
    of the program need be on disk there); ``create`` only for up (never down)."""
    automation = require("pulumi.automation", AWS, "the aws target")
    require("pulumi_aws", AWS, "the aws target")
    from provisioning.cloud.program import program

    check_project(project_dir, stack)
    ensure_project(project_dir)
    options = automation.LocalWorkspaceOptions(work_dir=str(project_dir))
    opener = automation.create_or_select_stack if create else automation.select_stack
    selected = run(
        lambda: opener(stack_name=stack, project_name=NAMESPACE, program=program, opts=options), "selecting", stack
    )
    install_plugins(selected)
    return selected


def existing_stack(stack: str, project_dir: Path) -> Any | None:
    """The stack when the backend has it, selected; None for a stack up would make."""
    try:
        return open_stack(stack, project_dir, create=False)
    except StackNotFound:
        return None


def install_plugins(stack: Any) -> None:
    """An inline program tells the CLI of no plugins (pulumi.automation's LanguageServer answers
    GetRequiredPlugins with none), so the providers it registers are installed first, each at the
    version of its Python package, as pulumi/automation-api-examples' inline programs do."""
    from importlib import metadata

    for plugin, package in PLUGINS:
        install = partial(stack.workspace.install_plugin, plugin, f"v{metadata.version(package)}")
        run(install, f"installing plugin {plugin}", stack.name)


def set_config(stack: Any, config: Mapping[str, Any]) -> None:
    """Set buildfleet keys as ``pulumi config set`` would, lists path-wise (``key[0]``…) so the
    CLI stores real YAML lists that Pulumi.yaml's ``type: array`` accepts. A list is removed
    first, so a shorter list leaves no stale items; an empty one falls back to its default."""
    from pulumi.automation import ConfigValue

    lists = {key: value for key, value in config.items() if isinstance(value, (list, tuple))}
    scalars = {
        f"{NAMESPACE}:{key}": ConfigValue(pulumi_config_value(value))
        for key, value in config.items()
        if key not in lists
    }
    items = {
        f"{NAMESPACE}:{key}[{index}]": ConfigValue(str(item))
        for key, value in lists.items()
        for index, item in enumerate(value)
    }
    name = stack.name
    if lists:
        run(lambda: stack.remove_all_config([f"{NAMESPACE}:{key}" for key in lists]), "setting config", name)
    if scalars:
        run(lambda: stack.set_all_config(scalars), "setting config", name)
    if items:
        run(lambda: stack.set_all_config(items, path=True), "setting config", name)


def set_secrets(stack: Any, values: Mapping[str, str]) -> None:
    """Set buildfleet keys as ``pulumi config set --secret`` does: the stack's secrets provider
    encrypts each in the stack file, and in the state of every update that runs with it."""
    from pulumi.automation import ConfigValue

    secrets = {f"{NAMESPACE}:{key}": ConfigValue(value, secret=True) for key, value in values.items()}
    run(lambda: stack.set_all_config(secrets), "setting config", stack.name)


def refresh_stack_file(stack: Any) -> None:
    """Write the stack file from the config the stack's last update ran with (``pulumi config
    refresh``: secrets as their ciphertext, the passphrase provider's salt from the checkpoint),
    so this machine sets config under the stack's own secrets provider, not a new salt."""
    run(lambda: stack.refresh_config(), "reading the stack's config from its last update", stack.name)


def preview(stack: Any, what: str, on_output: Callable[[str], None], destroy: bool = False) -> ChangePreview:
    """What ``what`` would do to the stack, from the engine's events (refreshed first, as up is)."""
    changes = ChangePreview(what, stack.name)

    def on_event(event: Any) -> None:
        step = event.resource_pre_event
        if step is not None:
            changes.add_step(str(getattr(step.metadata.op, "value", step.metadata.op)), step.metadata.urn)

    engine = stack.preview_destroy if destroy else partial(stack.preview, refresh=True)
    result = run(lambda: engine(on_output=on_output, on_event=on_event), f"{what} preview", stack.name)
    changes.add_summary(result.change_summary)
    return changes
