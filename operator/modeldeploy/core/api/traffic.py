"""How traffic is split between the stable and canary tracks, and each router's settings."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from modeldeploy.core.api.base import HOSTNAME, ApiModel, Rule


class ParentRef(ApiModel):
    name: str = Field(min_length=1, max_length=253, description="Gateway name.")
    namespace: str | None = Field(default=None, max_length=63, description="Gateway namespace; the object's own.")
    section_name: str | None = Field(default=None, max_length=253, description="Listener name.")


class GatewayApiConfig(ApiModel):
    parent_refs: list[ParentRef] = Field(min_length=1, max_length=16, description="Gateways the HTTPRoute attaches to.")
    hostnames: list[Annotated[str, StringConstraints(max_length=253, pattern=HOSTNAME)]] = Field(
        default_factory=list, max_length=16, description="Hostnames the HTTPRoute matches."
    )


class IstioConfig(ApiModel):
    hosts: list[Annotated[str, StringConstraints(min_length=1, max_length=253)]] = Field(
        default_factory=list, max_length=16, description="VirtualService hosts; the Service's own host by default."
    )
    gateways: list[Annotated[str, StringConstraints(min_length=1, max_length=253)]] = Field(
        default_factory=list, max_length=16, description="Istio Gateways to bind; mesh-internal traffic by default."
    )


class NginxConfig(ApiModel):
    host: str = Field(max_length=253, pattern=HOSTNAME, description="Host the Ingress serves.")
    ingress_class_name: str = Field(default="nginx", min_length=1, max_length=253)
    path: str = Field(default="/", max_length=1024, pattern=r"^/", description="Path prefix.")


RouterName = Literal["replicas", "gatewayAPI", "istio", "nginx"]


class Traffic(ApiModel):
    """How traffic is split between the stable and canary tracks."""

    rules = (
        Rule(
            "(self.router == 'gatewayAPI') == has(self.gatewayAPI)",
            "traffic.gatewayAPI is required with router gatewayAPI, and only then",
        ),
        Rule("!has(self.istio) || self.router == 'istio'", "traffic.istio is set but the router is not istio"),
        Rule(
            "(self.router == 'nginx') == has(self.nginx)", "traffic.nginx is required with router nginx, and only then"
        ),
    )

    router: RouterName = Field(
        default="replicas",
        description="replicas: one Service over both tracks, weight = pod ratio (no mesh); gatewayAPI: an HTTPRoute; "
        "istio: a VirtualService over two Services; nginx: a canary Ingress.",
    )
    gateway_api: GatewayApiConfig | None = Field(default=None, alias="gatewayAPI")
    istio: IstioConfig | None = None
    nginx: NginxConfig | None = None
