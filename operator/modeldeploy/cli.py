"""The `modeldeploy` command: the operator, its CRD, and the manual controls (also the kubectl plugin).

The local control plane and the demo are development tools: see the `modeldeploy-dev` command."""

from __future__ import annotations

import atexit
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn

import typer

from modeldeploy import __version__
from modeldeploy.core.sharding import MAX_SHARDS
from modeldeploy.errors import ModelDeployError

if TYPE_CHECKING:
    from modeldeploy.client import Client, RolloutResult

# Heavy modules (kubernetes, pydantic, rich) are imported inside the commands, so `--version` and `--help` start fast.
app = typer.Typer(
    help="modeldeploy: ship ML models on Kubernetes.", no_args_is_help=True, pretty_exceptions_enable=False
)
plugin_app = typer.Typer(
    help="Deploy, control and inspect ModelDeployments (kubectl modeldeploy ...).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.command()
def crd(
    output_dir: Annotated[
        list[Path] | None,
        typer.Option("--output-dir", "-o", help="Write one file per CRD into this directory; repeat for several."),
    ] = None,
) -> None:
    """Print the CRDs generated from the API models, or write them (`hack/generate-crds.sh` updates every copy)."""
    from modeldeploy.core import crd as crd_module

    files = crd_module.crd_files()
    if not output_dir:
        typer.echo("---\n".join(files.values()), nl=False)
        return
    for directory in output_dir:
        for name, text in files.items():
            (directory / name).write_text(text)
            typer.echo(f"wrote {directory / name}")


@app.command()
def run(
    ctx: typer.Context,
    namespace: Annotated[
        list[str] | None, typer.Option("--namespace", "-n", help="Namespace to serve; repeat for several.")
    ] = None,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A", help="Serve every namespace.")] = False,
    metrics_port: Annotated[int, typer.Option(help="Port of the Prometheus /metrics endpoint.")] = 9090,
    liveness_port: Annotated[int, typer.Option(help="Port of the /healthz liveness endpoint.")] = 8080,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Reconciles that may run at once.")] = 4,
    log_format: Annotated[str, typer.Option(help="json (one object a line) or text.")] = "json",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    peering: Annotated[
        str | None,
        typer.Option(
            help="Kopf peering object for HA replicas: only the highest priority one works. Standalone without."
        ),
    ] = None,
    priority: Annotated[
        int | None,
        typer.Option(help="Peering priority; by default derived from the host name, so that replicas differ."),
    ] = None,
    shards: Annotated[
        int,
        typer.Option(
            min=1,
            max=MAX_SHARDS,
            help="Split the ModelDeployments into this many shards by a hash of their uid; run one operator "
            "(or one HA group) per shard, all with the same --shards.",
        ),
    ] = 1,
    shard: Annotated[int, typer.Option(min=0, help="The shard this operator serves, 0 to --shards minus 1.")] = 0,
) -> None:
    """Run the operator, for all namespaces (default) or the ones given with -n."""
    import socket
    import zlib

    from modeldeploy.core.sharding import Shard

    given = ctx.find_object(Target)
    if not namespace and given is not None and given.namespace:  # `modeldeploy -n risk run`
        namespace = [given.namespace]
    if namespace and all_namespaces:
        raise typer.BadParameter("give --namespace or --all-namespaces, not both")
    if log_format not in ("json", "text"):
        raise typer.BadParameter("--log-format must be json or text")
    try:
        serves = Shard(shard, shards)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    from modeldeploy import handlers
    from modeldeploy.adapters import metrics

    metrics.serve(metrics_port)
    if priority is None:
        # Peers of equal priority all freeze; distinct ones elect the highest.
        priority = zlib.crc32(socket.gethostname().encode()) % 10_000
    handlers.run_operator(
        list(namespace or []), liveness_port, workers, log_format, verbose, peering, priority, shard=serves
    )


# -- deploy, the manual controls and the views; also the kubectl plugin (`kubectl modeldeploy ...`) -----------
# Exit codes: 0 promoted (or nothing to roll out), 1 rolled back, 2 timed out, 3 invalid spec or stalled,
# 4 the command could not do its work (usage, kubeconfig, API server, CRD, permissions, not found).

USAGE_ERROR = 4


class RolloutExitError(Exception):
    """The rollout's outcome as the exit code; raised past click, which would treat exit code 2 as its own."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class Target:
    """Where commands act: the kubectl-style flags, given before the subcommand or after it (after wins)."""

    namespace: str | None = None
    context: str | None = None
    kubeconfig: str | None = None
    as_user: str | None = None


NameArg = Annotated[str, typer.Argument(help="ModelDeployment name.")]
NamespaceOpt = Annotated[str | None, typer.Option("--namespace", "-n", help="Namespace (the context's by default).")]
ContextOpt = Annotated[str | None, typer.Option("--context", help="kubeconfig context.")]
KubeconfigOpt = Annotated[str | None, typer.Option("--kubeconfig", help="kubeconfig file.")]
AsOpt = Annotated[str | None, typer.Option("--as", help="User to impersonate, like kubectl --as.")]
OutputOpt = Annotated[str | None, typer.Option("--output", "-o", help="json or yaml instead of the table view.")]
WaitOpt = Annotated[float, typer.Option(help="Seconds to wait for the operator's answer; exit 2 without one.")]
TimeoutOpt = Annotated[
    str | None, typer.Option("--timeout", help="Wait for the rollout's outcome this long, e.g. 30m or 90s.")
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"modeldeploy {__version__}")
        raise typer.Exit()


def global_options(
    ctx: typer.Context,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    as_user: AsOpt = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    ctx.obj = Target(namespace, context, kubeconfig, as_user)


def _client(
    ctx: typer.Context, namespace: str | None, context: str | None, kubeconfig: str | None, as_user: str | None
) -> Client:
    from modeldeploy.client import Client

    given = ctx.find_object(Target) or Target()
    return Client(
        namespace or given.namespace,
        context or given.context,
        kubeconfig or given.kubeconfig,
        as_user or given.as_user,
    )


def _output(output: str | None, allowed: tuple[str, ...] = ("json", "yaml")) -> str | None:
    if output is not None and output not in allowed:
        raise ModelDeployError(f"unknown output format {output!r}; use {' or '.join(allowed)}")
    return output


def parse_timeout(text: str) -> float:
    """'30m', '90s', '1h30m' or plain seconds."""
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
        return float(text)
    parts = re.findall(r"([0-9]+)(h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ModelDeployError(f"--timeout {text!r} is not a duration like 30m, 90s or 1h30m")
    return float(sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts))


def _follow(client: Client, name: str, namespace: str, timeout: float, generation: int | None) -> RolloutResult:
    """Waits for the outcome: a live view on a terminal, a plain line per change otherwise (CI logs)."""
    import time

    from modeldeploy.core.status.outcome import progress

    started = time.monotonic()
    if sys.stdout.isatty():
        from rich.live import Live

        from modeldeploy.views import console, status_view

        with Live(console=console, refresh_per_second=2, transient=False) as live:
            return client.wait(name, namespace, timeout, generation, on_change=lambda md: live.update(status_view(md)))
    last = ""

    def line(md: dict[str, Any]) -> None:
        nonlocal last
        text = progress(md)
        if text != last:
            last = text
            typer.echo(f"[{time.monotonic() - started:6.1f}s] {namespace}/{name} {text}", err=True)

    return client.wait(name, namespace, timeout, generation, on_change=line)


def _finish(results: list[RolloutResult]) -> None:
    for result in results:
        typer.echo(f"{result.namespace}/{result.name}: {result.outcome}: {result.reason} ({result.seconds:.1f}s)")
    code = max((r.exit_code for r in results), default=0)
    if code:
        raise RolloutExitError(code)


def deploy(
    ctx: typer.Context,
    filename: Annotated[str, typer.Option("--filename", "-f", help="YAML with ModelDeployments; - for stdin.")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the rollout's outcome; exit code tells it.")] = False,
    timeout: Annotated[str, typer.Option(help="With --wait: how long, e.g. 30m, 90s.")] = "30m",
    force_conflicts: Annotated[
        bool, typer.Option("--force-conflicts", help="Take over fields another manager owns (server-side apply).")
    ] = False,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Apply ModelDeployments (server-side apply); with --wait, follow each rollout and exit with its outcome:
    0 promoted or nothing to roll out, 1 rolled back, 2 timed out, 3 invalid spec or stalled."""
    import time

    from modeldeploy.client import load_manifests

    seconds = parse_timeout(timeout)
    manifests = load_manifests(filename)
    client = _client(ctx, namespace, context, kubeconfig, as_user)
    applied = []
    for manifest in manifests:
        stored = client.apply(manifest, force_conflicts)
        meta = stored["metadata"]
        applied.append((meta["name"], meta["namespace"], int(meta.get("generation") or 0)))
        typer.echo(f"applied {meta['namespace']}/{meta['name']} (generation {meta.get('generation')})", err=True)
    if not wait:
        return
    deadline = time.monotonic() + seconds
    results = [
        _follow(client, name, ns, max(deadline - time.monotonic(), 0), generation) for name, ns, generation in applied
    ]
    _finish(results)


def status(
    ctx: typer.Context,
    name: NameArg,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    as_user: AsOpt = None,
    output: OutputOpt = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Keep redrawing until interrupted.")] = False,
    timeout: TimeoutOpt = None,
) -> None:
    """Stable and canary side by side, the canary's progress, conditions, pods and recent Events. With --timeout,
    wait for the rollout's outcome and exit like `deploy --wait`."""
    output = _output(output)
    seconds = parse_timeout(timeout) if timeout else None
    client = _client(ctx, namespace, context, kubeconfig, as_user)
    if seconds is not None:
        _finish([_follow(client, name, client.namespace, seconds, None)])
        return
    from modeldeploy import views

    md = client.get(name)
    if output:
        typer.echo(views.dump(md.get("status") or {}, output))
        return

    def view(md: dict[str, Any]) -> Any:
        try:
            events, pods = client.events(name), client.pods(name)
        except ModelDeployError:  # a user may read ModelDeployments without reading Events or pods
            events, pods = [], []
        return views.status_view(md, events, pods)

    if not watch:
        views.console.print(view(md))
        return
    import time

    from rich.live import Live

    with Live(view(md), console=views.console, refresh_per_second=2) as live:
        try:
            while True:
                time.sleep(1)
                live.update(view(client.get(name)))
        except KeyboardInterrupt:
            return


def list_deployments(
    ctx: typer.Context,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A", help="Every namespace.")] = False,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    as_user: AsOpt = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="wide, json or yaml.")] = None,
) -> None:
    """ModelDeployments with their phase, versions, canary weight and readiness (-o wide: more)."""
    output = _output(output, ("wide", "json", "yaml"))
    items = _client(ctx, namespace, context, kubeconfig, as_user).list_deployments(all_namespaces=all_namespaces)
    from modeldeploy import views

    if output in ("json", "yaml"):
        typer.echo(views.dump({"apiVersion": "v1", "kind": "List", "items": items}, output))
    elif not items:
        typer.echo("No ModelDeployments found.", err=True)
    else:
        views.console.print(views.list_table(items, all_namespaces, wide=output == "wide"))


def history(
    ctx: typer.Context,
    name: NameArg,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    as_user: AsOpt = None,
    output: OutputOpt = None,
) -> None:
    """Recent revisions: model version, outcome (coloured), times and the reason."""
    output = _output(output)
    md = _client(ctx, namespace, context, kubeconfig, as_user).get(name)
    from modeldeploy import views

    if output:
        typer.echo(views.dump((md.get("status") or {}).get("history") or [], output))
    else:
        views.console.print(views.history_table(md))


def promote(
    ctx: typer.Context,
    name: NameArg,
    full: Annotated[bool, typer.Option("--full", help="Skip every remaining step and promote now.")] = False,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    as_user: AsOpt = None,
    wait: WaitOpt = 30.0,
) -> None:
    """Advance the canary by one step (past a pause), or promote it fully with --full."""
    client = _client(ctx, namespace, context, kubeconfig, as_user)
    typer.echo(f"promote {client.namespace}/{name}: {client.promote(name, full=full, wait=wait)}")


def _answered_action(action: Literal["abort", "retry"]) -> Callable[..., None]:
    """`abort` and `retry`: an action the operator answers, within `--wait` seconds."""

    def command(
        ctx: typer.Context,
        name: NameArg,
        namespace: NamespaceOpt = None,
        context: ContextOpt = None,
        kubeconfig: KubeconfigOpt = None,
        as_user: AsOpt = None,
        wait: WaitOpt = 30.0,
    ) -> None:
        client = _client(ctx, namespace, context, kubeconfig, as_user)
        answer = client.abort(name, wait=wait) if action == "abort" else client.retry(name, wait=wait)
        typer.echo(f"{action} {client.namespace}/{name}: {answer}")

    return command


def _pause_command(paused: bool) -> Callable[..., None]:
    """`pause` and `resume`: an annotation the operator honours at its next reconcile (nothing to answer)."""

    def command(
        ctx: typer.Context,
        name: NameArg,
        namespace: NamespaceOpt = None,
        context: ContextOpt = None,
        kubeconfig: KubeconfigOpt = None,
        as_user: AsOpt = None,
    ) -> None:
        client = _client(ctx, namespace, context, kubeconfig, as_user)
        if paused:
            client.pause(name)
        else:
            client.resume(name)
        typer.echo(f"{'paused' if paused else 'resumed'} {client.namespace}/{name}")

    return command


def undo(
    ctx: typer.Context,
    name: NameArg,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Set spec.model back to the previous good revision's model (a spec change: it goes through a canary)."""
    client = _client(ctx, namespace, context, kubeconfig, as_user)
    typer.echo(f"undo {client.namespace}/{name}: {client.undo(name)}")


def report(
    ctx: typer.Context,
    name: NameArg,
    revision: Annotated[
        str | None,
        typer.Option("--revision", "-r", help="The rollout of this revision (default: in progress, else the newest)."),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The HTML file; PNG plots are written beside it.")
    ] = Path("report.html"),
    prometheus_url: Annotated[
        str | None,
        typer.Option(help="Ask this Prometheus instead of the spec's (e.g. a port-forward from outside the cluster)."),
    ] = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Write the audit report of one rollout: metrics against bounds, timeline, model lineage and outcome."""
    from modeldeploy import report as audit  # plotting and the adapters: only for this command

    given = ctx.find_object(Target) or Target()
    audit.command(
        name,
        revision,
        output,
        prometheus_url,
        namespace or given.namespace,
        context or given.context,
        kubeconfig or given.kubeconfig,
    )


for _target in (app, plugin_app):
    _target.callback()(global_options)
    _target.command()(deploy)
    _target.command()(status)
    _target.command(name="list")(list_deployments)
    _target.command()(history)
    _target.command()(promote)
    _target.command(
        name="abort", help="Roll the canary back now; its revision is not retried until the spec changes or `retry`."
    )(_answered_action("abort"))
    _target.command(name="retry", help="Start a new canary of a rolled-back revision.")(_answered_action("retry"))
    _target.command(name="pause", help="Hold the canary where it is until `resume`.")(_pause_command(True))
    _target.command(name="resume", help="Let a paused canary go on.")(_pause_command(False))
    _target.command()(undo)
    _target.command()(report)


def run_cli(target: typer.Typer = app, prog_name: str = "modeldeploy") -> int:
    """Runs a command; its exit code. One line for every expected error, never a traceback."""
    try:
        target(prog_name=prog_name)
    except RolloutExitError as outcome:
        return outcome.code
    except ModelDeployError as error:
        typer.secho(f"error: {error}", fg="red", err=True)
        return error.exit_code
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            # click's usage errors exit 2, which is the rollout's timeout here.
            return USAGE_ERROR if done.code == 2 else (done.code or 0)
        typer.echo(done.code, err=True)
        return 1
    return 0


def _exit(code: int) -> NoReturn:
    """Exits without the interpreter's teardown of the Kubernetes client's thousand modules, which takes over a
    second on a busy machine, after `deploy --wait` has its answer. Streams are flushed and the atexit handlers
    run (they remove the kubeconfig's temporary certificate files). The operator (`run`) exits the ordinary way."""
    if "kopf" in sys.modules:
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(code)


def main() -> None:
    _exit(run_cli())


def plugin_main() -> None:
    _exit(run_cli(plugin_app, "kubectl modeldeploy"))
