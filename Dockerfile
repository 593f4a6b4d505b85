# syntax=docker/dockerfile:1
# The modeldeploy operator image.
#   docker build -t ghcr.io/modeldeploy/modeldeploy:0.1.0 .
# The builder installs the package and its dependencies into a virtual environment; the final stage copies
# only that environment and runs it as the non-root user 65532 (the Helm chart and kustomize base expect it).
# Only the runtime package `modeldeploy` goes in: not the development tools (`modeldeploy_dev`: local control
# plane, demo, test harness, and their `cryptography` dependency), nor the reference model server, which has
# its own image (Dockerfile.modelserver). The build checks that neither is importable.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/modeldeploy
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
# The versions the test suite ran with: the lock pins every runtime dependency too.
COPY requirements/dev.lock requirements/dev.lock
COPY operator/modeldeploy/ operator/modeldeploy/
RUN /opt/modeldeploy/bin/pip install -c requirements/dev.lock ".[aws]" \
 && /opt/modeldeploy/bin/modeldeploy --help >/dev/null \
 && /opt/modeldeploy/bin/python -c "import importlib.util as u, sys; \
found = [m for m in ('modeldeploy_dev', 'cryptography', 'modelserver') if u.find_spec(m)]; \
sys.exit(f'not for the operator image: {found}' if found else 0)"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="modeldeploy" \
      org.opencontainers.image.description="Kubernetes operator that ships ML models" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 65532 modeldeploy \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin modeldeploy
COPY --from=builder /opt/modeldeploy /opt/modeldeploy
ENV PATH=/opt/modeldeploy/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
# 9090: Prometheus /metrics; 8080: /healthz.
EXPOSE 9090 8080
ENTRYPOINT ["modeldeploy"]
CMD ["run", "--all-namespaces"]
