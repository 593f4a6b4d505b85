"""The `modeldeploy-dev` command: the local control plane and the demo (development only)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from modeldeploy_dev.cluster import ClusterError, LocalCluster, bin_dir, build, cache_dir

app = typer.Typer(help="modeldeploy development tools: a local control plane and the demo.", no_args_is_help=True)


@app.command()
def demo(
    file: Annotated[Path, typer.Option("--file", "-f", help="The ModelDeployment to deploy.")] = Path(
        "manifests/examples/fraud-scorer.yaml"
    ),
    keep: Annotated[bool, typer.Option(help="Leave the cluster and the operator running afterwards.")] = False,
) -> None:
    """Build (or reuse) a local cluster, run the operator, deploy a model and roll out a new version, live."""
    from modeldeploy_dev import demo as demo_module

    raise typer.Exit(demo_module.main(file, keep))


cluster_app = typer.Typer(help="A local Kubernetes control plane built from Go modules (no Docker needed).")
app.add_typer(cluster_app, name="cluster")


def _state_dir(name: str) -> Path:
    return cache_dir() / "clusters" / name


@cluster_app.command("build")
def cluster_build() -> None:
    """Build etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, KWOK and helm (cached)."""
    try:
        build(echo=typer.echo)
    except ClusterError as error:
        typer.secho(f"error: {error}", fg="red", err=True)
        raise typer.Exit(1) from error


@cluster_app.command("up")
def cluster_up(
    name: Annotated[str, typer.Option(help="Cluster name; its state lives in the cache.")] = "local",
    nodes: Annotated[int, typer.Option(min=1, max=100, help="Fake KWOK nodes.")] = 1,
) -> None:
    """Start a local cluster in the background (building the binaries first if needed)."""
    cluster = LocalCluster(_state_dir(name), nodes=nodes)
    if cluster.running():
        typer.echo(f"cluster {name!r} is already running\nexport KUBECONFIG={cluster.kubeconfig}")
        return
    try:
        build(echo=typer.echo)
        started = time.monotonic()
        cluster.stop()  # clears what a crashed earlier run left behind
        cluster.start()
    except ClusterError as error:
        typer.secho(f"error: {error}", fg="red", err=True)
        raise typer.Exit(1) from error
    typer.echo(
        f"cluster {name!r} is up in {time.monotonic() - started:.1f}s (everything on 127.0.0.1)\n"
        f"  export KUBECONFIG={cluster.kubeconfig}\n"
        f"  export PATH={bin_dir()}:$PATH\n"
        f"  kubectl get nodes\n"
        f"stop it with: modeldeploy-dev cluster down --name {name}"
    )


@cluster_app.command("down")
def cluster_down(name: Annotated[str, typer.Option(help="Cluster name.")] = "local") -> None:
    """Stop a local cluster: every process ends and its state directory is removed."""
    cluster = LocalCluster(_state_dir(name))
    if not cluster.state_dir.exists():
        typer.echo(f"cluster {name!r} is not running")
        return
    cluster.stop()
    typer.echo(f"cluster {name!r} stopped and removed")


@cluster_app.command("status")
def cluster_status(name: Annotated[str, typer.Option(help="Cluster name.")] = "local") -> None:
    """Say whether a local cluster runs, and where its kubeconfig is."""
    cluster = LocalCluster(_state_dir(name))
    if cluster.running():
        typer.echo(f"cluster {name!r} is running\nexport KUBECONFIG={cluster.kubeconfig}")
    else:
        typer.echo(f"cluster {name!r} is not running")
        raise typer.Exit(1)
