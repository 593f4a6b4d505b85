"""The `modeldeploy` command: the operator, its CRD, and the manual controls (also the kubectl plugin).

The local control plane and the demo are development tools: see the `modeldeploy-dev` command."""

from __future__ import annotations

import socket
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live

from modeldeploy import control, report
from modeldeploy.core import crd as crd_module
from modeldeploy.core.sharding import MAX_SHARDS, Shard

app = typer.Typer(help="modeldeploy: ship ML models on Kubernetes.", no_args_is_help=True)


@app.command()
def crd(
    output_dir: Annotated[
        list[Path] | None,
        typer.Option("--output-dir", "-o", help="Write one file per CRD into this directory; repeat for several."),
    ] = None,
) -> None:
    """Print the CRDs generated from the API models, or write them (`hack/generate-crds.sh` updates every copy)."""
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


# -- manual controls and views; also the kubectl plugin (`kubectl modeldeploy ...`) --------------------------

plugin_app = typer.Typer(help="Control and inspect ModelDeployments (kubectl modeldeploy ...).", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="ModelDeployment name.")]
NamespaceOpt = Annotated[str | None, typer.Option("--namespace", "-n", help="Namespace (the context's by default).")]
ContextOpt = Annotated[str | None, typer.Option("--context", help="kubeconfig context.")]
KubeconfigOpt = Annotated[str | None, typer.Option("--kubeconfig", help="kubeconfig file.")]
OutputOpt = Annotated[str | None, typer.Option("--output", "-o", help="json or yaml instead of the table view.")]
WaitOpt = Annotated[float, typer.Option(help="Seconds to wait for the operator's answer.")]


def _control(
    namespace: str | None, context: str | None, kubeconfig: str | None, work: Callable[[Any, str], str | None]
) -> None:
    """Connects, runs `work(client, namespace)`, prints what it returns, and turns ControlError into exit 1."""
    try:
        custom = control.connect(context, kubeconfig)
        message = work(custom, namespace or control.default_namespace(context, kubeconfig))
    except control.ControlError as error:
        typer.secho(f"error: {error}", fg="red", err=True)
        raise typer.Exit(1) from error
    if message:
        typer.echo(message)


def _action_command(action: str) -> Callable[..., None]:
    def command(
        name: NameArg,
        namespace: NamespaceOpt = None,
        context: ContextOpt = None,
        kubeconfig: KubeconfigOpt = None,
        wait: WaitOpt = 30.0,
    ) -> None:
        _control(
            namespace,
            context,
            kubeconfig,
            lambda custom, ns: f"{action} {ns}/{name}: {control.request(custom, ns, name, action, wait)}",
        )

    return command


def _pause_command(paused: bool) -> Callable[..., None]:
    def command(
        name: NameArg, namespace: NamespaceOpt = None, context: ContextOpt = None, kubeconfig: KubeconfigOpt = None
    ) -> None:
        def work(custom: Any, ns: str) -> str:
            control.set_paused(custom, ns, name, paused)
            return f"{'paused' if paused else 'resumed'} {ns}/{name}"

        _control(namespace, context, kubeconfig, work)

    return command


def _register_controls(target: typer.Typer) -> None:
    @target.command()
    def promote(
        name: NameArg,
        full: Annotated[bool, typer.Option("--full", help="Skip every remaining step and promote now.")] = False,
        namespace: NamespaceOpt = None,
        context: ContextOpt = None,
        kubeconfig: KubeconfigOpt = None,
        wait: WaitOpt = 30.0,
    ) -> None:
        """Advance the canary by one step (past a pause), or promote it fully with --full."""
        _action_command("promote-full" if full else "promote")(name, namespace, context, kubeconfig, wait)

    target.command(
        name="abort", help="Roll the canary back now; its revision is not retried until the spec changes or `retry`."
    )(_action_command("abort"))
    target.command(name="retry", help="Start a new canary of a rolled-back revision.")(_action_command("retry"))
    target.command(name="pause", help="Hold the canary where it is until `resume`.")(_pause_command(True))
    target.command(name="resume", help="Let a paused canary go on.")(_pause_command(False))
    target.command(name="report")(report.command)

    @target.command()
    def undo(
        name: NameArg, namespace: NamespaceOpt = None, context: ContextOpt = None, kubeconfig: KubeconfigOpt = None
    ) -> None:
        """Set spec.model back to the previous good revision's model (a spec change: it goes through a canary)."""
        _control(
            namespace, context, kubeconfig, lambda custom, ns: f"undo {ns}/{name}: {control.undo(custom, ns, name)}"
        )

    @target.command()
    def status(
        name: NameArg,
        namespace: NamespaceOpt = None,
        context: ContextOpt = None,
        kubeconfig: KubeconfigOpt = None,
        output: OutputOpt = None,
        watch: Annotated[bool, typer.Option("--watch", "-w", help="Keep redrawing until interrupted.")] = False,
    ) -> None:
        """Stable and canary side by side, the canary's progress, conditions and the last rollback."""

        def work(custom: Any, ns: str) -> str | None:
            md = control.get(custom, ns, name)
            if output:
                return control.dump(md.get("status") or {}, output)
            if not watch:
                control.console.print(control.status_view(md))
                return None
            with Live(control.status_view(md), console=control.console, refresh_per_second=2) as live:
                try:
                    while True:
                        time.sleep(1)
                        live.update(control.status_view(control.get(custom, ns, name)))
                except KeyboardInterrupt:
                    return None

        _control(namespace, context, kubeconfig, work)

    @target.command()
    def history(
        name: NameArg,
        namespace: NamespaceOpt = None,
        context: ContextOpt = None,
        kubeconfig: KubeconfigOpt = None,
        output: OutputOpt = None,
    ) -> None:
        """Recent revisions: model version, outcome and times."""

        def work(custom: Any, ns: str) -> str | None:
            md = control.get(custom, ns, name)
            if output:
                return control.dump((md.get("status") or {}).get("history") or [], output)
            control.console.print(control.history_table(md))
            return None

        _control(namespace, context, kubeconfig, work)


_register_controls(app)
_register_controls(plugin_app)
